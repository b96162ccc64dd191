"""How many KlingTaskTriggers one triggerer process holds, and what each poll costs.

For each N, a fresh worker process does what a triggerer's trigger-runner does: it builds N triggers and
runs each ``trigger.run()`` as an asyncio task in one event loop, logging structlog JSON lines to a file,
while the bundled sandbox (another process, 127.0.0.1) plays the vendor. The worker submits the N
sandbox tasks itself (each with its own generation time, drawn uniformly from ``[G, G*(1+spread)]``),
then starts every trigger at once, as a restarted triggerer would, and waits for every event.

Three triggers run the same load, each in its own worker process:

* ``kling``: :class:`~airflow_provider_kling.triggers.kling.KlingTaskTrigger` (one shared
  ``httpx.AsyncClient`` and rate limiter per connection and event loop).
* ``to-thread``: a baseline written the way most providers do it: a blocking ``httpx.Client`` call in
  ``asyncio.to_thread`` per poll. It is given the kindest form of that pattern, one client shared by
  every trigger; a client per trigger (a hook per trigger) would add the cost printed as "one httpx
  client" on top.
* ``client-per-poll``: the other common pattern, a new ``httpx.AsyncClient`` for every poll.

Both baselines use the same schedule (:func:`~airflow_provider_kling.polling.next_poll_delay`), parse
the same model and log the same line per poll, so the differences are the HTTP plumbing alone.

Printed per N and trigger: peak RSS and memory per trigger (RSS growth over N), CPU time per poll (the
worker's CPU time over the polls the sandbox journal counted), polls per second, the longest event-loop
stall (lateness of a coroutine sleeping 10 ms) and the detection latency (the sandbox's ``completes_at``
to the event reaching the runner: p50, p95, max). Then the ratios baseline / kling from the same run.

The aggregate poll rate is kept well under the sandbox's capacity by spreading polls: the poll interval
for N triggers is ``max(--poll-interval, N / --target-poll-rate)``, and the sandbox's own CPU share is
printed for every run, so it can be seen not to be the bottleneck. Every run is bounded in time and in
memory (``--rss-limit-mib``: a baseline that outgrows it is stopped and reported as such). All traffic
stays on 127.0.0.1; the sandbox is stopped by its PID at the end.

    python benchmarks/triggerer_scale.py                       # N = 100, 1000, 5000, 10000 (~25 min)
    python benchmarks/triggerer_scale.py --n 100 1000 --variants kling to-thread
    python benchmarks/triggerer_scale.py --json results.json --plot docs/img
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from _common import (
    API_KEY,
    TASK_RESULT_PATH,
    Column,
    RssSampler,
    StallMonitor,
    configure_trigger_logging,
    connection_json,
    generation_seconds,
    machine_description,
    markdown_table,
    percentile,
    prepare_airflow_env,
    process_cpu_seconds,
    rss_bytes,
    submit_tasks,
    write_json,
)

VARIANTS = ("kling", "to-thread", "client-per-poll")
BASELINES = ("to-thread", "client-per-poll")
MIB = 2**20


# -- the baseline triggers ---------------------------------------------------------------------------------
# Defined here, not in the package: they exist only to be measured against. Imported lazily (they need
# Airflow, which must not be imported before prepare_airflow_env()).


def _baseline_classes() -> dict[str, type[Any]]:
    from airflow.triggers.base import BaseTrigger, TriggerEvent

    from airflow_provider_kling.models import TaskResult, TaskStatus
    from airflow_provider_kling.polling import describe_progress, next_poll_delay

    settings: dict[str, Any] = {}
    sync_client: list[httpx.Client] = []
    lock = threading.Lock()

    def connection() -> dict[str, Any]:
        # Read once per process (kinder to the baselines than a lookup per trigger).
        if not settings:
            fields = json.loads(os.environ["AIRFLOW_CONN_KLING_DEFAULT"])
            settings.update(
                base_url=fields["host"],
                headers={"Authorization": f"Bearer {fields['password']}", "Content-Type": "application/json"},
            )
        return settings

    def shared_sync_client() -> httpx.Client:
        with lock:
            if not sync_client:
                conn = connection()
                sync_client.append(httpx.Client(base_url=conn["base_url"], headers=conn["headers"], timeout=30))
            return sync_client[0]

    class _BaselineTrigger(BaseTrigger):
        """Same arguments, schedule, parsing, logging and single event as KlingTaskTrigger."""

        def __init__(self, *, kling_task_id: str, end_time: float, poll_interval: float) -> None:
            super().__init__()
            self.kling_task_id = kling_task_id
            self.end_time = end_time
            self.poll_interval = poll_interval

        def serialize(self) -> tuple[str, dict[str, Any]]:
            kwargs = {"kling_task_id": self.kling_task_id, "end_time": self.end_time}
            return f"{type(self).__module__}.{type(self).__qualname__}", kwargs | {"poll_interval": self.poll_interval}

        async def fetch(self) -> httpx.Response:
            raise NotImplementedError

        async def run(self) -> AsyncIterator[TriggerEvent]:
            while True:
                if time.time() >= self.end_time:
                    yield TriggerEvent({"status": "timeout", "kling_task_id": self.kling_task_id})
                    return
                try:
                    response = await self.fetch()
                    response.raise_for_status()
                except httpx.HTTPError as err:
                    yield TriggerEvent({"status": "error", "kling_task_id": self.kling_task_id, "message": str(err)})
                    return
                result = TaskResult.model_validate(response.json())
                self.log.info(describe_progress(self.kling_task_id, result.task))
                state = result.task.state
                if state in (TaskStatus.SUCCEED, TaskStatus.FAILED):
                    status = "success" if state is TaskStatus.SUCCEED else "failed"
                    payload = {"status": status, "kling_task_id": self.kling_task_id}
                    yield TriggerEvent(payload | {"result": result.model_dump(mode="json")})
                    return
                delay = next_poll_delay(result.task, self.poll_interval)
                await asyncio.sleep(max(0.0, min(delay, self.end_time - time.time())))

    class ToThreadBaselineTrigger(_BaselineTrigger):
        """A blocking ``httpx.Client`` call per poll, run in ``asyncio.to_thread`` (the default pool)."""

        async def fetch(self) -> httpx.Response:
            client = shared_sync_client()
            return await asyncio.to_thread(client.get, TASK_RESULT_PATH, params={"task_id": self.kling_task_id})

    class ClientPerPollBaselineTrigger(_BaselineTrigger):
        """A new ``httpx.AsyncClient`` (new connection pool, new TLS context) for every poll."""

        async def fetch(self) -> httpx.Response:
            conn = connection()
            async with httpx.AsyncClient(base_url=conn["base_url"], headers=conn["headers"], timeout=30) as client:
                return await client.get(TASK_RESULT_PATH, params={"task_id": self.kling_task_id})

    return {"to-thread": ToThreadBaselineTrigger, "client-per-poll": ClientPerPollBaselineTrigger}


# -- the worker: one variant, one N, in its own process ---------------------------------------------------


def _build_triggers(variant: str, task_ids: list[str], end_time: float, poll_interval: float) -> list[Any]:
    if variant == "kling":
        from airflow_provider_kling.triggers.kling import KlingTaskTrigger

        return [
            KlingTaskTrigger(kling_task_id=task_id, end_time=end_time, poll_interval=poll_interval)
            for task_id in task_ids
        ]
    cls = _baseline_classes()[variant]
    return [cls(kling_task_id=task_id, end_time=end_time, poll_interval=poll_interval) for task_id in task_ids]


async def _run_triggers(
    triggers: list[Any], end_time: float, received: dict[str, tuple[float, str]], monitor: StallMonitor
) -> dict[str, int]:
    """Run every trigger as the triggerer's runner does: one task each, created with a yield in between."""
    from airflow_provider_kling.hooks._shared_clients import aclose_shared_clients

    monitor.start()
    crashed = 0

    async def run_trigger(trigger: Any) -> None:
        nonlocal crashed
        try:
            async for event in trigger.run():
                received[trigger.kling_task_id] = (time.time(), str(event.payload.get("status")))
        except Exception:
            crashed += 1

    tasks = []
    for trigger in triggers:
        tasks.append(asyncio.create_task(run_trigger(trigger)))
        await asyncio.sleep(0)
    _, pending = await asyncio.wait(tasks, timeout=max(1.0, end_time - time.time() + 15))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await monitor.stop()
    await aclose_shared_clients()
    return {"crashed": crashed, "cancelled": len(pending)}


