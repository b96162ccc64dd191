"""What a poll costs in a real ``airflow triggerer``: N deferred generations, ours against ``to_thread``.

Boots a real Airflow 3.3 stack (api-server, scheduler, dag-processor, triggerer; LocalExecutor with
``--parallelism`` worker slots, SQLite; :class:`tools.airflow_stack.AirflowStack`) and the Kling sandbox,
both on 127.0.0.1, writes a DAG of ``N`` mapped generations (``KlingTextToVideoOperator.partial(...)
.expand(prompt=[...])``, deferrable) into a temporary DAGs folder, and:

1. measures the idle triggerer (no trigger): CPU time per second and RSS of its process tree;
2. runs the DAG once: each task submits to the sandbox and defers; the sandbox renders for
   ``--generation-seconds`` (hours by default), so every trigger is still waiting when the last task
   defers, and none fires during the benchmark. It waits until all ``N`` task instances are ``deferred``;
3. for each trigger in turn: stops the triggerer (SIGTERM), points the ``N`` rows of Airflow's trigger
   table at that trigger's class (same kwargs), starts a new triggerer, waits until the sandbox has
   seen a poll of every one of the ``N`` generations, lets it settle (``--settle``), then measures a
   steady window of ``--window`` seconds: the CPU time (user + system) of the triggerer's whole process
   tree (the ``airflow triggerer`` supervisor, which also writes every trigger's log lines to its task's
   trigger log file, and its trigger-runner subprocess, where the triggers run), the polls the sandbox's
   journal counted in that window, their ratio (CPU per poll), and the RSS of the process tree (its
   growth over the idle triggerer, divided by ``N``, is the memory per trigger);
4. fails the DAG run over the REST API and stops everything.

Mapping ``N`` tasks through a few worker slots on a small machine takes minutes (each task start is a
process, a DAG parse and several API calls), so the generations are deferred once and each trigger
takes over the same ``N`` deferred task instances, as it would after a triggerer restart. The triggers:

* ``kling``: :class:`~airflow_provider_kling.triggers.kling.KlingTaskTrigger`, as the operator defers to it;
* ``to-thread``: :class:`benchmarks.baseline_triggers.ToThreadTaskTrigger` (a blocking ``httpx.Client``
  call per poll in ``asyncio.to_thread``, one client shared by every trigger), built from the same
  kwargs; the triggerer imports it by class path (the repository root is on the stack's ``PYTHONPATH``).

Both poll on a fixed schedule (the operator's ``max_poll_interval = poll_interval``), so the poll rate is
the same (``N / poll_interval`` per second) all through the window, and Airflow's own trigger logging is
on (a line per poll as each trigger logs it, to the task's trigger log). The idle triggerer's CPU (its
heartbeats and trigger-table queries) is part of the per-poll figure and printed alongside.

Everything runs on 127.0.0.1; every process the script starts is stopped by its PID (or process group)
when it ends, fails or is interrupted, and every wait is bounded (``--timeout``).

    .venv/bin/python -m benchmarks.real_triggerer                      # N = 1000, both triggers (~20 min on 2 cores)
    .venv/bin/python -m benchmarks.real_triggerer --n 20 --window 20   # a quick look (~4 min)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# Run as `python benchmarks/real_triggerer.py` too: `tools` lives at the repository root, not in the package.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from airflow_provider_kling.sandbox.process import SandboxProcess  # noqa: E402
from benchmarks import _common  # noqa: E402
from tools.airflow_stack import AirflowServerError, AirflowStack, AirflowStackError  # noqa: E402

#: The only key the sandbox accepts (made up: nothing leaves 127.0.0.1).
API_KEY = "benchmark-key"
VARIANTS = ("kling", "to-thread", "kling-before")
DAG_ID_PREFIX = "real_triggerer_"
MIB = 2**20

DAG_TEMPLATE = '''\
"""Written by benchmarks/real_triggerer.py: {n} mapped generations, each deferring."""

from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

with DAG(
    dag_id="{dag_id}",
    schedule=None,
    catchup=False,
    default_args={{"retries": 0}},  # a failure must show, not hide behind a second try
    max_active_tasks={parallelism},
    tags=["benchmark"],
) as dag:
    KlingTextToVideoOperator.partial(
        task_id="generate",
        deferrable=True,
        poll_interval={poll_interval!r},
        max_poll_interval={poll_interval!r},  # a fixed schedule: the same poll rate all through the window
        timeout=timedelta(seconds={timeout!r}),
        duration=5,
    ).expand(prompt=[f"real triggerer benchmark, generation {{i}}" for i in range({n})])
'''
DAG_ID = DAG_ID_PREFIX + "generations"
#: The trigger class each variant's rows of the trigger table point at.
CLASSPATHS = {
    "kling": "airflow_provider_kling.triggers.kling.KlingTaskTrigger",
    "to-thread": "benchmarks.baseline_triggers.ToThreadTaskTrigger",
    # The same class from an earlier version of the package (--before-src first on PYTHONPATH).
    "kling-before": "airflow_provider_kling.triggers.kling.KlingTaskTrigger",
}


def render_dag(*, n: int, poll_interval: float, parallelism: int, timeout: float) -> str:
    """The DAG file's source: ``n`` mapped generations."""
    return DAG_TEMPLATE.format(
        n=n, poll_interval=poll_interval, parallelism=parallelism, timeout=timeout, dag_id=DAG_ID
    )


