"""Eventual-consistency faults on a real Airflow 3.3 stack: a new task not visible yet, a success without a
video, an API key rotated while ten triggers wait.

Every assertion reads a durable record: the sandbox's journal (every request it answered, so every
generation paid for), the task and trigger logs, the task's try history and XCom, never a state sampled
while the run goes on. "Paid once" counts every submit the vendor accepted during the test.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_kling.sandbox.process import SandboxProcess
from tools.airflow_stack import AirflowStack, AirflowStackError, RunResult, log_text

AIRFLOW = tuple(int(part) for part in re.findall(r"\d+", metadata.version("apache-airflow"))[:2])
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(AIRFLOW < (3, 3), reason="the fault suite runs on Airflow 3.3+"),
]

#: The rotation DAG lives in ``dags_consistency/``; the waits are the fault suite's own DAG, run here too.
DAGS = Path(__file__).parent / "dags_consistency"
WAITS_DAG_FILE = Path(__file__).parent / "dags_faults" / "faults_waits.py"
WAITS = "faults_waits"
#: Distinctive keys: the old one is refused after the rotation, the new one only accepted then.
OLD_KEY = f"kling-e2e-old-{secrets.token_hex(12)}"
NEW_KEY = f"kling-e2e-new-{secrets.token_hex(12)}"
ROTATING_CONN = "kling_rotating"
TRIGGERS = 10


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """This module's vendor, with an API key it can rotate (named like the conftest's, which it replaces)."""
    folder = tmp_path_factory.mktemp("consistency-sandbox")
    with SandboxProcess(api_key=OLD_KEY, generation_seconds=4.0, log_path=folder / "sandbox.log") as process:
        yield process


@pytest.fixture(scope="module")
def airflow_stack(sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """This module's stack on ``dags_consistency/`` and the fault suite's waits DAG (named like the
    conftest's, which it replaces).

    Booted with more slack than the shared one: on a loaded machine a stack can take minutes to start.
    """
    dags = tmp_path_factory.mktemp("consistency-dags")
    for path in (*sorted(DAGS.glob("*.py")), WAITS_DAG_FILE):
        shutil.copy(path, dags / path.name)
    stack = AirflowStack(
        dags_folder=dags,
        parallelism=2,
        connections={"kling_default": sandbox.airflow_connection(OLD_KEY)},
        # A task runner's call to the API server that times out fails the task: slack for a busy machine.
        env={"AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60"},
    )
    try:
        stack.boot(timeout=600)
        yield stack
    finally:
        stack.stop()
        stack.cleanup()


def submitted(sandbox: SandboxProcess, since: int) -> list[str]:
    """The Kling task id of every submit the vendor accepted after journal entry ``since``."""
    return [
        entry["task_id"] for entry in sandbox.journal(kind="submit") if entry["seq"] > since and entry["status"] == 200
    ]


def last_seq(sandbox: SandboxProcess) -> int:
    return max((entry["seq"] for entry in sandbox.journal()), default=0)


def polls(sandbox: SandboxProcess, kling_task_id: str) -> list[dict[str, Any]]:
    return sandbox.journal(kind="poll", task_id=kling_task_id)


def assert_succeeded_in_one_try(stack: AirflowStack, result: RunResult, dag_id: str, task_id: str) -> list[int]:
    indexes = sorted(ti.map_index for ti in result.task_instances if ti.task_id == task_id)
    for index in indexes:
        tries = stack.tries(dag_id, result.run_id, task_id, index)
        assert [t["state"] for t in tries] == ["success"], (task_id, index, tries)
    return indexes


def run(stack: AirflowStack, dag_id: str, conf: dict[str, Any], timeout: float = 420.0) -> RunResult:
    stack.wait_for_dag(dag_id, timeout=120)
    result = stack.run(dag_id, conf=conf, timeout=timeout)
    assert result.state == "success", {key: states for key, states in result.states_seen.items()}
    return result


def run_on_both_paths(stack: AirflowStack, sandbox: SandboxProcess, prompt: str) -> tuple[RunResult, list[str]]:
    """Wait for ``prompt`` on the triggerer and on the worker: the run, and the submits the vendor accepted."""
    since = last_seq(sandbox)
    result = run(stack, WAITS, {"deferred": [prompt], "synchronous": [prompt]})
    return result, submitted(sandbox, since)


def each_path(stack: AirflowStack, result: RunResult) -> Iterator[tuple[str, dict[str, Any]]]:
    """Per path (deferred, then synchronous), once it is checked to have succeeded in one try: the Kling
    task id it waited for, and its return value."""
    for task_id in ("deferred", "synchronous"):
        (index,) = assert_succeeded_in_one_try(stack, result, WAITS, task_id)
        kling_task_id = stack.xcom(WAITS, result.run_id, task_id, "kling_task_id", index)
        yield kling_task_id, stack.xcom(WAITS, result.run_id, task_id, "return_value", index)


# ---------------------------------------------------------------------------------------------- faults


def test_a_new_task_not_found_for_its_first_polls_is_waited_out_on_both_paths(
    airflow_stack: AirflowStack, sandbox: SandboxProcess
) -> None:
    prompt = "a fox in snow [sandbox:not_found=2] [sandbox:seconds=6]"

    result, ids = run_on_both_paths(airflow_stack, sandbox, prompt)

    assert len(ids) == 2  # one per path: nothing paid twice
    for kling_task_id, summary in each_path(airflow_stack, result):
        answers = [entry["status"] for entry in polls(sandbox, kling_task_id)]
        assert answers[:3] == [404, 404, 200], answers
        assert summary["videos"][0]["url"]
    deferred_id = airflow_stack.xcom(WAITS, result.run_id, "deferred", "kling_task_id", 0)
    trigger_text = log_text(airflow_stack.trigger_log(WAITS, result.run_id, "deferred", 0))
    assert trigger_text.count(f"Kling task {deferred_id} is not visible yet") == 1  # logged once, as such
    sync_text = log_text(airflow_stack.task_log(WAITS, result.run_id, "synchronous", 0))
    assert sync_text.count("is not visible yet") == 1


def test_a_success_without_a_video_on_the_first_poll_is_polled_again(
    airflow_stack: AirflowStack, sandbox: SandboxProcess
) -> None:
    result, ids = run_on_both_paths(
        airflow_stack, sandbox, "a fox in snow [sandbox:empty_success=1] [sandbox:seconds=3]"
    )

    assert len(ids) == 2
    for kling_task_id, summary in each_path(airflow_stack, result):
        notes = [entry.get("note") for entry in polls(sandbox, kling_task_id)]
        assert notes.count("empty_success") == 1, notes
        assert summary["videos"][0]["url"]


def test_an_api_key_rotated_while_ten_triggers_wait_costs_each_at_most_one_refused_poll(
    airflow_stack: AirflowStack, sandbox: SandboxProcess
) -> None:
    api = httpx.Client(base_url=f"{airflow_stack.base_url}/api/v2", timeout=30.0)
    connection = {"connection_id": ROTATING_CONN, "conn_type": "kling", "host": sandbox.url, "password": OLD_KEY}
    _check(api.post("/connections", json=connection))
    since = last_seq(sandbox)
    prompts = [f"shot {n} [sandbox:seconds=90]" for n in range(TRIGGERS)]
    airflow_stack.wait_for_dag("consistency_rotation", timeout=120)
    run_id = airflow_stack.trigger("consistency_rotation", conf={"prompts": prompts})

    # Rotate once every generation is being polled by its trigger (the journal says so).
    deadline = time.monotonic() + 240
    while True:
        ids = submitted(sandbox, since)
        polled = {entry["task_id"] for entry in sandbox.journal(kind="poll") if entry["seq"] > since}
        if len(ids) >= TRIGGERS and set(ids) <= polled:
            break
        assert time.monotonic() < deadline, f"only {len(ids)} submitted, {len(polled)} polled"
        time.sleep(1)
    rotated_at = last_seq(sandbox)
    # As a user does it: the new key goes into the connection, then the old one is revoked at the vendor.
    _check(api.patch(f"/connections/{ROTATING_CONN}", json={**connection, "password": NEW_KEY}))
    httpx.post(f"{sandbox.url}/sandbox/api-key", json={"api_key": NEW_KEY}, timeout=10).raise_for_status()

    result = airflow_stack.wait_for_run("consistency_rotation", run_id, timeout=420)

    assert result.state == "success"
    ids = submitted(sandbox, since)
    assert len(ids) == TRIGGERS
    assert len(set(ids)) == TRIGGERS
    assert_succeeded_in_one_try(airflow_stack, result, "consistency_rotation", "deferred")
    refused = Counter(
        entry["task_id"]
        for entry in sandbox.journal(kind="poll")
        if entry["seq"] > rotated_at and entry["status"] in (401, 403)
    )
    assert refused, "the rotation was never noticed: the test did not test anything"
    assert max(refused.values()) == 1, refused
    after = [e for e in sandbox.journal(kind="poll") if e["seq"] > rotated_at and e["status"] == 200]
    assert {entry["task_id"] for entry in after} == set(ids)  # every trigger polled on with the new key
    texts = [
        log_text(airflow_stack.trigger_log("consistency_rotation", run_id, "deferred", index))
        for index in range(TRIGGERS)
    ]
    assert sum("reading the connection again" in text for text in texts) == sum(refused.values())
    for text in texts:
        assert OLD_KEY not in text
        assert NEW_KEY not in text


def _check(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise AirflowStackError(f"{response.request.method} {response.request.url} -> {response.status_code}")
    return response