def worker(spec_path: str) -> int:
    """Run one (variant, N) measurement; print one JSON line with the raw figures."""
    spec = json.loads(Path(spec_path).read_text())
    prepare_airflow_env()
    log_file = Path(spec["log_path"]).open("wb")  # noqa: SIM115 (open for the life of the process)
    configure_trigger_logging(log_file)
    _build_triggers(spec["variant"], [], 0.0, 1.0)  # import everything before measuring
    task_ids = asyncio.run(submit_tasks(spec["url"], spec["generation_seconds"]))
    gc.collect()
    if spec["gc_freeze"]:
        gc.freeze()  # what a triggerer could do after start-up (Airflow's does not): see --gc-freeze
    rss_before = rss_bytes()
    monitor = StallMonitor()
    started = time.time()
    cpu_before = process_cpu_seconds()

    def abort() -> None:
        # Called from the sampler thread: the loop may be stalled, so report from here and leave.
        stall = max(monitor.longest, time.perf_counter() - monitor.last_beat - monitor.period)
        print(
            json.dumps(
                {
                    "aborted": f"RSS passed {spec['rss_limit_bytes'] / MIB:.0f} MiB",
                    "rss_before": rss_before,
                    "rss_peak": sampler.peak,
                    "cpu_seconds": process_cpu_seconds() - cpu_before,
                    "wall_seconds": time.time() - started,
                    "longest_stall": stall,
                    "received": {},
                    "started": started,
                }
            ),
            flush=True,
        )
        os._exit(0)

    sampler = RssSampler(limit_bytes=spec["rss_limit_bytes"], on_limit=abort)
    sampler.start()
    received: dict[str, tuple[float, str]] = {}
    end_time = started + spec["run_seconds"]
    triggers = _build_triggers(spec["variant"], task_ids, end_time, spec["poll_interval"])
    outcome = asyncio.run(_run_triggers(triggers, end_time, received, monitor))
    finished = max((at for at, _ in received.values()), default=time.time())
    cpu = process_cpu_seconds() - cpu_before
    peak = sampler.stop()
    log_file.close()
    print(
        json.dumps(
            {
                "rss_before": rss_before,
                "rss_peak": peak,
                "cpu_seconds": cpu,
                "wall_seconds": finished - started,
                "longest_stall": monitor.longest,
                "stalls_over_100ms": monitor.over_100ms,
                "received": received,
                "started": started,
                **outcome,
            }
        ),
        flush=True,
    )
    return 0


