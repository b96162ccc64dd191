"""Worker slots: N generations on a real Airflow stack with 2 slots, deferrable versus synchronous.

Boots a real Airflow 3.3 stack (api-server, scheduler, dag-processor, triggerer; LocalExecutor with
``--slots`` worker slots, SQLite; :class:`tools.airflow_stack.AirflowStack`) and the Kling sandbox, both
on 127.0.0.1, writes one DAG file into a temporary DAGs folder and runs, one after the other:

* ``worker_slots_deferrable``: ``KlingTextToVideoOperator.partial(deferrable=True).expand(prompt=[N prompts])``,
  each task submits, frees its worker slot while the sandbox "renders", and resumes when the trigger fires;
* ``worker_slots_synchronous``: the same with ``deferrable=False``: each task polls from its worker slot.

Every generation takes ``--generation-seconds`` in the sandbox. Per mode it prints:

* the wall time of the DAG run (its ``start_date`` to ``end_date``, from the REST API);
* the peak number of generations in flight (from the sandbox's task list: ``created_at`` to
  ``completes_at``), the spread of submissions (first to last) and the tail (last video done to run end);
* worker-slot occupancy: slot-seconds during which a LocalExecutor worker process was busy (its process
  title, sampled with psutil every 0.2 s), and that over ``slots x wall time``. (``--json`` also has
  the task instances' summed time in state ``running``, from the REST API sampled once a second: close
  for synchronous tasks, too coarse for the sub-second starts and resumes of deferrable ones);
* the peak number of task instances seen ``deferred`` at once (same REST samples);

and the ratio of the synchronous wall time to the deferrable one. A warm-up run (one trivial task per slot)
comes first, so neither measured run pays the stack's first-run costs; then deferrable, then synchronous.

With zero overhead the ratio would be ``ceil(N / slots)``: the synchronous run is ``ceil(N / slots)``
waves of one generation, the deferrable one a single wave. Real runs have overhead on both sides (each
synchronous wave waits for its last poll and the next task start; the deferrable run waits for N starts
and N resumes to pass through the slots), so the measured ratio stays below that ceiling and approaches
it as generations get longer than the overhead (real Kling renders take minutes).

Everything runs on 127.0.0.1; every process the script starts is stopped by its PID (or process group)
when it ends, fails or is interrupted, and every wait is bounded (``--timeout``).

    .venv/bin/python -m benchmarks.worker_slots                       # 20 x 20 s generations, ~5 min on 2 cores
    .venv/bin/python benchmarks/worker_slots.py --n 4 --generation-seconds 8 --json out.json   # smoke, ~1 min

Keep ``--generation-seconds`` at 8 or more: Airflow 3.3.2 can fail a task whose trigger fires within about
5 s of deferring (apache/airflow#71580, #72716; see docs/reliability.md).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# Run as `python benchmarks/worker_slots.py` too: `tools` lives at the repository root, not in the package.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from airflow_provider_kling.sandbox.process import SandboxProcess, peak_in_flight  # noqa: E402
from benchmarks import _common  # noqa: E402
from tools.airflow_stack import AirflowServerError, AirflowStack, AirflowStackError, cmdline  # noqa: E402

#: The only key the sandbox accepts (made up: nothing leaves 127.0.0.1).
API_KEY = "benchmark-key"
MODES = ("deferrable", "synchronous")
DAG_ID_PREFIX = "worker_slots_"
WARMUP_DAG_ID = DAG_ID_PREFIX + "warmup"
#: Title of a LocalExecutor worker process; ``<idle>`` follows it while the worker waits for a task.
WORKER_TITLE = "airflow worker -- LocalExecutor:"
IDLE_SUFFIX = "<idle>"

DAG_TEMPLATE = '''\
"""Written by benchmarks/worker_slots.py: {n} generations, fanned out, deferrable and synchronous."""

from airflow.sdk import DAG, task

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

# Warm-up: one trivial task per worker slot, so the first measured run pays no first-run costs.
with DAG(dag_id="{prefix}warmup", schedule=None, catchup=False, tags=["benchmark"]):

    @task
    def warm_up(slot: int) -> int:
        return slot

    warm_up.expand(slot=list(range({slots})))

for mode, deferrable in (("deferrable", True), ("synchronous", False)):
    with DAG(
        dag_id="{prefix}" + mode,
        schedule=None,
        catchup=False,
        default_args={{"retries": 0}},  # a failure must show, not hide behind a second (paid) try
        tags=["benchmark"],
    ):
        KlingTextToVideoOperator.partial(
            task_id="generate",
            deferrable=deferrable,
            poll_interval={poll_interval!r},
            duration=5,
        ).expand(prompt=[f"worker slots benchmark, {{mode}} generation {{i}}" for i in range({n})])
'''


# ---------------------------------------------------------------------------------------------- sampling


class WorkerSampler(threading.Thread):
    """Counts busy LocalExecutor workers of the stack every ``interval`` seconds (from their titles)."""

    def __init__(self, stack: AirflowStack, interval: float = 0.2) -> None:
        super().__init__(name="worker-sampler", daemon=True)
        self.stack = stack
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (epoch seconds, busy workers, all workers)
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            titles = {pid: cmdline(pid) for pid in self.stack.pids()}
            workers = {pid for pid, title in titles.items() if title.startswith(WORKER_TITLE)}
            # A task process keeps its worker's title for a moment after the fork: count workers only.
            workers -= {pid for pid in workers if _parent(pid) in workers}
            busy = sum(1 for pid in workers if not titles[pid].endswith(IDLE_SUFFIX))
            self.samples.append((time.time(), busy, len(workers)))

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)

    def busy_seconds(self, start: float, end: float) -> float:
        """Slot-seconds busy between ``start`` and ``end`` (epoch seconds), each sample held until the next."""
        total = 0.0
        for (t0, busy, _), (t1, _, _) in itertools.pairwise(self.samples):
            lo, hi = max(t0, start), min(t1, end)
            if hi > lo:
                total += busy * (hi - lo)
        return total

    def peak_busy(self, start: float, end: float) -> int:
        return max((busy for t, busy, _ in self.samples if start <= t <= end), default=0)


def _parent(pid: int) -> int:
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return 0


@dataclass
class StateTimeline:
    """Task-instance states as the REST API showed them, sampled about once a second."""

    samples: list[tuple[float, dict[int, str]]] = field(default_factory=list)

    def add(self, when: float, states: dict[int, str]) -> None:
        self.samples.append((when, states))

    def seconds_in(self, state: str) -> float:
        """Sum over task instances of the time spent in ``state`` (each sample held until the next)."""
        total = 0.0
        for (t0, states), (t1, _) in itertools.pairwise(self.samples):
            total += (t1 - t0) * sum(1 for value in states.values() if value == state)
        return total

    def peak(self, state: str) -> int:
        return max((sum(1 for v in states.values() if v == state) for _, states in self.samples), default=0)


# ---------------------------------------------------------------------------------------------- one run


@dataclass
class ModeResult:
    mode: str
    dag_id: str
    run_id: str
    state: str
    wall_seconds: float
    start_date: str | None
    end_date: str | None
    ti_states: dict[str, int]
    max_try_number: int
    generations: int
    generations_succeeded: int
    peak_in_flight: int
    first_submit_seconds: float
    submit_spread_seconds: float
    tail_seconds: float
    slot_busy_seconds: float
    peak_busy_slots: int
    slot_occupancy: float
    ti_running_seconds: float
    peak_deferred: int
    load_average_after: list[float]
    trace: dict[str, Any] = field(default_factory=dict, repr=False)


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_mode(
    stack: AirflowStack,
    sandbox: SandboxProcess,
    sampler: WorkerSampler,
    mode: str,
    *,
    slots: int,
    timeout: float,
    log: Any,
) -> ModeResult:
    """Trigger one DAG, sample it until it ends, and work out its figures."""
    dag_id = DAG_ID_PREFIX + mode
    known = {task["task_id"] for task in sandbox.tasks()}
    run_id = stack.trigger(dag_id)
    log(f"{mode}: triggered run {run_id}; waiting (at most {timeout:.0f} s)")
    timeline = StateTimeline()
    state = ""
    last_report = time.monotonic()

    def finished() -> bool:
        nonlocal state, last_report
        tis = stack.task_instances(dag_id, run_id)
        timeline.add(time.time(), {ti.map_index: ti.state or "none" for ti in tis})
        state = stack.run_state(dag_id, run_id)
        if time.monotonic() - last_report >= 30:
            last_report = time.monotonic()
            counts: dict[str, int] = {}
            for ti in tis:
                counts[ti.state or "none"] = counts.get(ti.state or "none", 0) + 1
            log(f"{mode}: run {state}, task instances {counts}")
        return state in ("success", "failed")

    stack.wait_until(
        finished, timeout, lambda: f"{mode}: run {dag_id}/{run_id} still {state!r} after {timeout:.0f} s", 1.0
    )
    run = _retry(lambda: next(r for r in stack.dag_runs(dag_id) if r["dag_run_id"] == run_id))
    tis = _retry(lambda: stack.task_instances(dag_id, run_id))
    start, end = _epoch(run.get("start_date")), _epoch(run.get("end_date"))
    if start is None or end is None:  # should not happen for a finished run; fall back to our samples
        start, end = timeline.samples[0][0], timeline.samples[-1][0]
    wall = end - start

    ours = [task for task in sandbox.tasks() if task["task_id"] not in known]
    created = [float(task["created_at"]) for task in ours]
    completes = [float(task["completes_at"]) for task in ours]
    ti_states: dict[str, int] = {}
    for ti in tis:
        ti_states[ti.state or "none"] = ti_states.get(ti.state or "none", 0) + 1
    busy = sampler.busy_seconds(start, end)
    return ModeResult(
        mode=mode,
        dag_id=dag_id,
        run_id=run_id,
        state=str(run["state"]),
        wall_seconds=wall,
        start_date=run.get("start_date"),
        end_date=run.get("end_date"),
        ti_states=ti_states,
        max_try_number=max((ti.try_number for ti in tis), default=0),
        generations=len(ours),
        generations_succeeded=sum(1 for task in ours if task["outcome"] == "TASK_STATUS_SUCCEED"),
        peak_in_flight=peak_in_flight(ours),
        first_submit_seconds=(min(created) - start) if created else math.nan,
        submit_spread_seconds=(max(created) - min(created)) if created else math.nan,
        tail_seconds=(end - max(completes)) if completes else math.nan,
        slot_busy_seconds=busy,
        peak_busy_slots=sampler.peak_busy(start, end),
        slot_occupancy=busy / (slots * wall) if wall > 0 else math.nan,
        ti_running_seconds=timeline.seconds_in("running"),
        peak_deferred=timeline.peak("deferred"),
        load_average_after=[round(value, 2) for value in os.getloadavg()],
        trace={
            "workers": [s for s in sampler.samples if start - 5 <= s[0] <= end + 5],
            "ti_states": timeline.samples,
            "sandbox_tasks": [{k: t[k] for k in ("task_id", "created_at", "completes_at")} for t in ours],
            "start": start,
            "end": end,
        },
    )


def warm_up(stack: AirflowStack, timeout: float) -> float:
    """Run the warm-up DAG (a trivial task per slot); return its wall time. Raises if it fails."""
    result = stack.wait_for_run(WARMUP_DAG_ID, stack.trigger(WARMUP_DAG_ID), timeout=timeout)
    if result.state != "success":
        raise AirflowStackError(f"the warm-up run ended {result.state}: {result.states_seen}")
    return result.seconds


def _retry(call: Any, attempts: int = 10) -> Any:
    """A REST read, asked again while SQLite is briefly locked under load (5xx) or the API is busy."""
    for attempt in range(attempts):
        try:
            return call()
        except (AirflowServerError, httpx.TransportError):
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------- report


COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("mode", "mode", "{}"),
    ("run state", "state", "{}"),
    ("wall time (s)", "wall_seconds", "{:.1f}"),
    ("peak in flight", "peak_in_flight", "{}"),
    ("first submit (s)", "first_submit_seconds", "{:.1f}"),
    ("submit spread (s)", "submit_spread_seconds", "{:.1f}"),
    ("tail after last video (s)", "tail_seconds", "{:.1f}"),
    ("slot-seconds busy", "slot_busy_seconds", "{:.0f}"),
    ("slot occupancy", "slot_occupancy", "{:.0%}"),
    ("peak deferred", "peak_deferred", "{}"),
)


def results_table(results: Sequence[ModeResult]) -> str:
    """A Markdown table of the results (readable as plain text too)."""
    rows = [asdict(result) for result in results]
    return _common.markdown_table([_common.Column(*column) for column in COLUMNS], rows, left=("mode", "state"))


def machine_description() -> str:
    """CPU model, cores, Python and the load average: what a reader needs to judge the figures."""
    model = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at start {load}"
    )


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.worker_slots",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument(
        "--n", type=int, default=20, help="generations per mode (mapped task instances); default %(default)s"
    )
    parser.add_argument(
        "--generation-seconds", type=float, default=20.0, help="seconds each generation takes; default %(default)s"
    )
    parser.add_argument("--slots", type=int, default=2, help="worker slots ([core] parallelism); default %(default)s")
    parser.add_argument(
        "--poll-interval", type=float, default=2.0, help="the operator's poll_interval, both modes; default %(default)s"
    )
    parser.add_argument("--modes", default=",".join(MODES), help="modes to run, in this order; default %(default)s")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="bound on the whole benchmark, seconds; default: 300 plus a generous bound per run from N and G",
    )
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the warm-up run (a trivial task per slot) before the measured ones",
    )
    _common.add_output_arguments(parser)
    parser.add_argument(
        "--trace", action="store_true", help="put the raw samples (workers, task states, sandbox tasks) in --json"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or any(mode not in MODES for mode in modes):
        parser.error(f"--modes: a comma-separated list of {', '.join(MODES)}")
    args.modes = modes
    if args.n < 1 or args.slots < 1 or args.generation_seconds <= 0 or args.poll_interval <= 0:
        parser.error("--n, --slots, --generation-seconds and --poll-interval must be positive")
    return args


def mode_timeout(mode: str, *, n: int, slots: int, generation: float) -> float:
    """A generous bound on one run: several times what it should take on a loaded 2-core machine."""
    if mode == "synchronous":
        return math.ceil(n / slots) * (generation + 60) + 180
    return generation + n * 30 / slots + 180


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _common.on_sigterm)
    started = time.monotonic()
    budgets = {
        mode: mode_timeout(mode, n=args.n, slots=args.slots, generation=args.generation_seconds) for mode in args.modes
    }
    total_timeout = args.timeout or (300 + sum(budgets.values()))
    deadline = started + total_timeout
    log = _common.progress_logger(started, quiet=args.quiet)

    machine = machine_description()
    results: list[ModeResult] = []
    error: BaseException | None = None
    boot_seconds = warmup_seconds = math.nan
    with _common.temp_dir("kling-worker-slots-") as work:
        dags = work / "dags"
        dags.mkdir()
        (dags / "worker_slots_dags.py").write_text(
            DAG_TEMPLATE.format(n=args.n, slots=args.slots, prefix=DAG_ID_PREFIX, poll_interval=args.poll_interval)
        )
        sandbox = SandboxProcess(
            api_key=API_KEY, generation_seconds=args.generation_seconds, log_path=work / "sandbox.log"
        )
        stack: AirflowStack | None = None
        sampler: WorkerSampler | None = None
        try:
            sandbox.start()
            log(f"sandbox on {sandbox.url} (pid {sandbox.pid}); booting Airflow with {args.slots} worker slots")
            stack = AirflowStack(
                dags_folder=dags,
                parallelism=args.slots,
                connections={"kling_default": sandbox.airflow_connection(API_KEY)},
                home=work / "airflow-home",
            )
            boot_seconds = stack.boot(timeout=min(300.0, deadline - time.monotonic()))
            log(f"stack healthy after {boot_seconds:.1f} s (api-server {stack.base_url})")
            for dag_id in {DAG_ID_PREFIX + mode for mode in args.modes} | {WARMUP_DAG_ID}:
                stack.wait_for_dag(dag_id, timeout=min(120.0, deadline - time.monotonic()))
            if args.warmup:
                warmup_seconds = warm_up(stack, timeout=min(180.0, deadline - time.monotonic()))
                log(f"warm-up run done in {warmup_seconds:.1f} s")
            sampler = WorkerSampler(stack)
            sampler.start()
            for mode in args.modes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AirflowStackError(f"--timeout of {total_timeout:.0f} s used up before the {mode} run")
                result = run_mode(
                    stack,
                    sandbox,
                    sampler,
                    mode,
                    slots=args.slots,
                    timeout=min(budgets[mode], remaining),
                    log=log,
                )
                results.append(result)
                log(f"{mode}: {result.state} in {result.wall_seconds:.1f} s, peak in flight {result.peak_in_flight}")
        except (Exception, KeyboardInterrupt, _common.Terminated) as exc:
            error = exc
        finally:
            if sampler is not None:
                sampler.stop()
            failed = error is not None or any(r.state != "success" for r in results)
            _common.stop_stack(
                stack, sandbox, log=log, keep=args.keep_logs, failed=failed, prefix="kling-worker-slots-failed-"
            )

    elapsed = time.monotonic() - started
    by_mode = {result.mode: result for result in results}
    ratio = math.nan
    if {"deferrable", "synchronous"} <= set(by_mode) and by_mode["deferrable"].wall_seconds > 0:
        ratio = by_mode["synchronous"].wall_seconds / by_mode["deferrable"].wall_seconds
    ceiling = math.ceil(args.n / args.slots)

    print("# Worker slots: deferrable versus synchronous")
    print()
    print(f"machine: {machine}")
    print(
        f"stack: Airflow {_common.airflow_version()}, LocalExecutor, SQLite, {args.slots} worker slots "
        f"(parallelism {args.slots}); booted in {boot_seconds:.1f} s; "
        + (f"warm-up run {warmup_seconds:.1f} s" if args.warmup else "no warm-up run")
    )
    print(
        f"load: {args.n} generations of {args.generation_seconds:g} s per mode (sandbox), fanned out with "
        f".expand(); poll_interval {args.poll_interval:g} s; modes in order: {', '.join(args.modes)}"
    )
    print()
    print("## Results")
    print()
    print(results_table(results) if results else "(no run finished)")
    print()
    if math.isnan(ratio):
        print("ratio synchronous/deferrable (wall time): - (both modes must run)")
    else:
        print(f"ratio synchronous/deferrable (wall time): {ratio:.2f}x")
    print(
        f"zero-overhead ceiling: ceil({args.n}/{args.slots}) = {ceiling}x "
        f"(synchronous {ceiling} x {args.generation_seconds:g} s, deferrable 1 x {args.generation_seconds:g} s)"
    )
    _common.print_ending(elapsed, error)

    if args.json is not None:
        payload = {
            "machine": machine,
            "config": {
                "n": args.n,
                "generation_seconds": args.generation_seconds,
                "slots": args.slots,
                "poll_interval": args.poll_interval,
                "modes": args.modes,
                "warmup": args.warmup,
            },
            "boot_seconds": boot_seconds,
            "warmup_seconds": warmup_seconds if args.warmup else None,
            "results": [{k: v for k, v in asdict(result).items() if k != "trace" or args.trace} for result in results],
            "ratio_sync_over_deferrable": None if math.isnan(ratio) else ratio,
            "zero_overhead_ceiling": ceiling,
            "elapsed_seconds": elapsed,
            "error": None if error is None else f"{type(error).__name__}: {error}",
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return _common.exit_status(
        error, ok=error is None and len(results) == len(args.modes) and all(r.state == "success" for r in results)
    )


if __name__ == "__main__":
    sys.exit(main())
