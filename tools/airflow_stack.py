"""Boot a real Airflow 3.3 stack in a throwaway ``AIRFLOW_HOME`` and drive it over the REST API.

Used by the end-to-end tests and by ``make demo``. The stack is what a small production install runs:
``api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` as four separate processes sharing one
environment, the LocalExecutor and SQLite. Each component is started in its own session so that stopping
it also stops what it forked (LocalExecutor workers, task supervisors, the trigger runner).

Nothing here imports Airflow: the caller talks to the stack over HTTP and reads the log files, so a test
process stays light and sees Airflow exactly as a user does.

Airflow 2.11 runs as :class:`Airflow2Stack` (same API, see its docstring); :func:`make_stack` picks the
class for the Airflow installed. Measured facts this relies on, the ones that matter most:
``--skip-serve-logs`` (log servers bind fixed ports on all interfaces), one JWT secret for every process,
``AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL=1`` (narrows a defer/resume race in 3.3.2), and up to 30 s for
the triggerer to shut down.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import psutil
from tenacity import (
    RetryCallState,
    Retrying,
    retry,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DAGS_FOLDER = REPO_ROOT / "example_dags"

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
STOP_GRACE_SECONDS = 30.0


#: What the ``airflow_stack_factory`` fixture hands a test: keyword arguments of :class:`AirflowStack`.
StackFactory = Callable[..., "AirflowStack"]


class AirflowStackError(RuntimeError):
    """The stack did not do what was asked in time; the message says what it was doing instead."""


class AirflowServerError(AirflowStackError):
    """The API server answered 5xx (with SQLite, e.g. "database is locked" under load): worth a retry."""


@dataclass(frozen=True)
class TaskInstance:
    """The fields of a task instance the tests look at (the full REST answer is kept in ``raw``)."""

    task_id: str
    map_index: int
    state: str | None
    try_number: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def key(self) -> tuple[str, int]:
        """``(task_id, map_index)``: unique within one DAG run."""
        return (self.task_id, self.map_index)

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> TaskInstance:
        """One task instance of a REST API answer (v1 or v2)."""
        return cls(
            task_id=str(item["task_id"]),
            map_index=int(item.get("map_index", -1)),
            state=item.get("state"),
            try_number=int(item.get("try_number") or 0),
            raw=item,
        )


@dataclass(frozen=True)
class RunResult:
    """How a DAG run ended, plus every state each task instance was seen in while polling."""

    dag_id: str
    run_id: str
    state: str
    seconds: float
    task_instances: list[TaskInstance]
    states_seen: dict[tuple[str, int], list[str]]

    def ti(self, task_id: str, map_index: int = -1) -> TaskInstance:
        """The task instance ``task_id`` (``map_index`` for a mapped one)."""
        for ti in self.task_instances:
            if ti.key == (task_id, map_index):
                return ti
        raise KeyError(f"no task instance {task_id}[{map_index}] in {self.dag_id}/{self.run_id}")

    def seen(self, task_id: str, map_index: int = -1) -> list[str]:
        """States ``task_id`` was observed in, in order, without repeats."""
        return self.states_seen.get((task_id, map_index), [])


@functools.cache
def airflow_version(python: str = sys.executable) -> tuple[int, int, int]:
    """The Airflow version installed for ``python`` (e.g. ``(3, 0, 6)``), read without importing Airflow.

    Read from the distribution's metadata (``apache-airflow``, or ``apache-airflow-core`` for an Airflow 3
    installed as core alone), in a child process when ``python`` is another interpreter (another venv).
    """
    code = (
        "from importlib import metadata\n"
        "for name in ('apache-airflow', 'apache-airflow-core'):\n"
        "    try:\n"
        "        print(metadata.version(name))\n"
        "        break\n"
        "    except metadata.PackageNotFoundError:\n"
        "        pass\n"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", done.stdout.strip())
    if match is None:
        raise AirflowStackError(f"no Airflow installed for {python}: {done.stdout.strip()} {done.stderr[-500:]}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def make_stack(**kwargs: Any) -> AirflowStack:
    """A stack (not booted yet) for the Airflow installed for ``python``; keyword arguments of :class:`AirflowStack`.

    Airflow 3 gets :class:`AirflowStack` (which adapts to its minor version), Airflow 2 gets
    :class:`Airflow2Stack` (webserver, scheduler, triggerer, SequentialExecutor, REST API v1).
    """
    if airflow_version(kwargs.get("python", sys.executable))[0] < 3:
        return Airflow2Stack(**kwargs)
    return AirflowStack(**kwargs)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowStack:
    """A real Airflow 3.3 stack (LocalExecutor, SQLite) in a temporary ``AIRFLOW_HOME``.

    Use as a context manager, or call :meth:`boot` and :meth:`stop` yourself::

        with AirflowStack(connections={"kling_default": {...}}) as stack:
            stack.wait_for_dag("example_kling_text_to_video")
            run_id = stack.trigger("example_kling_text_to_video", conf={"prompt": "a fox"})
            result = stack.wait_for_run("example_kling_text_to_video", run_id)

    :param dags_folder: DAGs folder; the repository's ``example_dags/`` by default.
    :param parallelism: worker slots of the LocalExecutor (``[core] parallelism``); it forks this many
        workers up front, so keep it small on a small machine.
    :param connections: ``conn_id -> dict or URI``, exported as ``AIRFLOW_CONN_<CONN_ID>`` to every
        process (dicts as JSON).
    :param env: extra environment for every component (``AIRFLOW__SECTION__KEY`` overrides win over the
        defaults set here).
    :param home: use this directory as ``AIRFLOW_HOME`` instead of a fresh temporary one (it is then
        not deleted by :meth:`cleanup`).
    :param python: interpreter that has Airflow and the provider installed; this one by default.
        The stack adapts to its Airflow 3 minor version (:attr:`airflow_version`); for Airflow 2 use
        :func:`make_stack`, which picks :class:`Airflow2Stack`.
    """

    #: The processes of a stack, started in this order.
    components: tuple[str, ...] = COMPONENTS
    #: The REST API's health endpoint (under ``/api/v2``) and the parts of its answer that must be healthy.
    health_path = "/monitor/health"
    health_parts: tuple[str, ...] = HEALTH_PARTS

    def __init__(
        self,
        *,
        dags_folder: Path | str | None = None,
        parallelism: int = 2,
        connections: Mapping[str, Mapping[str, Any] | str] | None = None,
        env: Mapping[str, str] | None = None,
        home: Path | str | None = None,
        python: str = sys.executable,
    ) -> None:
        self.dags_folder = Path(dags_folder or DEFAULT_DAGS_FOLDER).resolve()
        self.parallelism = parallelism
        self.python = python
        self._owns_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="kling-e2e-airflow-"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = self._build_env(connections or {}, env or {})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._starts: dict[str, int] = {}
        self._all_pids: set[int] = set()  # every session leader ever started, for the final sweep
        self._killed: set[str] = set()
        # Airflow 3.0 and 3.3 let an anonymous caller in as an admin in all-admins mode; 3.1 and 3.2 answer
        # 401 without a token, which that mode hands out to anyone at GET /auth/token.
        auth = _AllAdminsToken(self.base_url) if (3, 1) <= self.airflow_version[:2] < (3, 3) else None
        self._api = httpx.Client(base_url=f"{self.base_url}/api/v2", timeout=15.0, auth=auth)
        self._memory = _MemoryWatcher(self._all_pids)
        self.boot_seconds: float | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> AirflowStack:
        try:
            self.boot()
        except BaseException:
            self.stop()
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.cleanup()

    def boot(self, timeout: float = 300.0) -> float:
        """Migrate the database, start every component and wait until all report healthy.

        The deadline leaves room for a loaded machine, where a boot has taken three minutes.

        :return: seconds from nothing to a healthy stack (also kept in ``boot_seconds``).
        """
        started = time.monotonic()
        self.migrate()
        for component in self.components:
            self.start(component)
        self._memory.start()
        self.wait_healthy(timeout=timeout - (time.monotonic() - started))
        self.boot_seconds = time.monotonic() - started
        return self.boot_seconds

    def migrate(self) -> None:
        """Create the SQLite metadata database (``airflow db migrate``)."""
        self.run_cli("db", "migrate")

    def run_cli(self, *args: str, timeout: float = 300.0) -> None:
        """Run one ``airflow`` CLI command in the stack's environment, logged to ``<home>/<args>.log``.

        :raises AirflowStackError: the command failed (the message ends with its log's tail).
        """
        log = self.home / f"{'-'.join(args[:2])}.log"
        with log.open("wb") as out, self._spawn(args, out) as proc:
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        if code != 0:
            raise AirflowStackError(f"airflow {' '.join(args[:2])} failed ({code}):\n{log_tail(log)}")

    def start(self, component: str) -> subprocess.Popen[bytes]:
        """Start one component (again, e.g. a new triggerer after :meth:`kill`), logging to a file.

        The first start logs to ``<home>/<component>.log``, later ones to ``<component>.<n>.log``.
        """
        if component not in self.components:
            raise ValueError(f"unknown component {component!r}; expected one of {self.components}")
        running = self.procs.get(component)
        if running is not None and running.poll() is None:
            raise AirflowStackError(f"{component} is already running (pid {running.pid})")
        n = self._starts.get(component, 0) + 1
        self._starts[component] = n
        log = self.log_path(component, n)
        with log.open("ab") as out:
            # A new session per component: killing its process group also kills what it forked.
            proc = self._spawn(self._command(component), out, start_new_session=True)
        self.procs[component] = proc
        self._all_pids.add(proc.pid)
        self._killed.discard(component)
        return proc

    def kill(self, component: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a component and everything it forked (its whole process group)."""
        proc = self.procs[component]
        self._killed.add(component)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(timeout=STOP_GRACE_SECONDS)

    def stop(self) -> None:
        """Stop every process this stack started: SIGTERM, up to 30 s of grace, then SIGKILL.

        Safe to call twice. Also sweeps processes that left a component's process group but stayed in
        its session (nothing may outlive the stack).
        """
        self._memory.stop()
        live = [p for p in self.procs.values() if p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for leader in self._all_pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leader, signal.SIGKILL)
        for pid in _pids_in_sessions(self._all_pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        # All dead: forget the ids, so a second stop() cannot signal a process that reused one.
        self._all_pids.clear()
        self._api.close()

    def cleanup(self) -> None:
        """Delete the temporary ``AIRFLOW_HOME`` (only if this stack created it)."""
        if self._owns_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def archive(self, dest: Path | str) -> Path:
        """Copy the whole ``AIRFLOW_HOME`` (logs, database, config) to ``dest`` for a post-mortem."""
        dest = Path(dest)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(self.home, dest, ignore=shutil.ignore_patterns("*.sock"), dirs_exist_ok=True)
        return dest

    @property
    def airflow_version(self) -> tuple[int, int, int]:
        """The version of the Airflow this stack runs (that of :attr:`python`), e.g. ``(3, 0, 6)``."""
        return airflow_version(self.python)

    @property
    def peak_memory_bytes(self) -> int:
        """Highest total PSS of all stack processes seen so far (sampled once a second)."""
        return self._memory.peak

    def memory_bytes(self) -> int:
        """Total PSS (proportional set size) of every process of the stack right now."""
        return _pss_bytes(self.pids())

    def pids(self) -> list[int]:
        """Every live process of the stack: the components and everything they forked."""
        return _pids_in_sessions(self._all_pids)

    # ------------------------------------------------------------------ REST

    def wait_healthy(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the metadata DB, scheduler, triggerer and dag-processor all report healthy."""
        last: Any = None

        def healthy() -> bool:
            nonlocal last
            try:
                last = self._api.get(self.health_path).json()
            except (httpx.HTTPError, ValueError) as exc:  # not up yet, or not answering JSON yet
                last = repr(exc)
                return False
            return all((last.get(p) or {}).get("status") == "healthy" for p in self.health_parts)

        self._wait(healthy, timeout, lambda: f"stack not healthy: {last}")
        return dict(last)

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id`` and it can be triggered.

        The deadline is generous on purpose: on a loaded machine a fresh dag-processor has been seen to
        take over a minute before its first parse.
        """
        found: dict[str, Any] = {}

        def parsed() -> bool:
            response = self._api.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                found.update(response.json())
                return True
            return False

        self._wait(parsed, timeout, lambda: f"DAG {dag_id} not parsed; import errors: {self.import_errors()}")
        return found

    def import_errors(self) -> list[dict[str, Any]]:
        """Import errors the dag-processor recorded (``filename``, ``stack_trace``)."""
        return list(self._get("/importErrors", params={"limit": 100})["import_errors"])

    def unpause(self, dag_id: str) -> None:
        """Unpause ``dag_id``: new DAGs start unpaused here, but one paused from the UI must still run."""
        self._check(self._api.patch(f"/dags/{dag_id}", json={"is_paused": False}))

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` and start a manual run with ``conf``; returns the run id."""
        self.unpause(dag_id)
        body = {"logical_date": None, "conf": dict(conf or {})}
        response = self._check(self._api.post(f"/dags/{dag_id}/dagRuns", json=body))
        return str(response.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        """Current state of a DAG run (``queued``, ``running``, ``success``, ``failed``)."""
        return str(self._get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0, poll_interval: float = 1.0) -> RunResult:
        """Poll until the run is finished, recording each task instance's state transitions.

        The recorded states are samples (once per ``poll_interval``): a state shorter than that may be
        missed. Whether a task deferred is told by :meth:`deferred_tries`, from the trigger logs.
        """
        started = time.monotonic()
        seen: dict[tuple[str, int], list[str]] = {}
        state = ""

        def finished() -> bool:
            nonlocal state
            for ti in self.task_instances(dag_id, run_id):
                history = seen.setdefault(ti.key, [])
                if ti.state and (not history or history[-1] != ti.state):
                    history.append(ti.state)
            state = self.run_state(dag_id, run_id)
            return state in TERMINAL_RUN_STATES

        self._wait(
            finished,
            timeout,
            lambda: f"run {dag_id}/{run_id} still {state!r} after {timeout:.0f}s; task states: {seen}",
            poll_interval=poll_interval,
        )
        return RunResult(
            dag_id=dag_id,
            run_id=run_id,
            state=state,
            seconds=time.monotonic() - started,
            task_instances=self.task_instances(dag_id, run_id),
            states_seen=seen,
        )

    def run(self, dag_id: str, conf: Mapping[str, Any] | None = None, timeout: float = 300.0) -> RunResult:
        """Wait for ``dag_id`` to be parsed, trigger it with ``conf`` and wait for the run to finish."""
        self.wait_for_dag(dag_id)
        return self.wait_for_run(dag_id, self.trigger(dag_id, conf), timeout=timeout)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        """Every task instance of a run, mapped ones included (one per ``map_index``)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": len(items), "order_by": "id"},
            )
            items.extend(page["task_instances"])
            if not page["task_instances"] or len(items) >= page["total_entries"]:
                break
        return [TaskInstance.from_api(item) for item in items]

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of a task instance (task instance history), oldest first."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        path += f"/{map_index}/tries" if map_index >= 0 else "/tries"
        return list(self._get(path)["task_instances"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The value of one XCom, decoded to plain JSON types."""
        value = self._get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index},
        )["value"]
        # The API hands back what is stored: a JSON document as text. Decode it so tests compare values.
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id`` (``dag_run_id``, ``state``, ``run_type``, ...), oldest first."""
        runs: list[dict[str, Any]] = []
        while True:
            page = self._get(
                f"/dags/{dag_id}/dagRuns", params={"limit": 100, "offset": len(runs), "order_by": "run_after"}
            )
            runs.extend(page["dag_runs"])
            if not page["dag_runs"] or len(runs) >= page["total_entries"]:
                break
        return runs

    def asset_events(self, **filters: Any) -> list[dict[str, Any]]:
        """Asset events, oldest first, filtered as the REST API allows (``source_dag_id``, ``source_run_id``,
        ``asset_id``, ...). Each has its ``extra`` and the ``created_dagruns`` it triggered."""
        events: list[dict[str, Any]] = []
        while True:
            params = {**filters, "limit": 100, "offset": len(events), "order_by": "timestamp"}
            page = self._get("/assets/events", params=params)
            events.extend(page["asset_events"])
            if not page["asset_events"] or len(events) >= page["total_entries"]:
                break
        return events

    def extra_links(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, str | None]:
        """The extra links of a task instance as the UI gets them (``{"link name": url}``)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links"
        return dict(self._get(path, params={"map_index": map_index})["extra_links"])

    def wait_until(
        self, condition: Callable[[], bool], timeout: float, describe: Callable[[], str], poll_interval: float = 0.5
    ) -> None:
        """Poll ``condition`` until it holds; raise :class:`AirflowStackError` with ``describe()`` at the deadline.

        Also fails at once when a component died, and asks again while the API is briefly unavailable.
        """
        self._wait(condition, timeout, describe, poll_interval)

    # ------------------------------------------------------------------ logs

    def log_path(self, component: str, start: int = 1) -> Path:
        """The stdout/stderr log file of the ``start``-th start of ``component``."""
        return self.home / (f"{component}.log" if start == 1 else f"{component}.{start}.log")

    def task_log_dir(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Path:
        """Where Airflow writes the logs of one task instance (default ``log_filename_template``)."""
        path = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return path / f"map_index={map_index}" if map_index >= 0 else path

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1
    ) -> list[dict[str, Any]]:
        """The task's own log for one try, as a list of structured events (JSON lines)."""
        path = self.task_log_dir(dag_id, run_id, task_id, map_index) / f"attempt={try_number}.log"
        return read_log_events(path)

    def trigger_log_files(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1
    ) -> list[Path]:
        """Logs written by the triggerer for this task (``attempt=N.log.trigger.<job id>.log``).

        One file per triggerer job that ran the trigger: two after a triggerer was replaced mid-wait.
        """
        folder = self.task_log_dir(dag_id, run_id, task_id, map_index)
        return sorted(folder.glob(f"attempt={try_number}.log.trigger.*.log"))

    def deferred_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[int]:
        """The tries of a task instance that deferred to the triggerer, oldest first.

        Read from the durable record, the trigger log files the triggerer wrote for each try, not from
        states sampled while the run went on (a short deferral falls between two samples).
        """
        folder = self.task_log_dir(dag_id, run_id, task_id, map_index)
        tries = set()
        for path in folder.glob("attempt=*.log.trigger.*.log"):
            match = re.match(r"attempt=(\d+)\.log\.trigger\.", path.name)
            if match:
                tries.add(int(match[1]))
        return sorted(tries)

    def trigger_log(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1
    ) -> list[dict[str, Any]]:
        """Every event the triggerer logged for this task, across all triggerer jobs."""
        events: list[dict[str, Any]] = []
        for path in self.trigger_log_files(dag_id, run_id, task_id, map_index, try_number):
            events.extend(read_log_events(path))
        return events

    # ------------------------------------------------------------------ faults and forensics

    def task_runner_pids(self, ti_id: str) -> list[int]:
        """Live processes running task instance ``ti_id``'s code (normally one).

        Airflow 3.3's task runner (the process the supervisor forks to run the operator) sets its title to
        ``airflow worker -- <task instance id>``; its supervisor's title is ``airflow worker --
        LocalExecutor: <task>``, so matching the id exactly finds the runner and never the supervisor.
        Only processes of this stack are considered.
        """
        title = f"airflow worker -- {ti_id}"
        return [pid for pid in self.pids() if cmdline(pid) == title]

    def kill_task_runner(self, ti_id: str, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
        """Send ``sig`` to the task runner of ``ti_id`` only (not its supervisor); return its PID.

        Waits up to ``timeout`` seconds for the runner to appear (the task may still be starting), and
        after a SIGKILL until it is gone.
        """
        found: list[int] = []

        def started() -> bool:
            found[:] = self.task_runner_pids(ti_id)
            return bool(found)

        self._wait(started, timeout, lambda: f"no task runner process for task instance {ti_id}", 0.2)
        if len(found) != 1:
            raise AirflowStackError(f"expected one task runner for {ti_id}, found {found}")
        (pid,) = found
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            self._wait(lambda: not alive(pid), timeout, lambda: f"task runner {pid} survived SIGKILL", 0.1)
        return pid

    @property
    def db_path(self) -> Path:
        """The SQLite metadata database (Airflow's default ``sql_alchemy_conn`` in ``AIRFLOW_HOME``)."""
        return self.home / "airflow.db"

    def trigger_rows(self) -> list[dict[str, Any]]:
        """Rows of the ``trigger`` table, read-only, with ``kwargs`` decrypted to its JSON text.

        Airflow encrypts trigger kwargs with the Fernet key when one is set
        (``AIRFLOW__CORE__FERNET_KEY`` in ``env``), so a byte search of the database file cannot see
        inside them: this reads them as the triggerer does.
        """
        fernet_key = self.env.get("AIRFLOW__CORE__FERNET_KEY", "")
        rows: list[dict[str, Any]] = []
        for row in _sqlite_rows(self.db_path, "SELECT id, classpath, kwargs, triggerer_id FROM trigger ORDER BY id"):
            kwargs = str(row["kwargs"])
            if not kwargs.startswith("{") and fernet_key:
                kwargs = _fernet_decrypt(fernet_key, kwargs)
            rows.append({**row, "kwargs": kwargs})
        return rows

    def xcom_entries(self, dag_id: str = "~", run_id: str = "~") -> list[dict[str, Any]]:
        """Every XCom of the matching runs (``~`` is any), each with its ``value`` as the API returns it."""
        entries: list[dict[str, Any]] = []
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/~/xcomEntries"
        while True:
            page = self._get(path, params={"limit": 100, "offset": len(entries)})
            entries.extend(page["xcom_entries"])
            if not page["xcom_entries"] or len(entries) >= page["total_entries"]:
                break
        for entry in entries:
            item = f"/dags/{entry['dag_id']}/dagRuns/{entry['run_id']}/taskInstances/{entry['task_id']}"
            entry["value"] = self._get(
                f"{item}/xcomEntries/{entry['key']}", params={"map_index": entry.get("map_index", -1)}
            )["value"]
        return entries

    # ------------------------------------------------------------------ internals

    def _build_env(
        self, connections: Mapping[str, Mapping[str, Any] | str], extra: Mapping[str, str]
    ) -> dict[str, str]:
        # Inherit PATH, locale and the like, but no Airflow settings: the test process sets its own
        # (e.g. _AIRFLOW_SKIP_DB_TESTS for unit tests), and they must not leak into the stack.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                # Every process signs and checks task tokens: they must share one secret.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
                # Narrows the 3.3.2 defer/resume race (apache/airflow#71580, #72716).
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                # A task's calls to the execution API time out after 5 s by default; on a loaded machine the
                # api-server has answered the task-start call later than that, and the task then fails
                # before it runs (Airflow's own advice for high load is to raise this).
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                # The DAG files do not change while the stack runs; re-parsing them every 30 s would
                # only compete with the tasks for the two cores.
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.airflow_version[:2] < (3, 3):
            # Measured on 3.0.6 (docs/compatibility.md): its api-server forks 4 workers unless told
            # otherwise (3.3: 1), and with no JWT issuer configured it puts an empty list in the `iss`
            # claim, which PyJWT 2.10+ refuses to sign: every API call and every task start fails.
            env["AIRFLOW__API__WORKERS"] = "1"
            env["AIRFLOW__API_AUTH__JWT_ISSUER"] = "airflow-provider-kling-e2e"
        for conn_id, conn in connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn if isinstance(conn, str) else json.dumps(conn)
        env.update(extra)
        return env

    def _command(self, component: str) -> list[str]:
        if component == "api-server":
            return ["api-server", "--host", "127.0.0.1", "--port", str(self.port)]
        if component in ("scheduler", "triggerer"):
            # Their log servers bind fixed ports on all interfaces: two stacks at once would collide.
            return [component, "--skip-serve-logs"]
        return [component]

    def _airflow(self, *args: str) -> list[str]:
        return [self.python, "-m", "airflow", *args]

    def _spawn(self, args: Sequence[str], out: IO[bytes], start_new_session: bool = False) -> subprocess.Popen[bytes]:
        """``airflow <args>`` in the stack's home and environment, output (both streams) to ``out``."""
        return subprocess.Popen(
            self._airflow(*args),
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=start_new_session,
        )

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._check(self._api.get(path, params=params)).json()

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.is_error:
            error = AirflowServerError if response.is_server_error else AirflowStackError
            raise error(f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text}")
        return response

    def _assert_running(self) -> None:
        for component, proc in self.procs.items():
            # A component the caller killed on purpose is not a failure of the stack.
            if proc.poll() is not None and component not in self._killed:
                raise AirflowStackError(
                    f"{component} exited with {proc.returncode}:\n"
                    f"{log_tail(self.log_path(component, self._starts[component]))}"
                )

    def _wait(
        self,
        condition: Callable[[], bool],
        timeout: float,
        describe: Callable[[], str],
        poll_interval: float = 0.5,
    ) -> None:
        def check() -> bool:
            # A dead component fails at once (AirflowStackError is not retried); API hiccups are asked again.
            self._assert_running()
            return condition()

        def give_up(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            suffix = f" (last API error: {error!r})" if error else ""
            raise AirflowStackError(describe() + suffix)

        Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(poll_interval),
            retry=retry_if_result(lambda done: not done)
            | retry_if_exception_type((httpx.TransportError, AirflowServerError)),
            retry_error_callback=give_up,
        )(check)


#: Settings of Airflow 3 components that Airflow 2 does not have: left out of its environment.
AIRFLOW3_ONLY_PREFIXES = (
    "AIRFLOW__API__",
    "AIRFLOW__API_AUTH__",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER",
    "AIRFLOW__DAG_PROCESSOR__",
    "AIRFLOW__WORKERS__",
)


class Airflow2Stack(AirflowStack):
    """A real Airflow 2.11 stack (webserver, scheduler, triggerer; SequentialExecutor, SQLite) over REST v1.

    Same constructor and methods as :class:`AirflowStack`; ``parallelism`` has no effect (the
    SequentialExecutor runs one task at a time). Airflow 2 differs in ways that reach the harness
    (measured on 2.11.2):

    * **Processes**: ``webserver`` (Flask and gunicorn; it serves the REST API), ``scheduler`` (which also
      parses the DAG files: there is no separate dag-processor by default) and ``triggerer``. There is no
      execution API: the executor runs ``airflow tasks run`` itself.
    * **Executor**: with SQLite only the SequentialExecutor is allowed. It runs one task at a time inside the
      scheduler's loop; a deferred task frees it like a worker slot.
    * **REST API v1** at ``/api/v1`` with basic auth (a user created after ``airflow db migrate``); it
      validates query parameters strictly (no ``order_by`` on task instances) and returns XCom values as
      Python reprs unless ``deserialize`` is enabled in ``[api]``.
    * **Logs**: plain text lines, not JSON; the triggerer still writes each trigger's log next to the task's
      (``attempt=N.log.trigger.<job id>.log``), so :meth:`trigger_log_files` works unchanged.

    Everything else (lifecycle, process groups, memory sampling, log paths, waiting for runs) is inherited.
    The Airflow 3-only helpers (task-instance tries, asset events, extra links, task runner processes) are
    not available here.
    """

    components = ("webserver", "scheduler", "triggerer")
    health_path = "/health"
    # The scheduler parses the DAG files itself: the health answer's dag_processor part stays empty.
    health_parts = ("metadatabase", "scheduler", "triggerer")

    def __init__(self, **kwargs: Any) -> None:
        self.username = "admin"
        self.password = secrets.token_urlsafe(16)
        super().__init__(**kwargs)
        self._api.close()
        self._api = httpx.Client(base_url=f"{self.base_url}/api/v1", auth=(self.username, self.password), timeout=15.0)

    def migrate(self) -> None:
        """Create the SQLite metadata database, then the admin user the REST calls authenticate as."""
        super().migrate()
        user = {"username": self.username, "password": self.password, "role": "Admin"}
        user |= {"firstname": "Kling", "lastname": "E2E", "email": "e2e@example.org"}
        # One "--name=value" word each: a random password may begin with "-", which argparse would read as a flag.
        self.run_cli("users", "create", *(f"--{name}={value}" for name, value in user.items()))

    # ------------------------------------------------------------------ REST v1

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` and start a manual run with ``conf``; returns the run id."""
        self.unpause(dag_id)
        response = self._check(self._api.post(f"/dags/{dag_id}/dagRuns", json={"conf": dict(conf or {})}))
        return str(response.json()["dag_run_id"])

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        """Every task instance of a run (v1 takes no ``order_by``: sorted here, by task and map index)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": len(items)}
            )
            items.extend(page["task_instances"])
            if not page["task_instances"] or len(items) >= page["total_entries"]:
                break
        return sorted((TaskInstance.from_api(item) for item in items), key=lambda ti: ti.key)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The value of one XCom as JSON types (``deserialize`` is enabled in this stack's ``[api]``)."""
        value = self._get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index, "deserialize": "true", "stringify": "false"},
        )["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    # ------------------------------------------------------------------ internals

    def _build_env(
        self, connections: Mapping[str, Mapping[str, Any] | str], extra: Mapping[str, str]
    ) -> dict[str, str]:
        env = {
            name: value
            for name, value in super()._build_env(connections, {}).items()
            if not name.startswith(AIRFLOW3_ONLY_PREFIXES)
        }
        # The SequentialExecutor runs each task as `airflow tasks run ...`, found on PATH: this venv's.
        venv_bin = str(Path(self.python).parent)
        env["PATH"] = os.pathsep.join([venv_bin, *(p for p in env.get("PATH", "").split(os.pathsep) if p)])
        env.update(
            {
                # SQLite allows nothing else on Airflow 2.
                "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
                "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
                "AIRFLOW__WEBSERVER__BASE_URL": self.base_url,
                "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_urlsafe(32),
                # gunicorn forks 4 workers by default: one is plenty for a test, and two cores are few.
                "AIRFLOW__WEBSERVER__WORKERS": "1",
                "AIRFLOW__WEBSERVER__WARN_DEPLOYMENT_EXPOSURE": "False",
                "AIRFLOW__API__AUTH_BACKENDS": "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth",
                # XCom values as JSON (deserialize=true&stringify=false) instead of Python reprs.
                "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",
                # As for Airflow 3: the files do not change while the stack runs.
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
                # The CLI prints deprecation warnings on stdout; they would only clutter the logs.
                "PYTHONWARNINGS": "ignore",
            }
        )
        env.update(extra)
        return env

    def _command(self, component: str) -> list[str]:
        if component == "webserver":
            return ["webserver", "--hostname", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        # Their log servers bind fixed ports on all interfaces: two stacks at once would collide.
        return [component, "--skip-serve-logs"]


def read_log_events(path: Path) -> list[dict[str, Any]]:
    """Parse an Airflow 3 log file (one JSON object per line; plain lines become ``{"event": line}``)."""
    if not path.exists():
        return []
    events: list[dict[str, Any]] = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = {"event": line}
        events.append(event if isinstance(event, dict) else {"event": str(event)})
    return events


def log_text(events: list[dict[str, Any]]) -> str:
    """Events as readable lines (``level event key=value ...``), for assertions and failure messages."""
    lines = []
    for event in events:
        rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "level", "timestamp"))
        lines.append(f"{event.get('level', '')} {event.get('event', '')} {rest}".strip())
    return "\n".join(lines)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class _AllAdminsToken(httpx.Auth):
    """A bearer token from the simple auth manager's all-admins ``GET /auth/token`` (no credentials).

    Fetched on the first call and again after a 401 (a token expires; a restarted api-server with a
    new JWT secret refuses the old one).
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.token: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token is None:
            self.token = self._fetch()
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            self.token = self._fetch()
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request

    def _fetch(self) -> str:
        response = httpx.get(f"{self.base_url}/auth/token", timeout=15.0)
        response.raise_for_status()
        return str(response.json()["access_token"])


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _pids_in_sessions(leaders: set[int]) -> list[int]:
    """Live processes whose session id is one of ``leaders`` (children of our components)."""
    pids = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError, psutil.Error):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(proc.pid) in leaders:
                pids.append(proc.pid)
    return pids


def _pss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_full_info().pss
    return total


class _MemoryWatcher:
    """Samples the stack's total PSS once a second in a daemon thread and keeps the peak."""

    def __init__(self, leaders: set[int]) -> None:
        self._leaders = leaders
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="stack-memory", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            # The set may grow while being copied (a component restarting): skip that sample.
            with contextlib.suppress(RuntimeError):
                self.peak = max(self.peak, _pss_bytes(_pids_in_sessions(set(self._leaders))))


def cmdline(pid: int) -> str:
    """A process's command line as one string (what ``setproctitle`` set, for Airflow's processes)."""
    try:
        return " ".join(psutil.Process(pid).cmdline()).strip()
    except psutil.Error:
        return ""


@retry(
    retry=retry_if_exception(lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)),
    stop=stop_after_attempt(20),
    wait=wait_fixed(0.1),
    reraise=True,
)
def _sqlite_rows(path: Path, query: str) -> list[dict[str, Any]]:
    """Run a read-only query on a SQLite file another process writes (retried while it is locked)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(query)]


def _fernet_decrypt(key: str, token: str) -> str:
    """Decrypt a value Airflow encrypted with ``[core] fernet_key`` (comma-separated keys allowed)."""
    from cryptography.fernet import Fernet, MultiFernet  # installed with Airflow

    fernet = MultiFernet([Fernet(part.encode()) for part in key.split(",")])
    return fernet.decrypt(token.encode()).decode()