# ---------------------------------------------------------------------------------------------- sampling


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and every process it forked (the triggerer and its trigger runner)."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """User plus system CPU time of each process of ``pid``'s tree (children's reaped time excluded)."""
    times: dict[int, float] = {}
    for proc in process_tree(pid):
        with contextlib.suppress(psutil.Error):
            cpu = proc.cpu_times()
            times[proc.pid] = cpu.user + cpu.system
    return times


def tree_rss_bytes(pid: int) -> dict[int, int]:
    """RSS of each process of ``pid``'s tree."""
    sizes: dict[int, int] = {}
    for proc in process_tree(pid):
        with contextlib.suppress(psutil.Error):
            sizes[proc.pid] = proc.memory_info().rss
    return sizes


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the processes used between two :func:`tree_cpu_seconds` samples.

    A process only in ``after`` started in between: all its time counts. One only in ``before`` ended in
    between: its last stretch is lost (the caller reports the pids, so this shows).
    """
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


class RssWatcher(threading.Thread):
    """Samples the RSS of a process tree every ``interval`` seconds and keeps the peak of the total."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(name="rss-watcher", daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stopped = threading.Event()

    def run(self) -> None:
        """Sample until :meth:`stop`."""
        while not self._stopped.wait(self.interval):
            self.peak = max(self.peak, sum(tree_rss_bytes(self.pid).values()))

    def stop(self) -> int:
        """Stop; return the peak total RSS in bytes."""
        self._stopped.set()
        self.join(timeout=5)
        return self.peak


def _cmdline(pid: int) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(psutil.Process(pid).cmdline())[:80]
    return "?"


# ---------------------------------------------------------------------------------------------- one run


@dataclass
class VariantResult:
    """The figures of one trigger's steady window."""

    variant: str
    n: int
    takeover_seconds: float
    window_seconds: float
    polls: int
    tasks_polled: int
    cpu_seconds: float
    cpu_by_process: dict[str, float]
    cpu_ms_per_poll: float
    idle_cpu_ms_per_poll: float
    polls_per_second: float
    rss_mib: float
    rss_by_process_mib: dict[str, float]
    peak_rss_mib: float
    kib_per_trigger: float
    load_average: list[float]
    notes: list[str] = field(default_factory=list)


