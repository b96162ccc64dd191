"""The provider on Airflow's distributed deployment: PostgreSQL, CeleryExecutor, two workers, two triggerers.

One :class:`~tools.distributed_stack.DistributedStack` serves the module (it takes minutes to boot on two
cores); the scenarios run one after another on it, and those that kill a component start it again. The
witnesses are durable records only: the sandbox's journal and task list (what the vendor saw and
billed), the trigger table, the triggerers' per-task log files and Airflow's task instance records.

Runs in ``make test`` (marked ``e2e``) and alone with ``-m cluster_e2e``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_kling.sandbox.media import task_id_of, video_for
from airflow_provider_kling.sandbox.process import SandboxProcess, peak_in_flight
from tools.airflow_stack import TERMINAL_RUN_STATES, RunResult
from tools.distributed_stack import DistributedStack, RedisServer
from tools.moto_s3 import FAKE_CREDENTIALS, aws_connection, s3_client
from tools.secret_scan import files_under, hits

pytestmark = [pytest.mark.e2e, pytest.mark.cluster_e2e]

DAGS = Path(__file__).parent / "dags_distributed"
#: The module's own sandbox accepts only this key: distinctive, so the secret scan's every hit is a leak.
CLUSTER_API_KEY = f"kling-cluster-key-{secrets.token_hex(16)}"
BUCKET = "kling-cluster"
HEALTH_CHECK_THRESHOLD = 15.0
#: The cluster-wide limit and how many generations poll under it (each once a second).
RATE_LIMIT = 5.0
RATE_LIMIT_GENERATIONS = 200
#: What a process logs (once) when the rate limit's store cannot be reached.
STORE_LOST = "poll rate limit store"
RUN_TIMEOUT = 900.0


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """The module's own sandbox: it accepts only :data:`CLUSTER_API_KEY` (the suite's accepts a fixed one)."""
    log = tmp_path_factory.mktemp("cluster-sandbox") / "sandbox.log"
    with SandboxProcess(api_key=CLUSTER_API_KEY, generation_seconds=8.0, log_path=log) as process:
        yield process


@pytest.fixture(scope="module")
def limiter_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of its own for the cluster-wide rate limit, so stopping it leaves Celery's broker alone."""
    server = RedisServer(tmp_path_factory.mktemp("limiter") / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def airflow_stack(sandbox: SandboxProcess, moto_s3: str, limiter_store: RedisServer) -> Iterator[DistributedStack]:
    """The module's distributed stack (named like the suite's shared stack, so a failure keeps its logs)."""
    kling = json.loads(sandbox.airflow_connection(CLUSTER_API_KEY))
    limited = {
        **kling,
        "extra": {"max_polls_per_second": RATE_LIMIT, "rate_limit_storage_uri": limiter_store.url(1)},
    }
    stack = DistributedStack(
        dags_folder=DAGS,
        workers=2,
        worker_concurrency=2,
        triggerer_health_check_threshold=HEALTH_CHECK_THRESHOLD,
        task_instance_heartbeat_timeout=30,
        connections={
            "kling_default": json.dumps(kling),
            "kling_limited": json.dumps(limited),
            "aws_default": aws_connection(moto_s3),
        },
        env=dict(FAKE_CREDENTIALS),
    )
    with stack:
        yield stack


@pytest.fixture(scope="module")
def s3(moto_s3: str) -> Any:
    """A boto3 client on moto, with the bucket the delivery DAG writes to."""
    return s3_client(moto_s3, bucket=BUCKET)


_seeds = iter(range(1_000_000, 10**9, 10_000))


def start(stack: DistributedStack, dag_id: str, count: int, seconds: float, **conf: Any) -> tuple[str, int]:
    """Trigger ``dag_id`` with ``count`` generations of ``seconds`` each; returns (run id, first seed)."""
    seed = next(_seeds)
    stack.wait_for_dag(dag_id, timeout=300)
    return stack.trigger(dag_id, conf={"count": count, "seconds": seconds, "seed": seed, **conf}), seed


def vendor_tasks(sandbox: SandboxProcess, seed: int, count: int) -> dict[int, list[dict[str, Any]]]:
    """The sandbox's tasks of one run, by map index (from each prompt's seed): each list is one submission."""
    found: dict[int, list[dict[str, Any]]] = {n: [] for n in range(count)}
    for task in sandbox.tasks():
        # The sandbox lists each task's prompt markers as given (text).
        task_seed = int((task.get("markers") or {}).get("seed") or -1)
        if seed <= task_seed < seed + count:
            found[task_seed - seed].append(task)
    return found


def assert_all_succeeded_once(result: RunResult, sandbox: SandboxProcess, seed: int, count: int) -> dict[int, str]:
    """Every mapped generation succeeded and was submitted exactly once; returns map index -> Kling task id."""
    states = {ti.map_index: ti.state for ti in result.task_instances if ti.task_id == "generate"}
    assert result.state == "success", f"run {result.run_id} {result.state}: {states}"
    assert states == dict.fromkeys(range(count), "success")
    submissions = vendor_tasks(sandbox, seed, count)
    assert {n: len(tasks) for n, tasks in submissions.items()} == dict.fromkeys(range(count), 1)
    return {n: tasks[0]["task_id"] for n, tasks in submissions.items()}


def trigger_job_ids(stack: DistributedStack, result: RunResult, map_index: int) -> set[int]:
    """Ids of the triggerer jobs that wrote a trigger log for this mapped task (who ran its trigger)."""
    files = stack.trigger_log_files(result.dag_id, result.run_id, "generate", map_index)
    return {int(path.name.rsplit(".", 2)[-2]) for path in files}


def polls(sandbox: SandboxProcess, kling_task_ids: set[str]) -> list[dict[str, Any]]:
    """The vendor's journal of Task Result calls for these tasks, oldest first."""
    return [e for e in sandbox.journal(kind="poll") if e["task_id"] in kling_task_ids]


def trigger_holders(stack: DistributedStack, kling_task_ids: dict[int, str]) -> dict[str, list[int]]:
    """Which triggerer (component name) holds the trigger of which map index, right now."""
    names = {job_id: name for name, job_id in stack.triggerer_job_ids.items()}
    held: dict[str, list[int]] = {name: [] for name in stack.triggerer_job_ids}
    for row in stack.trigger_rows():
        for n, kling_id in kling_task_ids.items():
            if kling_id in row["kwargs"] and row["triggerer_id"] in names:
                held[names[row["triggerer_id"]]].append(n)
    return held


def running_kling_ids(sandbox: SandboxProcess, seed: int, count: int) -> dict[int, str]:
    """Map index -> Kling task id of the generations of a run submitted so far."""
    return {n: tasks[0]["task_id"] for n, tasks in vendor_tasks(sandbox, seed, count).items() if tasks}


# ------------------------------------------------------------------ scenarios


def test_fan_out_runs_every_generation_once_across_both_triggerers(
    airflow_stack: DistributedStack, sandbox: SandboxProcess
) -> None:
    count = 40
    run_id, seed = start(airflow_stack, "cluster_generations", count, seconds=20)
    result = airflow_stack.wait_for_run("cluster_generations", run_id, timeout=RUN_TIMEOUT)

    kling_ids = assert_all_succeeded_once(result, sandbox, seed, count)
    ran_on = set().union(*(trigger_job_ids(airflow_stack, result, n) for n in range(count)))
    assert ran_on == set(airflow_stack.triggerer_job_ids.values()), "triggers did not run on both triggerers"
    # Every task ran on a Celery worker, and each stored nothing but its own XCom.
    for n in range(count):
        assert airflow_stack.xcom(result.dag_id, run_id, "generate", "kling_task_id", n) == kling_ids[n]


def test_a_killed_triggerers_generations_complete_on_the_survivor(
    airflow_stack: DistributedStack, sandbox: SandboxProcess
) -> None:
    count = 12
    run_id, seed = start(airflow_stack, "cluster_generations", count, seconds=90)
    held: dict[str, list[int]] = {}

    def most_triggers_running() -> bool:
        held.update(trigger_holders(airflow_stack, running_kling_ids(sandbox, seed, count)))
        return sum(len(v) for v in held.values()) >= 10

    airflow_stack.wait_for(most_triggers_running, 600, f"fewer than 10 triggers running: {held}", 1.0)
    victim = max(held, key=lambda name: len(held[name]))
    survivor = next(name for name in held if name != victim)
    victim_ids = {running_kling_ids(sandbox, seed, count)[n] for n in held[victim]}
    killed_at = time.time()
    airflow_stack.kill(victim)  # SIGKILL to its whole process group (the trigger runner included)

    result = airflow_stack.wait_for_run("cluster_generations", run_id, timeout=RUN_TIMEOUT)
    assert_all_succeeded_once(result, sandbox, seed, count)
    survivor_job = airflow_stack.triggerer_job_ids[survivor]
    for n in held[victim]:
        assert survivor_job in trigger_job_ids(airflow_stack, result, n), f"map index {n} never ran on {survivor}"
    after = [e["time"] for e in polls(sandbox, victim_ids) if e["time"] > killed_at]
    delay = min(after) - killed_at
    print(f"\ntriggerer failover: {len(held[victim])} triggers moved; first poll by the survivor {delay:.1f} s after")
    airflow_stack.start(victim)


def test_a_killed_workers_sync_wait_is_retried_and_re_attaches(
    airflow_stack: DistributedStack, sandbox: SandboxProcess
) -> None:
    run_id, seed = start(airflow_stack, "cluster_sync_wait", 1, seconds=120)
    found: dict[str, str] = {}

    def waiting_on_a_worker() -> bool:
        if not running_kling_ids(sandbox, seed, 1):
            return False
        tis = [ti for ti in airflow_stack.task_instances("cluster_sync_wait", run_id) if ti.task_id == "generate"]
        if not tis or tis[0].state != "running":
            return False
        # The task's supervisor and runner carry its task instance id in their process titles.
        for worker in airflow_stack.worker_names:
            if any(tis[0].raw["id"] in " ".join(cmd) for cmd in _tree_cmdlines(airflow_stack.procs[worker].pid)):
                found["worker"] = worker
        return "worker" in found

    airflow_stack.wait_for(waiting_on_a_worker, 600, "the sync-mode wait never started on a worker", 1.0)
    airflow_stack.kill_tree(found["worker"])

    result = airflow_stack.wait_for_run("cluster_sync_wait", run_id, timeout=RUN_TIMEOUT)
    assert_all_succeeded_once(result, sandbox, seed, 1)
    ti = result.ti("generate", 0)
    assert ti.try_number == 2, "the killed try was not retried"
    airflow_stack.start(found["worker"])


def test_celery_workers_store_each_tasks_own_video_in_s3(
    airflow_stack: DistributedStack, sandbox: SandboxProcess, s3: Any
) -> None:
    count = 4
    run_id, seed = start(airflow_stack, "cluster_to_s3", count, seconds=10, bucket=BUCKET)
    result = airflow_stack.wait_for_run("cluster_to_s3", run_id, timeout=RUN_TIMEOUT)

    kling_ids = assert_all_succeeded_once(result, sandbox, seed, count)
    prefix = f"cluster/{run_id}/"
    listed = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))
    # Only whole objects under their final keys: no temporary copy left behind.
    assert listed == sorted(f"{prefix}{n}.{ext}" for n in range(count) for ext in ("json", "mp4"))
    for n in range(count):
        body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}{n}.mp4")["Body"].read()
        assert task_id_of(body) == kling_ids[n]
        assert body == video_for(kling_ids[n])


