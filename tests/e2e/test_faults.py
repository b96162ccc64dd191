"""The fault suite: a real Airflow 3.3 stack and the sandbox, broken on purpose while videos render.

Each test breaks one thing a production install meets (the triggerer killed mid-wait, a worker's task
process killed mid-wait, the vendor down for 20 s, flaky polls, a timeout, an API key that must stay
secret through all of it) and checks both sides of the wire: Airflow's record (task states, tries, task
and trigger logs, XCom, trigger rows) and the vendor's (the sandbox's journal: how many generations were
submitted, which is what is billed).

"Paid once" is checked on the vendor's side against every submit the sandbox received during the test,
not per known task id: a retry that paid again would create a *new* Kling task, which a per-id count
could never see.

The module runs its own sandbox (a state file, so it can be stopped and started on the same port with
its tasks intact; a distinctive API key, which the secret scan then hunts for) and shares one stack across
the tests that leave the stack whole. The triggerer test builds a private stack, since it kills a
component. Waits poll REST, the journal or ``/proc`` against a deadline; the only fixed sleep is the
vendor's 20 s outage, which is the scenario itself.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from airflow_provider_kling.sandbox.process import SandboxProcess
from tools.airflow_stack import (
    AirflowServerError,
    AirflowStack,
    AirflowStackError,
    RunResult,
    StackFactory,
    log_text,
)
from tools.secret_scan import files_under, hits

AIRFLOW = tuple(int(part) for part in re.findall(r"\d+", metadata.version("apache-airflow"))[:2])
pytestmark = [
    pytest.mark.e2e,
    # The task state store, ResumableJobMixin and the task runner's process title are Airflow 3.3's.
    pytest.mark.skipif(AIRFLOW < (3, 3), reason="the fault suite runs on Airflow 3.3+"),
]

DAGS = Path(__file__).parent / "dags_faults"
#: The key the sandbox accepts, and a second one it refuses: both distinctive, so that a single
#: occurrence anywhere is a leak and not a coincidence.
API_KEY = f"kling-e2e-key-{secrets.token_hex(16)}"
REFUSED_KEY = f"kling-e2e-refused-{secrets.token_hex(16)}"
SUCCEED = "TASK_STATUS_SUCCEED"
IN_FLIGHT = frozenset({"TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING"})
POLL_LINE = re.compile(r"Kling task (?P<id>\S+): status=(?P<status>\S+) progress=")
SUBMIT_LINE = re.compile(r"Submitted \S+ generation: kling_task_id=(?P<id>\S+)")
# The ResumableJobMixin's decisions (Airflow 3.3) and the operator's own line on re-attaching.
MIXIN_RECONNECT = "Reconnecting to existing job"
MIXIN_ALREADY_SUCCEEDED = "Job already completed successfully, skipping resubmission"

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """This module's vendor: persistent (``state_file``), so a test can stop it and bring it back.

    Named like the session fixture it replaces here, so the conftest archives it for a failed test.
    """
    folder = tmp_path_factory.mktemp("fault-sandbox")
    with SandboxProcess(
        api_key=API_KEY,
        generation_seconds=8.0,
        state_file=folder / "sandbox.db",
        log_path=folder / "sandbox.log",
    ) as process:
        yield process


def stack_options(sandbox: SandboxProcess, **env: str) -> dict[str, Any]:
    """A stack on ``dags_faults/`` talking to this module's sandbox, with trigger kwargs encrypted."""
    return {
        "dags_folder": DAGS,
        "parallelism": 2,
        "connections": {
            "kling_default": sandbox.airflow_connection(API_KEY),
            "kling_refused": sandbox.airflow_connection(REFUSED_KEY),
        },
        # As in production: trigger kwargs are Fernet-encrypted in the database.
        "env": {"AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(), **env},
    }


@pytest.fixture(scope="module")
def airflow_stack(sandbox: SandboxProcess) -> Iterator[AirflowStack]:
    """One stack for every test that leaves it whole (it replaces the conftest's example-DAG stack)."""
    with AirflowStack(**stack_options(sandbox)) as stack:
        yield stack


@dataclass
class Vendor:
    """What the sandbox saw from the moment a test started."""

    sandbox: SandboxProcess
    since: int

    def entries(self, kind: str | None = None, kling_task_id: str | None = None) -> list[dict[str, Any]]:
        return [entry for entry in self.sandbox.journal(kind=kind, task_id=kling_task_id) if entry["seq"] > self.since]

    def submitted(self) -> list[str]:
        """The Kling task id of every submit the vendor accepted: every generation paid for."""
        return [entry["task_id"] for entry in self.entries("submit") if entry["status"] == 200]

    def polls(self, kling_task_id: str, after: float = 0.0) -> list[dict[str, Any]]:
        return [entry for entry in self.entries("poll", kling_task_id) if entry["time"] > after]


@pytest.fixture
def vendor(sandbox: SandboxProcess) -> Vendor:
    journal = sandbox.journal()
    return Vendor(sandbox, since=max((entry["seq"] for entry in journal), default=0))


# ---------------------------------------------------------------------------------------------- helpers


def wait_during_run(
    stack: AirflowStack,
    dag_id: str,
    run_id: str,
    condition: Callable[[], T | None],
    what: str,
    timeout: float = 120.0,
) -> T:
    """Poll ``condition`` until it returns something truthy; fail early if the run ends first.

    A busy API server (SQLite answers "database is locked" under load) only means: ask again.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
            if value:
                return value
            state = stack.run_state(dag_id, run_id)
        except (httpx.TransportError, AirflowServerError):
            state = "unknown"
        if state in ("success", "failed"):
            value = condition()  # it may have come true just before the run ended
            if value:
                return value
            states = {ti.key: ti.state for ti in stack.task_instances(dag_id, run_id)}
            raise AssertionError(f"run {run_id} ended {state} before {what}; task states: {states}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def mapped(result: RunResult, task_id: str) -> list[int]:
    return sorted(ti.map_index for ti in result.task_instances if ti.task_id == task_id)


def kling_ids(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, map_indexes: list[int]) -> list[str]:
    return [stack.xcom(dag_id, run_id, task_id, "kling_task_id", map_index) for map_index in map_indexes]


def pushed_ids(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, count: int) -> list[str] | None:
    """The ``kling_task_id`` XComs of ``count`` mapped task instances, once all were pushed."""
    ids = []
    for map_index in range(count):
        try:
            ids.append(stack.xcom(dag_id, run_id, task_id, "kling_task_id", map_index))
        except AirflowStackError:  # not pushed yet (404), no such map index yet, or a busy API (5xx)
            return None
    return ids


#: The waits DAG: mapped generations waited for on the triggerer (``deferred``) and on the worker
#: (``synchronous``), their prompts given as the run's configuration.
WAITS = "faults_waits"


def trigger_waits(stack: AirflowStack, *, deferred: list[str], synchronous: list[str]) -> str:
    """Trigger the waits DAG (once parsed) with these prompts on each path; the run's id."""
    stack.wait_for_dag(WAITS)
    return stack.trigger(WAITS, conf={"deferred": deferred, "synchronous": synchronous})


def assert_run_succeeded(result: RunResult) -> None:
    failed = {key: states for key, states in result.states_seen.items() if states[-1:] != ["success"]}
    assert result.state == "success", f"run {result.run_id} {result.state}; task states: {failed}"


def polled_statuses(log: str, kling_task_id: str) -> list[str]:
    return [m["status"] for m in POLL_LINE.finditer(log) if m["id"] == kling_task_id]


# ---------------------------------------------------------------------------------------------- the faults


TRIGGERER_RESTART_ENV = {
    # A killed triggerer's triggers go to another one once its heartbeat is this old (default 30 s):
    # shortened so the test waits 10 s, not 30, with heartbeats every 2 s to stay well inside it.
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
}


def test_a_new_triggerer_finishes_every_deferred_task_after_the_old_one_is_killed_paying_once(
    airflow_stack_factory: StackFactory, sandbox: SandboxProcess, vendor: Vendor
) -> None:
    stack = airflow_stack_factory(**stack_options(sandbox, **TRIGGERER_RESTART_ENV))
    dag_id = WAITS
    prompts = [f"A harbour at dawn, shot {n} [sandbox:seconds=45]" for n in range(3)]
    run_id = trigger_waits(stack, deferred=prompts, synchronous=[])

    # Every task deferred, and every trigger has polled at least once from the first triggerer.
    def all_deferred_and_polled() -> list[str] | None:
        ids = pushed_ids(stack, dag_id, run_id, "deferred", 3)
        states = [ti.state for ti in stack.task_instances(dag_id, run_id) if ti.task_id == "deferred"]
        if ids and states == ["deferred"] * 3 and all(vendor.polls(i) for i in ids):
            return ids
        return None

    ids = wait_during_run(stack, dag_id, run_id, all_deferred_and_polled, "three deferred, polled triggers")
    before = {row["id"]: row for row in stack.trigger_rows()}
    assert len(before) == 3, before
    old_triggerers = {row["triggerer_id"] for row in before.values()}

    stack.kill("triggerer")  # SIGKILL to the triggerer and its trigger-runner subprocess
    killed_at = time.time()
    stack.start("triggerer")

    # The new triggerer adopts the same trigger rows: same ids, same kwargs (so the same absolute
    # deadline), another triggerer job.
    def adopted() -> list[dict[str, Any]] | None:
        rows = stack.trigger_rows()
        mine = [row for row in rows if row["id"] in before]
        if len(mine) == 3 and all(row["triggerer_id"] not in (None, *old_triggerers) for row in mine):
            return mine
        return None

    after = wait_during_run(stack, dag_id, run_id, adopted, "the new triggerer to adopt the triggers", 90)
    for row in after:
        old_kwargs, new_kwargs = json.loads(before[row["id"]]["kwargs"]), json.loads(row["kwargs"])
        assert new_kwargs == old_kwargs, "a rebuilt trigger must keep its kwargs, end_time included"

    adopted_at = time.time()
    result = stack.wait_for_run(dag_id, run_id, timeout=180)

    assert_run_succeeded(result)
    first_submit = min(task["created_at"] for task in sandbox.tasks() if task["task_id"] in ids)
    print(
        f"triggerer killed {killed_at - first_submit:.1f}s after the first submit, triggers adopted "
        f"{adopted_at - killed_at:.1f}s later; run took {result.seconds:.1f}s after that"
    )
    assert mapped(result, "deferred") == [0, 1, 2]
    assert sorted(vendor.submitted()) == sorted(ids), "one submission per task, none after the kill"
    for map_index, kling_task_id in enumerate(ids):
        ti = result.ti("deferred", map_index)
        assert ti.try_number == 1, f"map {map_index} needed an Airflow retry: {result.states_seen}"
        assert stack.xcom(dag_id, run_id, "deferred", map_index=map_index)["status"] == SUCCEED
        # The replacement triggerer polled the generation to its end, and logged it in its own file.
        assert vendor.polls(kling_task_id, after=killed_at), f"nobody polled {kling_task_id} after the kill"
        files = stack.trigger_log_files(dag_id, run_id, "deferred", map_index)
        assert len(files) >= 2, f"expected a trigger log per triggerer job, got {files}"
        last = log_text(stack.trigger_log(dag_id, run_id, "deferred", map_index))
        assert polled_statuses(last, kling_task_id)[-1] == SUCCEED


def test_a_retry_after_the_worker_process_is_killed_reattaches_to_the_running_generation(
    airflow_stack: AirflowStack, vendor: Vendor
) -> None:
    dag_id = "faults_worker_crash"
    airflow_stack.wait_for_dag(dag_id)
    run_id = airflow_stack.trigger(dag_id)

    # Try 1 is polling from the worker: submitted, the id stored, at least one poll answered.
    def polling() -> tuple[str, str] | None:
        running = [ti for ti in airflow_stack.task_instances(dag_id, run_id) if ti.state == "running"]
        submitted = vendor.submitted()
        if not running or not submitted or not vendor.polls(submitted[0]):
            return None
        return str(running[0].raw["id"]), submitted[0]

    ti_id, kling_task_id = wait_during_run(airflow_stack, dag_id, run_id, polling, "try 1 polling")
    runner = airflow_stack.kill_task_runner(ti_id)

    result = airflow_stack.wait_for_run(dag_id, run_id, timeout=180)

    assert_run_succeeded(result)
    assert result.ti("generate").try_number == 2
    assert vendor.submitted() == [kling_task_id], "the retry paid for a second generation"
    try1 = log_text(airflow_stack.task_log(dag_id, run_id, "generate", try_number=1))
    assert f"kling_task_id={kling_task_id}" in try1
    try2 = log_text(airflow_stack.task_log(dag_id, run_id, "generate", try_number=2))
    assert MIXIN_RECONNECT in try2, try2[-3000:]
    assert f"Re-attached to Kling task {kling_task_id}" in try2, try2[-3000:]
    assert "Submitted" not in try2
    statuses = polled_statuses(try2, kling_task_id)
    assert IN_FLIGHT & set(statuses), f"try 2 should have waited for a running generation: {statuses}"
    assert statuses[-1] == SUCCEED
    returned = airflow_stack.xcom(dag_id, run_id, "generate")
    assert (returned["kling_task_id"], returned["status"]) == (kling_task_id, SUCCEED)
    print(f"killed task runner pid {runner} of try 1; try 2 re-attached to {kling_task_id}")


VENDOR_OUTAGE_SECONDS = 20


def test_polls_ride_out_the_vendor_being_down_for_20_seconds(
    airflow_stack: AirflowStack, sandbox: SandboxProcess, vendor: Vendor
) -> None:
    dag_id = WAITS
    run_id = trigger_waits(
        airflow_stack,
        deferred=[f"Fog over a valley, take {n} [sandbox:seconds=45]" for n in range(2)],
        synchronous=["A windmill in a storm [sandbox:seconds=45]"],
    )

    def all_polled() -> list[str] | None:
        submitted = vendor.submitted()
        return submitted if len(submitted) == 3 and all(vendor.polls(i) for i in submitted) else None

    ids = wait_during_run(airflow_stack, dag_id, run_id, all_polled, "three generations being polled")
    sandbox.stop()
    down_at = time.time()
    time.sleep(VENDOR_OUTAGE_SECONDS)  # the scenario itself: the vendor is unreachable this long
    sandbox.start()  # same port, same state file: the generations are still there
    up_at = time.time()

    result = airflow_stack.wait_for_run(dag_id, run_id, timeout=180)

    assert_run_succeeded(result)
    assert up_at - down_at >= VENDOR_OUTAGE_SECONDS
    assert sorted(vendor.submitted()) == sorted(ids), "a wait must never submit again"
    deferred = kling_ids(airflow_stack, dag_id, run_id, "deferred", [0, 1])
    synchronous = kling_ids(airflow_stack, dag_id, run_id, "synchronous", [0])
    assert sorted(deferred + synchronous) == sorted(ids)
    for kling_task_id in ids:
        assert vendor.polls(kling_task_id, after=up_at), f"{kling_task_id} was not polled after the outage"
    # Both waits met the outage and retried through it, as their logs say.
    logs = [
        *(log_text(airflow_stack.trigger_log(dag_id, run_id, "deferred", n)) for n in (0, 1)),
        log_text(airflow_stack.task_log(dag_id, run_id, "synchronous", 0)),
    ]
    for log, kling_task_id in zip(logs, [*deferred, *synchronous], strict=True):
        assert "Kling call failed" in log, log[-3000:]
        assert polled_statuses(log, kling_task_id)[-1] == SUCCEED


#: A seed whose first chaos draws include every kind of failure (checked below, not assumed).
CHAOS_SEED = 20261122


def test_polls_ride_out_429_500_and_html_502_answers(
    airflow_stack: AirflowStack, sandbox: SandboxProcess, vendor: Vendor
) -> None:
    dag_id = WAITS
    sandbox.configure(rate_429=0.1, rate_500=0.1, rate_502_html=0.1, chaos_scope="poll", seed=CHAOS_SEED)
    try:
        run_id = trigger_waits(
            airflow_stack,
            deferred=[f"Neon rain in an alley, take {n} [sandbox:seconds=16]" for n in range(3)],
            synchronous=["Neon rain in an alley, from the worker [sandbox:seconds=16]"],
        )
        result = airflow_stack.wait_for_run(dag_id, run_id, timeout=240)
    finally:
        sandbox.reset_config()

    assert_run_succeeded(result)
    ids = kling_ids(airflow_stack, dag_id, result.run_id, "deferred", [0, 1, 2])
    ids += kling_ids(airflow_stack, dag_id, result.run_id, "synchronous", [0])
    assert sorted(vendor.submitted()) == sorted(ids), "chaos on polls must never cause a second submit"
    for ti in result.task_instances:
        assert ti.try_number <= 1, f"{ti.key} needed an Airflow retry"
    answers = [entry for i in ids for entry in vendor.polls(i)]
    notes = {entry["note"] for entry in answers if entry["note"]}
    assert {"chaos:429", "chaos:500", "chaos:502_html"} <= notes, f"chaos did not hit every kind: {notes}"
    share = sum(1 for entry in answers if entry["status"] != 200) / len(answers)
    print(f"{len(answers)} polls, {share:.0%} answered with an error")


def test_a_retry_after_a_trigger_timeout_reattaches_instead_of_paying_again(
    airflow_stack: AirflowStack, vendor: Vendor
) -> None:
    dag_id = "faults_trigger_timeout"
    result = airflow_stack.run(dag_id, timeout=240)

    assert_run_succeeded(result)
    run_id = result.run_id
    paid = vendor.submitted()
    assert len(paid) == 2, f"two tasks, two generations; the vendor saw {paid}"
    for task_id, decision in (("reattach_running", MIXIN_RECONNECT), ("reattach_finished", MIXIN_ALREADY_SUCCEEDED)):
        assert result.ti(task_id).try_number == 2, result.states_seen
        try1 = log_text(airflow_stack.task_log(dag_id, run_id, task_id, try_number=1))
        (kling_task_id,) = [m["id"] for m in SUBMIT_LINE.finditer(try1)]
        assert kling_task_id in paid
        # Try 1 failed on the trigger's own timeout, and its message names the generation that runs on.
        timeout_lines = [line for line in try1.splitlines() if "KlingTimeoutError" in line]
        assert timeout_lines, try1[-3000:]
        assert f"kling_task_id={kling_task_id}" in try1
        assert "keeps running" in try1
        try2 = log_text(airflow_stack.task_log(dag_id, run_id, task_id, try_number=2))
        assert decision in try2, try2[-3000:]
        assert f"Re-attached to Kling task {kling_task_id}" in try2, try2[-3000:]
        assert "Submitted" not in try2
        returned = airflow_stack.xcom(dag_id, run_id, task_id)
        assert (returned["kling_task_id"], returned["status"]) == (kling_task_id, SUCCEED)
    # The running generation was waited for on the triggerer again; the finished one needed no wait.
    assert airflow_stack.deferred_tries(dag_id, run_id, "reattach_running") == [1, 2]
    assert airflow_stack.deferred_tries(dag_id, run_id, "reattach_finished") == [1]


# ---------------------------------------------------------------------------------------------- secrets


def scan_sources(stack: AirflowStack, sandbox: SandboxProcess, triggers: list[dict[str, Any]]) -> dict[str, bytes]:
    """Everything a run leaves behind, by where it was found.

    Every file under ``AIRFLOW_HOME`` (task and trigger logs, the components' own output, the SQLite
    database and its journal files, the config); every XCom and task instance (rendered templates
    included) as the REST API returns them; the trigger rows seen during the run, kwargs decrypted; the
    sandbox's journal, log and state file.
    """
    sources = files_under(stack.home)
    for entry in stack.xcom_entries():
        name = (
            f"xcom:{entry['dag_id']}/{entry['run_id']}/{entry['task_id']}[{entry.get('map_index', -1)}]/{entry['key']}"
        )
        sources[name] = json.dumps(entry["value"]).encode()
    for ti in stack.task_instances("~", "~"):  # every run of every DAG
        name = f"ti:{ti.raw['dag_id']}/{ti.raw['dag_run_id']}/{ti.task_id}[{ti.map_index}]"
        sources[name] = json.dumps(ti.raw).encode()
    for n, row in enumerate(triggers):
        sources[f"trigger:{row['id']}#{n}"] = json.dumps(row).encode()
    sources["sandbox:journal"] = json.dumps(sandbox.journal()).encode()
    sources["sandbox:tasks"] = json.dumps(sandbox.tasks()).encode()
    state = Path(str(sandbox.health()["state_file"]))
    for path in [sandbox.log_path, *state.parent.glob(f"{state.name}*")]:
        sources[f"sandbox:{path.name}"] = path.read_bytes()
    return sources


def test_the_api_key_appears_in_no_log_xcom_trigger_row_or_database(
    airflow_stack: AirflowStack, sandbox: SandboxProcess, vendor: Vendor
) -> None:
    dag_id = "faults_secrets"
    airflow_stack.wait_for_dag(dag_id)
    canary = f"canary-{secrets.token_hex(8)}"
    planted = f"planted-{secrets.token_hex(8)}"
    (airflow_stack.home / "logs" / "planted.txt").write_text(f"a line with {planted} in it\n")
    run_id = airflow_stack.trigger(dag_id, conf={"canary": canary})

    # Trigger rows are deleted once their task resumes (and SQLite reuses their ids): collect every
    # distinct row while the run goes on.
    triggers: dict[str, dict[str, Any]] = {}

    def finished() -> bool:
        triggers.update({json.dumps(row, sort_keys=True): row for row in airflow_stack.trigger_rows()})
        return airflow_stack.run_state(dag_id, run_id) in ("success", "failed")

    wait_during_run(airflow_stack, dag_id, run_id, lambda: finished() or None, "the run to end", 240)
    result = airflow_stack.wait_for_run(dag_id, run_id)

    # The run went through a success, a failure with a retry, and a refused key with a retry.
    assert result.state == "failed"
    states = {ti.task_id: (ti.state, ti.try_number) for ti in result.task_instances}
    assert states == {
        "succeed": ("success", 1),
        "fail_twice": ("failed", 2),
        "refused_key": ("failed", 2),
        "canary": ("success", 1),
    }, states
    refused = log_text(airflow_stack.task_log(dag_id, run_id, "refused_key", try_number=2))
    assert "INVALID_API_KEY" in refused, refused[-3000:]
    assert triggers, "no trigger row was seen while the deferrable tasks waited"
    # Paid: the success once, the failed generation twice (a retry submits again only after a failure).
    assert len(vendor.submitted()) == 3, vendor.submitted()

    sources = scan_sources(airflow_stack, sandbox, list(triggers.values()))

    # The scan reads what it claims to: a planted file, XCom and the database, trigger kwargs, the journal.
    assert hits(sources, planted) == {"file:logs/planted.txt": 1}
    canary_hits = hits(sources, canary)
    for prefix in ("xcom:", "ti:", "file:airflow.db"):
        assert any(name.startswith(prefix) for name in canary_hits), (prefix, canary_hits)
    kling_task_id = airflow_stack.xcom(dag_id, run_id, "succeed", key="kling_task_id")
    id_hits = hits(sources, kling_task_id)
    for prefix in ("trigger:", "xcom:", "file:logs/", "sandbox:journal"):
        assert any(name.startswith(prefix) for name in id_hits), (prefix, id_hits)

    # And the keys are nowhere: not the accepted one, not the refused one.
    assert hits(sources, API_KEY) == {}
    assert hits(sources, REFUSED_KEY) == {}
    print(f"scanned {len(sources)} sources, {sum(map(len, sources.values())) / 2**20:.1f} MiB: no key")