class Api:
    """The few REST calls this benchmark makes, asked again while SQLite is briefly locked (5xx)."""

    def __init__(self, stack: AirflowStack) -> None:
        self.stack = stack
        self.client = httpx.Client(base_url=f"{stack.base_url}/api/v2", timeout=60.0)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call, retried up to 10 times on a 5xx or a transport error."""
        for attempt in range(10):
            try:
                response = self.client.request(method, path, **kwargs)
                if response.is_server_error:
                    raise AirflowServerError(f"{method} {path} -> {response.status_code}: {response.text[:300]}")
                if response.is_error:
                    raise AirflowStackError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
                return response.json()
            except (AirflowServerError, httpx.TransportError):
                if attempt == 9:
                    raise
                time.sleep(2.0)
        raise AssertionError("unreachable")

    def count(self, run_id: str, state: str) -> int:
        """How many task instances of the run are in ``state``."""
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances"
        return int(self.call("GET", path, params={"state": state, "limit": 1})["total_entries"])

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


def _sqlite(stack: AirflowStack, query: str, params: Sequence[Any] = (), *, write: bool = False) -> list[Any]:
    """One statement on Airflow's SQLite database, asked again while it is locked."""
    mode = "rw" if write else "ro"
    for _ in range(60):
        try:
            with contextlib.closing(sqlite3.connect(f"file:{stack.db_path}?mode={mode}", uri=True, timeout=10)) as db:
                rows = db.execute(query, params).fetchall()
                db.commit()
                return rows
        except sqlite3.OperationalError as err:
            if "locked" not in str(err):
                raise
            time.sleep(0.5)
    raise AirflowStackError(f"Airflow's database stayed locked for: {query}")


def wait_for(condition: Callable[[], bool], timeout: float, describe: Callable[[], str], every: float = 2.0) -> None:
    """Poll ``condition`` until it holds; raise with ``describe()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AirflowStackError(describe())
        time.sleep(every)


def idle_cpu_rate(triggerer_pid: int, seconds: float) -> float:
    """CPU seconds per second of the triggerer's tree with no trigger to run."""
    before = tree_cpu_seconds(triggerer_pid)
    time.sleep(seconds)
    return cpu_between(before, tree_cpu_seconds(triggerer_pid)) / seconds