def test_a_pool_counting_deferred_tasks_caps_generations_in_flight(
    airflow_stack: DistributedStack, sandbox: SandboxProcess
) -> None:
    api = httpx.Client(base_url=f"{airflow_stack.base_url}/api/v2", timeout=30)
    response = api.post("/pools", json={"name": "kling_quota", "slots": 3, "include_deferred": True})
    assert response.status_code in (200, 201), response.text
    count = 12
    run_id, seed = start(airflow_stack, "cluster_pool", count, seconds=10)
    result = airflow_stack.wait_for_run("cluster_pool", run_id, timeout=RUN_TIMEOUT)

    assert_all_succeeded_once(result, sandbox, seed, count)
    tasks = [task for tasks in vendor_tasks(sandbox, seed, count).values() for task in tasks]
    assert peak_in_flight(tasks) == 3


def test_the_same_trigger_run_twice_at_once_resumes_one_task_and_submits_once(
    airflow_stack: DistributedStack, sandbox: SandboxProcess
) -> None:
    """Freeze a triggerer's main process (heartbeat, database) but not its trigger runner: the runner
    keeps polling while the other triggerer, seeing no heartbeat, claims the trigger and runs it too.
    Both see the generation finish; the frozen one delivers its event only after the task resumed."""
    run_id, seed = start(airflow_stack, "cluster_generations", 1, seconds=60)
    held: dict[str, list[int]] = {}

    def trigger_polling() -> bool:
        # Assigned is not enough: the holder must have started the trigger and logged a poll.
        held.clear()
        held.update(trigger_holders(airflow_stack, running_kling_ids(sandbox, seed, 1)))
        holder = next((name for name, held_by in held.items() if held_by), None)
        if holder is None:
            return False
        events = _trigger_events(airflow_stack, "cluster_generations", run_id, airflow_stack.triggerer_job_ids[holder])
        return any("status=" in str(e.get("event")) for e in events)

    airflow_stack.wait_for(trigger_polling, 600, "the trigger never started polling", 1.0)
    frozen = next(name for name, held_by in held.items() if held_by)
    other = next(name for name in held if name != frozen)
    main_pid = airflow_stack.procs[frozen].pid
    os.kill(main_pid, signal.SIGSTOP)
    try:
        result = airflow_stack.wait_for_run("cluster_generations", run_id, timeout=RUN_TIMEOUT)
    finally:
        os.kill(main_pid, signal.SIGCONT)
    frozen_job = airflow_stack.triggerer_job_ids[frozen]
    # Thawed, the frozen triggerer heartbeats again: by then it has handed over what it held.
    thawed_at = time.time()
    airflow_stack.wait_for(
        lambda: _heartbeat(airflow_stack, frozen_job) > thawed_at + 2 * 5, 120, f"{frozen} never heartbeat again", 1.0
    )

    assert_all_succeeded_once(result, sandbox, seed, 1)
    [ti] = [ti for ti in airflow_stack.task_instances("cluster_generations", run_id) if ti.task_id == "generate"]
    assert (ti.state, ti.try_number) == ("success", 1), "the task resumed twice or was retried"
    # Both ran the trigger: each triggerer's job wrote its log for this task.
    assert trigger_job_ids(airflow_stack, result, 0) == {frozen_job, airflow_stack.triggerer_job_ids[other]}
    # And the frozen one's runner was polling while the other held the trigger (the vendor saw both).
    kling_id = running_kling_ids(sandbox, seed, 1)[0]
    progress = {
        job: [
            e["timestamp"]
            for e in _trigger_events(airflow_stack, result.dag_id, run_id, job)
            if kling_id in str(e.get("event"))
        ]
        for job in (frozen_job, airflow_stack.triggerer_job_ids[other])
    }
    assert max(progress[frozen_job]) > min(progress[airflow_stack.triggerer_job_ids[other]]), progress