# -- the orchestrator ------------------------------------------------------------------------------------


def _sandbox_capacity(seconds: float) -> dict[str, Any] | None:
    """The sandbox's poll capacity, measured by ``sandbox_throughput.py`` (a bare client, one core)."""
    if seconds <= 0:
        return None
    import sandbox_throughput

    figures: dict[str, Any] = sandbox_throughput.run(
        seconds=seconds, concurrency=32, max_requests=1_000_000, tasks=50, processes=1, state_file=False, client="raw"
    )
    return figures


def _client_creation_cost() -> dict[str, float]:
    """CPU time and memory of creating one ``httpx.AsyncClient`` (the per-poll baseline pays this per poll)."""
    count = 50
    before_rss, before_cpu = rss_bytes(), process_cpu_seconds()
    clients = [httpx.AsyncClient() for _ in range(count)]
    cost = {
        "cpu_ms": (process_cpu_seconds() - before_cpu) / count * 1000,
        "kib": (rss_bytes() - before_rss) / count / 1024,
    }
    del clients
    return cost


def _measure(
    sandbox: Any, variant: str, n: int, gens: list[float], poll_interval: float, args: argparse.Namespace
) -> dict[str, Any]:
    """Run one worker and turn its raw figures and the sandbox's journal into one result row."""
    httpx.delete(f"{sandbox.url}/sandbox/tasks", timeout=30).raise_for_status()
    sandbox.clear_journal()
    with tempfile.TemporaryDirectory(prefix="kling-bench-") as tmp:
        spec = {
            "url": sandbox.url,
            "variant": variant,
            "generation_seconds": gens,
            "poll_interval": poll_interval,
            "run_seconds": max(gens) + 2 * poll_interval * 6 + 30,
            "rss_limit_bytes": args.rss_limit_mib * MIB,
            "gc_freeze": args.gc_freeze,
            "log_path": str(Path(tmp) / "trigger-log.jsonl"),
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        env["AIRFLOW_CONN_KLING_DEFAULT"] = connection_json(sandbox.url, max_polls_per_second=args.max_polls_per_second)
        load_at_start = os.getloadavg()[0]
        sandbox_cpu_before = process_cpu_seconds(sandbox.pid)
        begun = time.time()
        completed = subprocess.run(
            [sys.executable, __file__, "--worker", str(spec_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=spec["run_seconds"] + 300,
            check=False,
        )
        sandbox_busy = (process_cpu_seconds(sandbox.pid) - sandbox_cpu_before) / max(1e-9, time.time() - begun)
        log_path = Path(spec["log_path"])
        log_lines = log_path.read_bytes().count(b"\n") if log_path.exists() else 0
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"worker {variant} N={n} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    raw = json.loads(lines[-1])
    polls = len(sandbox.journal(kind="poll"))
    completes = {task["task_id"]: float(task["completes_at"]) for task in sandbox.tasks()}
    latencies = [
        at - completes[task_id]
        for task_id, (at, status) in raw["received"].items()
        if status in ("success", "failed") and task_id in completes
    ]
    cpu = raw["cpu_seconds"]
    return {
        "variant": variant,
        "n": n,
        "aborted": raw.get("aborted"),
        "poll_interval": poll_interval,
        "rss_mib": raw["rss_peak"] / MIB,
        "kib_per_trigger": (raw["rss_peak"] - raw["rss_before"]) / n / 1024,
        "cpu_seconds": cpu,
        "polls": polls,
        "cpu_ms_per_poll": cpu / polls * 1000 if polls else math.nan,
        "polls_per_second": polls / raw["wall_seconds"] if raw["wall_seconds"] > 0 else math.nan,
        "wall_seconds": raw["wall_seconds"],
        "stall_ms": raw["longest_stall"] * 1000,
        "detected": len(latencies),
        "latency_p50": percentile(latencies, 0.50),
        "latency_p95": percentile(latencies, 0.95),
        "latency_max": max(latencies, default=math.nan),
        "sandbox_busy": sandbox_busy,
        "log_lines": log_lines,
        "load_average": load_at_start,
    }


RESULT_COLUMNS = [
    Column("trigger", "variant"),
    Column("peak RSS MiB", "rss_mib", "{:.0f}"),
    Column("KiB/trigger", "kib_per_trigger", "{:.1f}"),
    Column("CPU ms/poll", "cpu_ms_per_poll", "{:.3f}"),
    Column("polls", "polls", "{:,}"),
    Column("polls/s", "polls_per_second", "{:.0f}"),
    Column("longest stall ms", "stall_ms", "{:.0f}"),
    Column("detected", "detected_of", "{}"),
    Column("latency p50 s", "latency_p50", "{:.2f}"),
    Column("p95 s", "latency_p95", "{:.2f}"),
    Column("max s", "latency_max", "{:.2f}"),
    Column("sandbox CPU", "sandbox_busy", "{:.0%}"),
]
RATIO_COLUMNS = [
    Column("N", "n", "{:,}"),
    Column("baseline", "variant"),
    Column("CPU/poll x", "cpu_ms_per_poll", "{:.1f}"),
    Column("peak RSS x", "rss_mib", "{:.2f}"),
    Column("memory/trigger x", "kib_per_trigger", "{:.1f}"),
    Column("longest stall x", "stall_ms", "{:.1f}"),
    Column("latency p95 x", "latency_p95", "{:.2f}"),
]


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ratios = []
    ours = {row["n"]: row for row in rows if row["variant"] == "kling"}
    for row in rows:
        mine = ours.get(row["n"])
        if row["variant"] == "kling" or mine is None:
            continue
        ratio: dict[str, Any] = {"n": row["n"], "variant": row["variant"]}
        for key in ("cpu_ms_per_poll", "rss_mib", "kib_per_trigger", "stall_ms", "latency_p95"):
            mine_value, theirs = mine.get(key), row.get(key)
            if isinstance(mine_value, float) and isinstance(theirs, float) and mine_value > 0 and not row["aborted"]:
                ratio[key] = theirs / mine_value
            else:
                ratio[key] = math.nan
        if row["aborted"]:
            ratio["variant"] = f"{row['variant']} (stopped: {row['aborted']})"
        ratios.append(ratio)
    return ratios


def _goals(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's goals, checked against the largest N measured."""
    ours = [row for row in rows if row["variant"] == "kling"]
    if not ours:
        return []
    top = max(ours, key=lambda row: row["n"])
    lines = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines.append(
        f"- {top['n']:,} concurrent triggers under 1 GiB RSS: {top['rss_mib']:.0f} MiB "
        f"({verdict(top['rss_mib'] < 1024)})"
    )
    lines.append(
        f"- no event-loop stall over 0.2 s at {top['n']:,}: longest {top['stall_ms']:.0f} ms "
        f"({verdict(top['stall_ms'] <= 200)})"
    )
    worst = max(ours, key=lambda row: row["cpu_ms_per_poll"])
    lines.append(
        f"- at most 0.5 ms CPU per poll: {min(r['cpu_ms_per_poll'] for r in ours):.3f}-"
        f"{worst['cpu_ms_per_poll']:.3f} ms over N ({verdict(worst['cpu_ms_per_poll'] <= 0.5)})"
    )
    to_thread = [r for r in _ratios(rows) if r["variant"] == "to-thread" and not math.isnan(r["cpu_ms_per_poll"])]
    if to_thread:
        least = min(r["cpu_ms_per_poll"] for r in to_thread)
        lines.append(f"- at least 3x less CPU per poll than to-thread: {least:.1f}x at worst ({verdict(least >= 3)})")
    return lines


def _plot(rows: list[dict[str, Any]], directory: Path) -> list[Path]:
    """PNG plots of peak RSS and CPU per poll against N (needs matplotlib, only with ``--plot``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for key, label, name in (
        ("rss_mib", "peak RSS of the process (MiB)", "triggerer_scale_memory.png"),
        ("cpu_ms_per_poll", "CPU time per poll (ms)", "triggerer_scale_cpu.png"),
    ):
        figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=110)
        stopped_label = "stopped at the RSS limit (figures up to the stop)"
        for index, variant in enumerate(VARIANTS):
            color = f"C{index}"
            mine = [row for row in rows if row["variant"] == variant]
            points = sorted((row["n"], row[key]) for row in mine if not row["aborted"])
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", color=color, label=variant)
            for row in mine:
                if row["aborted"]:
                    axis.scatter([row["n"]], [row[key]], marker="x", s=70, color=color, label=stopped_label)
                    stopped_label = "_nolegend_"
        if key == "rss_mib":
            axis.axhline(1024, color="grey", linestyle="--", linewidth=1, label="1 GiB goal")
        else:
            axis.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="0.5 ms goal")
            axis.set_yscale("log")
        axis.set_xscale("log")
        axis.set_xlabel("concurrent triggers (N)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="center right", fontsize=8)
        figure.tight_layout()
        path = directory / name
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run every (N, trigger) measurement, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 5000, 10000], help="trigger counts")
    parser.add_argument(
        "--generation-seconds", type=float, default=45.0, help="shortest generation time, s (default 45)"
    )
    parser.add_argument("--spread", type=float, default=0.5, help="generation times span G..G*(1+spread) (default 0.5)")
    parser.add_argument(
        "--poll-interval", type=float, default=5.0, help="the triggers' poll_interval, s, at small N (default 5)"
    )
    parser.add_argument(
        "--target-poll-rate",
        type=float,
        default=400.0,
        help="spread polls so N triggers poll at most about this often per second: poll_interval = "
        "max(--poll-interval, N / rate) (default 400, far below the sandbox's capacity)",
    )
    parser.add_argument(
        "--max-polls-per-second",
        type=float,
        default=100_000.0,
        help="the connection extra's shared rate limit (default 100000: high enough not to be the limiter)",
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="triggers to run")
    parser.add_argument(
        "--rss-limit-mib", type=int, default=2048, help="stop a run whose RSS passes this (default 2048)"
    )
    parser.add_argument(
        "--capacity-probe-seconds",
        type=float,
        default=3.0,
        help="measure the sandbox's capacity first with sandbox_throughput.py for this long (0: skip)",
    )
    parser.add_argument(
        "--vendor-latency",
        type=float,
        default=0.0,
        help="make every sandbox poll answer after this many seconds (its slow-answer chaos, no CPU), as a "
        "remote API would: shows what a thread pool or a connection pool caps (default 0)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="call gc.freeze() in each worker after start-up (Airflow's triggerer does not): moves the "
        "start-up objects out of the garbage collector's full collections",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the generation times (default 7)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--plot", type=Path, help="write PNG plots to this directory (needs matplotlib)")
    parser.add_argument(
        "--replot", type=Path, metavar="JSON", help="only redraw the --plot PNGs from a --json file of an earlier run"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.replot:
        if not args.plot:
            parser.error("--replot needs --plot DIR")
        for path in _plot(json.loads(args.replot.read_text())["rows"], args.plot):
            print(f"plot: {path}")
        return 0

    prepare_airflow_env()
    from airflow_provider_kling.sandbox import SandboxProcess

    started = time.strftime("%Y-%m-%d %H:%M %Z")
    print(f"# Triggerer scale benchmark, {started}")
    print(f"Machine: {machine_description()}")
    capacity = _sandbox_capacity(args.capacity_probe_seconds)
    if capacity is not None:
        per_cpu = capacity.get("requests_per_sandbox_cpu_second", "?")
        print(
            f"Sandbox capacity (sandbox_throughput.py, raw client): {capacity['requests_per_second']:,} polls/s, "
            f"{per_cpu} polls per sandbox CPU-second; target poll rate here: {args.target_poll_rate:g}/s"
        )
    creation = _client_creation_cost()
    print(f"One httpx client: {creation['cpu_ms']:.1f} ms CPU and {creation['kib']:.0f} KiB to create")
    from airflow_provider_kling.hooks._shared_clients import polls_in_flight

    print(
        f"kling: max_polls_per_second={args.max_polls_per_second:g} in the connection extra, so "
        f"{polls_in_flight(args.max_polls_per_second)} polls in flight at most; to-thread: "
        f"{min(32, (os.cpu_count() or 1) + 4)} threads (asyncio's default pool)"
    )
    print(
        f"Generation {args.generation_seconds:g}-{args.generation_seconds * (1 + args.spread):g} s; vendor latency "
        f"{args.vendor_latency:g} s; gc.freeze() after start-up: {'yes' if args.gc_freeze else 'no'}; RSS limit "
        f"per run {args.rss_limit_mib} MiB"
    )
    rows: list[dict[str, Any]] = []
    sandbox_pid = None
    with SandboxProcess(api_key=API_KEY, log_level="warning", journal_limit=5_000_000) as sandbox:
        sandbox_pid = sandbox.pid
        if args.vendor_latency > 0:
            sandbox.configure(rate_slow=1.0, slow_seconds=args.vendor_latency, chaos_scope="poll")
        for n in args.n:
            poll_interval = max(args.poll_interval, n / args.target_poll_rate)
            gens = generation_seconds(
                n, args.generation_seconds, args.generation_seconds * (1 + args.spread), seed=args.seed
            )
            spread = " (spread to keep the sandbox far from its capacity)" if poll_interval > args.poll_interval else ""
            print(
                f"\n## N = {n:,}: poll_interval {poll_interval:g} s{spread}, max_poll_interval {6 * poll_interval:g} s"
            )
            block = []
            for variant in args.variants:
                row = _measure(sandbox, variant, n, gens, poll_interval, args)
                row["detected_of"] = f"{row['detected']:,}/{n:,}" + (" stopped" if row["aborted"] else "")
                rows.append(row)
                block.append(row)
                stopped = f" ({row['aborted']})" if row["aborted"] else ""
                print(f"  {variant}: done in {row['wall_seconds']:.0f} s{stopped}", flush=True)
            print(markdown_table(RESULT_COLUMNS, block))
    print("\n## Ratios: baseline / kling (same run; above 1 means kling is better)")
    print(markdown_table(RATIO_COLUMNS, _ratios(rows)))
    goals = _goals(rows)
    if goals:
        print("\n## Goals")
        print("\n".join(goals))
    print(f"\nSandbox (pid {sandbox_pid}) stopped; load average at the end {os.getloadavg()[0]:.2f}")
    write_json(args.json, {"started": started, "machine": machine_description(), "args": vars(args), "rows": rows})
    if args.plot:
        for path in _plot(rows, args.plot):
            print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