def defer_all(api: Api, n: int, timeout: float, log: Callable[[str], None]) -> tuple[str, int, float]:
    """Run the DAG and wait until its ``n`` generations are deferred; return the run id, count and seconds.

    If not all have deferred after ``timeout`` seconds, the DAG is paused (no further task starts), the
    tasks already running are given two minutes to defer, and the benchmark goes on with those deferred.
    """
    run_id = str(api.call("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})["dag_run_id"])
    begun = time.monotonic()
    log(f"triggered {DAG_ID}/{run_id}; waiting for {n} deferred task instances (at most {timeout:.0f} s)")
    deferred = 0
    last_report = time.monotonic()

    def all_deferred() -> bool:
        nonlocal deferred, last_report
        deferred = api.count(run_id, "deferred")
        failed = api.count(run_id, "failed")
        if failed:
            raise AirflowStackError(f"{failed} task instances failed while deferring")
        if time.monotonic() - last_report >= 60:
            last_report = time.monotonic()
            log(f"{deferred}/{n} deferred after {time.monotonic() - begun:.0f} s")
        return deferred >= n

    try:
        wait_for(all_deferred, timeout, lambda: f"only {deferred}/{n} task instances deferred in time", every=5.0)
    except AirflowStackError:
        if not deferred:
            raise
        log(f"only {deferred}/{n} deferred after {timeout:.0f} s: pausing the DAG, going on with those deferred")
        api.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": True})
        with contextlib.suppress(AirflowStackError):
            wait_for(
                lambda: api.count(run_id, "running") + api.count(run_id, "queued") == 0,
                120.0,
                lambda: "tasks still starting after the pause",
                every=5.0,
            )
        deferred = api.count(run_id, "deferred")
    return run_id, deferred, time.monotonic() - begun


def restart_triggerer(stack: AirflowStack, classpath: str, n: int, pythonpath: str) -> int:
    """Stop the triggerer, point every trigger row at ``classpath``, start a new one; return its pid.

    The new triggerer imports from ``pythonpath`` first (an earlier version of the package, for
    ``kling-before``).
    """
    proc = stack.procs["triggerer"]
    stack.kill("triggerer", signal.SIGTERM)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        stack.kill("triggerer", signal.SIGKILL)
    # Stopped cleanly, the old triggerer's job is no longer alive: the new one takes its triggers at once.
    _sqlite(stack, "UPDATE trigger SET classpath = ?", (classpath,), write=True)
    rows = _sqlite(stack, "SELECT COUNT(*) FROM trigger WHERE classpath = ?", (classpath,))[0][0]
    if rows < n:
        raise AirflowStackError(f"{rows} rows of the trigger table point at {classpath}; expected {n}")
    stack.env["PYTHONPATH"] = pythonpath
    return stack.start("triggerer").pid


def measure_variant(
    stack: AirflowStack,
    sandbox: SandboxProcess,
    variant: str,
    *,
    args: argparse.Namespace,
    idle_rate: float,
    idle_rss: int,
    timeout: float,
    log: Callable[[str], None],
) -> VariantResult:
    """Hand the N deferred generations to one trigger (a triggerer restart), then measure a steady window."""
    begun = time.monotonic()
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH")]
    if variant == "kling-before":
        paths.insert(0, str(args.before_src))
    triggerer_pid = restart_triggerer(stack, CLASSPATHS[variant], args.n, os.pathsep.join(filter(None, paths)))
    sandbox.clear_journal()
    polled: set[str] = set()

    def all_polled() -> bool:
        polled.update(str(entry.get("task_id")) for entry in sandbox.journal(kind="poll"))
        sandbox.clear_journal()
        return len(polled) >= args.n

    wait_for(
        all_polled,
        timeout,
        lambda: f"{variant}: the new triggerer polled only {len(polled)}/{args.n} generations in time",
        every=5.0,
    )
    takeover = time.monotonic() - begun
    log(f"{variant}: all {args.n} generations polled {takeover:.0f} s after the restart; settling {args.settle:g} s")
    time.sleep(args.settle)

    watcher = RssWatcher(triggerer_pid)
    watcher.start()
    load_before = os.getloadavg()
    sandbox.clear_journal()
    cpu_before = tree_cpu_seconds(triggerer_pid)
    window_start = time.monotonic()
    time.sleep(args.window)
    cpu_after = tree_cpu_seconds(triggerer_pid)
    window = time.monotonic() - window_start
    polls_seen = sandbox.journal(kind="poll")
    rss = tree_rss_bytes(triggerer_pid)
    peak = watcher.stop()
    polls = len(polls_seen)
    cpu = cpu_between(cpu_before, cpu_after)
    notes = []
    gone = sorted(set(cpu_before) - set(cpu_after))
    if gone:
        notes.append(f"processes ended during the window (their last stretch is not counted): {gone}")
    names = {pid: _cmdline(pid) for pid in cpu_after}
    total_rss = sum(rss.values())
    return VariantResult(
        variant=variant,
        n=args.n,
        takeover_seconds=takeover,
        window_seconds=window,
        polls=polls,
        tasks_polled=len({entry.get("task_id") for entry in polls_seen}),
        cpu_seconds=cpu,
        cpu_by_process={
            f"{pid} {names.get(pid, '?')}": cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in sorted(cpu_after)
        },
        cpu_ms_per_poll=cpu / polls * 1000 if polls else math.nan,
        idle_cpu_ms_per_poll=idle_rate * window / polls * 1000 if polls else math.nan,
        polls_per_second=polls / window if window > 0 else math.nan,
        rss_mib=total_rss / MIB,
        rss_by_process_mib={f"{pid} {names.get(pid, '?')}": value / MIB for pid, value in sorted(rss.items())},
        peak_rss_mib=peak / MIB,
        kib_per_trigger=(total_rss - idle_rss) / args.n / 1024,
        load_average=[round(value, 2) for value in load_before],
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------- report


COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("trigger", "variant", "{}"),
    ("takeover (s)", "takeover_seconds", "{:.0f}"),
    ("window (s)", "window_seconds", "{:.0f}"),
    ("polls", "polls", "{:,}"),
    ("tasks polled", "tasks_polled", "{:,}"),
    ("polls/s", "polls_per_second", "{:.1f}"),
    ("CPU s", "cpu_seconds", "{:.2f}"),
    ("CPU ms/poll", "cpu_ms_per_poll", "{:.3f}"),
    ("of which idle triggerer", "idle_cpu_ms_per_poll", "{:.3f}"),
    ("RSS MiB", "rss_mib", "{:.0f}"),
    ("KiB/trigger", "kib_per_trigger", "{:.1f}"),
    ("load (1 min)", "load_1", "{:.2f}"),
)


def results_table(results: Sequence[VariantResult]) -> str:
    """A Markdown table of the results (readable as plain text too)."""
    rows = [asdict(result) | {"load_1": result.load_average[0]} for result in results]
    return _common.markdown_table([_common.Column(*column) for column in COLUMNS], rows, left=("variant",))


def machine_description() -> str:
    """CPU model, cores, Python and the load average: what a reader needs to judge the figures."""
    from benchmarks.worker_slots import machine_description as describe

    return describe()


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.real_triggerer",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument("--n", type=int, default=1000, help="deferred generations per trigger; default %(default)s")
    parser.add_argument(
        "--variants", default="kling,to-thread", help="triggers to run, in this order; default %(default)s"
    )
    parser.add_argument(
        "--parallelism", type=int, default=4, help="worker slots ([core] parallelism); default %(default)s"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=5.0,
        help="the operator's poll_interval (and max_poll_interval: a fixed schedule); default %(default)s",
    )
    parser.add_argument(
        "--vendor-latency",
        type=float,
        default=0.05,
        help="seconds the sandbox holds every poll before answering (no CPU), as a remote API would; "
        "default %(default)s",
    )
    parser.add_argument(
        "--max-polls-per-second",
        type=float,
        default=100_000.0,
        help="the connection extra's rate limit (default %(default)s, as in triggerer_scale.py: not the limiter)",
    )
    parser.add_argument(
        "--generation-seconds",
        type=float,
        default=3 * 3600.0,
        help="seconds each generation renders in the sandbox: longer than the whole benchmark, so no trigger "
        "fires; default %(default)s",
    )
    parser.add_argument("--settle", type=float, default=20.0, help="seconds between all deferred and the window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of the measured window")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="seconds of the idle-triggerer measurement")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="bound on the whole benchmark, seconds; default: 600 plus 3 s per generation and trigger",
    )
    parser.add_argument(
        "--before-src",
        type=Path,
        default=None,
        help="a directory holding an earlier airflow_provider_kling package (e.g. from git archive): adds the "
        "kling-before variant, our trigger as that version has it, run by a triggerer that imports it first",
    )
    parser.add_argument(
        "--defer-timeout",
        type=float,
        default=None,
        help="seconds to wait for all N to defer; then the DAG is paused and the benchmark goes on with the "
        "generations deferred by then (reported as N); default: the whole --timeout",
    )
    _common.add_output_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    variants = [variant.strip() for variant in args.variants.split(",") if variant.strip()]
    if not variants or any(variant not in VARIANTS for variant in variants):
        parser.error(f"--variants: a comma-separated list of {', '.join(VARIANTS)}")
    if args.before_src is not None and "kling-before" not in variants:
        variants.append("kling-before")
    if "kling-before" in variants and (
        args.before_src is None or not (args.before_src / "airflow_provider_kling").is_dir()
    ):
        parser.error("kling-before needs --before-src DIR with an airflow_provider_kling package in it")
    args.variants = variants
    args.n_asked = args.n
    if args.n < 1 or args.parallelism < 1 or args.poll_interval <= 0 or args.window <= 0:
        parser.error("--n, --parallelism, --poll-interval and --window must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Boot the stack, run every variant, print the table; 0 when every variant was measured."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _common.on_sigterm)
    started = time.monotonic()
    total_timeout = args.timeout or (600 + 3 * args.n * len(args.variants))
    deadline = started + total_timeout
    log = _common.progress_logger(started, quiet=args.quiet)

    machine = machine_description()
    results: list[VariantResult] = []
    error: BaseException | None = None
    boot_seconds = idle_rate = defer_seconds = math.nan
    idle_rss = 0
    idle_rss_by_process: dict[str, float] = {}
    with _common.temp_dir("kling-real-triggerer-") as work:
        dags = work / "dags"
        dags.mkdir()
        (dags / "real_triggerer_dags.py").write_text(
            render_dag(
                n=args.n,
                poll_interval=args.poll_interval,
                parallelism=args.parallelism,
                timeout=args.generation_seconds + 3600,
            )
        )
        sandbox = SandboxProcess(
            api_key=API_KEY,
            generation_seconds=args.generation_seconds,
            log_level="warning",
            journal_limit=2_000_000,
            log_path=work / "sandbox.log",
            startup_timeout=120,
        )
        stack: AirflowStack | None = None
        api: Api | None = None
        try:
            sandbox.start()
            if args.vendor_latency > 0:
                sandbox.configure(rate_slow=1.0, slow_seconds=args.vendor_latency, chaos_scope="poll")
            connection = {
                "conn_type": "kling",
                "host": sandbox.url,
                "password": API_KEY,
                "extra": {"max_polls_per_second": args.max_polls_per_second},
            }
            log(f"sandbox on {sandbox.url} (pid {sandbox.pid}); booting Airflow with {args.parallelism} slots")
            stack = AirflowStack(
                dags_folder=dags,
                parallelism=args.parallelism,
                connections={"kling_default": connection},
                env={
                    # The triggerer imports the baseline trigger by class path from the repository.
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                    "AIRFLOW__TRIGGERER__CAPACITY": str(args.n + 50),
                    # Task starts queue behind each other on a small, busy machine: the default 5 s
                    # timeout of a worker's calls to the execution API then fails tasks.
                    "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                    "AIRFLOW__CORE__MAX_MAP_LENGTH": str(max(1024, args.n)),
                },
                home=work / "airflow-home",
            )
            api = Api(stack)
            boot_seconds = stack.boot(timeout=min(900.0, deadline - time.monotonic()))
            log(f"stack healthy after {boot_seconds:.1f} s (api-server {stack.base_url})")
            stack.wait_for_dag(DAG_ID, timeout=min(180.0, deadline - time.monotonic()))
            triggerer_pid = stack.procs["triggerer"].pid
            time.sleep(5)  # the triggerer's first loops (its runner starting) are not idle
            idle_rate = idle_cpu_rate(triggerer_pid, args.idle_seconds)
            idle_rss_sizes = tree_rss_bytes(triggerer_pid)
            idle_rss = sum(idle_rss_sizes.values())
            idle_rss_by_process = {f"{pid} {_cmdline(pid)}": v / MIB for pid, v in sorted(idle_rss_sizes.items())}
            log(f"idle triggerer: {idle_rate * 1000:.1f} ms CPU per second, RSS {idle_rss / MIB:.0f} MiB")
            defer_timeout = args.defer_timeout or max(10.0, deadline - time.monotonic())
            run_id, deferred, defer_seconds = defer_all(api, args.n, defer_timeout, log)
            log(f"{deferred} generations deferred after {defer_seconds:.0f} s")
            args.n = deferred
            for variant in args.variants:
                result = measure_variant(
                    stack,
                    sandbox,
                    variant,
                    args=args,
                    idle_rate=idle_rate,
                    idle_rss=idle_rss,
                    timeout=max(10.0, min(600.0, deadline - time.monotonic())),
                    log=log,
                )
                results.append(result)
                log(f"{variant}: {result.cpu_ms_per_poll:.3f} ms CPU per poll, RSS {result.rss_mib:.0f} MiB")
            api.call("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
        except (Exception, KeyboardInterrupt, _common.Terminated) as exc:
            error = exc
        finally:
            failed = error is not None
            if api is not None:
                api.close()
            _common.stop_stack(
                stack, sandbox, log=log, keep=args.keep_logs, failed=failed, prefix="kling-real-triggerer-failed-"
            )

    elapsed = time.monotonic() - started
    by_variant = {result.variant: result for result in results}
    ratio = math.nan
    if {"kling", "to-thread"} <= set(by_variant) and by_variant["kling"].cpu_ms_per_poll > 0:
        ratio = by_variant["to-thread"].cpu_ms_per_poll / by_variant["kling"].cpu_ms_per_poll
    before_ratio = math.nan
    if {"kling", "kling-before"} <= set(by_variant) and by_variant["kling"].cpu_ms_per_poll > 0:
        before_ratio = by_variant["kling-before"].cpu_ms_per_poll / by_variant["kling"].cpu_ms_per_poll

    print("# Real triggerer: CPU per poll and memory of N deferred generations")
    print()
    print(f"machine: {machine}")
    print(
        f"stack: Airflow {_common.airflow_version()}, LocalExecutor, SQLite, parallelism {args.parallelism}; booted in "
        f"{boot_seconds:.1f} s; idle triggerer {idle_rate * 1000:.1f} ms CPU per second, RSS "
        f"{idle_rss / MIB:.0f} MiB"
    )
    print(
        f"load: {args.n} mapped generations per trigger, poll_interval {args.poll_interval:g} s fixed "
        f"({args.n / args.poll_interval:.0f} polls/s asked), vendor latency {args.vendor_latency * 1000:g} ms, "
        f"window {args.window:g} s after {args.settle:g} s of settling; triggers in order: {', '.join(args.variants)}"
    )
    print(
        f"deferral: {args.n} of {args.n_asked} generations deferred {defer_seconds:.0f} s after the DAG run "
        "started (measured with those)"
    )
    print()
    print("## Results")
    print()
    print(results_table(results) if results else "(no variant measured)")
    print()
    for result in results:
        split = ", ".join(f"{name}: {value:.2f} s" for name, value in result.cpu_by_process.items())
        print(f"- {result.variant}: CPU by process: {split}")
        for note in result.notes:
            print(f"- {result.variant}: {note}")
    print()
    if math.isnan(ratio):
        print("ratio to-thread/kling (CPU per poll): - (both triggers must run)")
    else:
        print(f"ratio to-thread/kling (CPU per poll): {ratio:.2f}x")
    if not math.isnan(before_ratio):
        print(f"ratio kling-before/kling (CPU per poll): {before_ratio:.2f}x (before: {args.before_src})")
    _common.print_ending(elapsed, error)

    if args.json is not None:
        payload = {
            "machine": machine,
            "config": {key: value for key, value in vars(args).items() if key not in ("json", "keep_logs")},
            "boot_seconds": boot_seconds,
            "defer_seconds": defer_seconds,
            "idle_cpu_per_second": idle_rate,
            "idle_rss_mib": idle_rss / MIB,
            "idle_rss_by_process_mib": idle_rss_by_process,
            "results": [asdict(result) for result in results],
            "ratio_to_thread_over_kling": None if math.isnan(ratio) else ratio,
            "ratio_before_over_kling": None if math.isnan(before_ratio) else before_ratio,
            "elapsed_seconds": elapsed,
            "error": None if error is None else f"{type(error).__name__}: {error}",
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return _common.exit_status(error, ok=error is None and len(results) == len(args.variants))


if __name__ == "__main__":
    sys.exit(main())