def test_the_poll_rate_limit_holds_across_the_cluster_and_survives_losing_its_store(
    airflow_stack: DistributedStack, sandbox: SandboxProcess, limiter_store: RedisServer
) -> None:
    count = RATE_LIMIT_GENERATIONS
    run_id, seed = start(airflow_stack, "cluster_rate_limit", count, seconds=240)
    first_poll: list[float] = []

    def polled_for_a_while() -> bool:
        ids = set(running_kling_ids(sandbox, seed, count).values())
        times = [e["time"] for e in polls(sandbox, ids)]
        first_poll[:] = times[:1]
        return bool(times) and times[-1] - times[0] >= 120

    airflow_stack.wait_for(polled_for_a_while, RUN_TIMEOUT, "the generations never polled for two minutes", 2.0)
    stopped_at = time.time()
    limiter_store.stop()

    result = airflow_stack.wait_for_run("cluster_rate_limit", run_id, timeout=2 * RUN_TIMEOUT)
    kling_ids = assert_all_succeeded_once(result, sandbox, seed, count)
    times = [e["time"] for e in polls(sandbox, set(kling_ids.values())) if e["time"] < stopped_at]
    worst = max(
        sum(1 for t in times if start_at <= t < start_at + 10) / 10
        for start_at in [times[0] + s for s in range(int(times[-1] - times[0] - 10) + 1)]
    )
    assert worst <= RATE_LIMIT * 1.1, f"the vendor saw {worst:.1f} polls/s in a 10 s window (limit {RATE_LIMIT})"
    # Losing the store was said, once per polling process at most: never once per poll.
    logs = [*airflow_stack.home.glob("triggerer*.log"), *airflow_stack.home.glob("logs/dag_id=cluster_rate_limit/**/*")]
    warnings = sum(path.read_text(errors="replace").count(STORE_LOST) for path in logs if path.is_file())
    assert 1 <= warnings <= len(airflow_stack.triggerer_names), f"{warnings} warnings about the lost store"


def test_the_api_key_appears_in_no_log_row_or_message_of_the_cluster(
    airflow_stack: DistributedStack, sandbox: SandboxProcess
) -> None:
    """Last: what every scenario above left behind, plus the broker and trigger rows seen during a run.

    Files under ``AIRFLOW_HOME`` (every component's output, the Celery workers' and triggerers' task
    and trigger logs), a ``pg_dump`` of the metadata database (XCom, task instances and their rendered
    fields, the Celery result backend, the trigger table, logs of events), what Celery's Redis broker
    held while tasks went through it, and the trigger rows (kwargs decrypted) while the run waited.
    """
    count = 2
    run_id, seed = start(airflow_stack, "cluster_generations", count, seconds=20)
    triggers: dict[str, dict[str, Any]] = {}
    broker: dict[str, bytes] = {}

    def finished() -> bool:
        triggers.update({json.dumps(row, sort_keys=True, default=str): row for row in airflow_stack.trigger_rows()})
        for key, value in airflow_stack.redis.values(0).items():
            broker[f"redis:{key}#{len(broker)}"] = value + b"\n" + _message_bodies(value)
        return airflow_stack.run_state("cluster_generations", run_id) in TERMINAL_RUN_STATES

    # Often: a Celery message stays in the broker (unacknowledged) only while its task runs.
    airflow_stack.wait_for(finished, RUN_TIMEOUT, "the run never ended", 0.25)
    result = airflow_stack.wait_for_run("cluster_generations", run_id)
    kling_ids = assert_all_succeeded_once(result, sandbox, seed, count)

    sources = files_under(airflow_stack.home)
    sources["postgres:dump"] = airflow_stack.postgres.dump()
    sources.update(broker)
    for n, row in enumerate(triggers.values()):
        sources[f"trigger:{row['id']}#{n}"] = json.dumps(row, default=str).encode()
    sources["sandbox:journal"] = json.dumps(sandbox.journal()).encode()

    # The scan reads what it claims to: a Kling task id is in the logs, the database, the broker's
    # messages (the workers' task commands name the run) and the trigger rows.
    id_hits = hits(sources, kling_ids[0])
    for prefix in ("file:logs/", "postgres:", "trigger:", "sandbox:journal"):
        assert any(name.startswith(prefix) for name in id_hits), (prefix, sorted(id_hits))
    assert any(run_id in data.decode(errors="replace") for name, data in broker.items()), sorted(broker)[:20]
    # And the key is nowhere.
    assert hits(sources, CLUSTER_API_KEY) == {}
    print(f"\nscanned {len(sources)} sources, {sum(map(len, sources.values())) / 2**20:.1f} MiB: no key")


# ------------------------------------------------------------------ helpers


def _message_bodies(value: bytes) -> bytes:
    """The decoded bodies of the Celery messages in a broker value.

    kombu stores a message as JSON with its body base64-encoded: in a queue as the message itself, in
    the ``unacked`` hash (a task being worked on) as ``[message, exchange, routing key]``.
    """
    bodies = []
    for line in value.split(b"\n"):
        with contextlib.suppress(ValueError):
            parsed = json.loads(line)
            for message in parsed if isinstance(parsed, list) else [parsed]:
                if isinstance(message, dict) and message.get("properties", {}).get("body_encoding") == "base64":
                    bodies.append(base64.b64decode(message["body"]))
    return b"\n".join(bodies)


def _tree_cmdlines(pid: int) -> list[list[str]]:
    import psutil

    cmdlines = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for proc in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                cmdlines.append(proc.cmdline())
    return cmdlines


def _heartbeat(stack: DistributedStack, job_id: int) -> float:
    [row] = stack.db_query("SELECT latest_heartbeat FROM job WHERE id = %s", (job_id,))
    return float(row["latest_heartbeat"].timestamp())


def _trigger_events(stack: DistributedStack, dag_id: str, run_id: str, job_id: int) -> list[dict[str, Any]]:
    from tools.airflow_stack import read_log_events

    folder = stack.task_log_dir(dag_id, run_id, "generate", 0)
    return read_log_events(folder / f"attempt=1.log.trigger.{job_id}.log")
