"""How many KlingTaskTriggers one triggerer process holds, and what each poll costs.

For each N, a fresh worker process does what a triggerer's trigger-runner does: it builds N triggers and
runs each ``trigger.run()`` as an asyncio task in one event loop, logging structlog JSON lines to a file,
while the bundled sandbox (another process, 127.0.0.1) plays the vendor. The worker submits the N
sandbox tasks itself (each with its own generation time, drawn uniformly from ``[G, G*(1+spread)]``),
then starts every trigger at once, as a restarted triggerer would, and waits for every event.

Three triggers run the same load, each in its own worker process:

* ``kling``: :class:`~airflow_provider_kling.triggers.kling.KlingTaskTrigger` (one shared
  aiohttp connection pool and rate limiter per connection and event loop).
* ``to-thread``: a baseline written the way most providers do it: a blocking ``httpx.Client`` call in
  ``asyncio.to_thread`` per poll. It is given the kindest form of that pattern, one client shared by
  every trigger; a client per trigger (a hook per trigger) would add the cost printed as "one httpx
  client" on top.
* ``client-per-poll``: the other common pattern, a new ``httpx.AsyncClient`` for every poll.

Both baselines use the same schedule (:func:`~airflow_provider_kling.polling.next_poll_delay`), parse
the same model and log the same line per poll, so the differences are the HTTP plumbing alone.

Printed per N and trigger: peak RSS and memory per trigger (RSS growth over N), CPU time per poll (the
worker's CPU time over the polls the sandbox journal counted), polls per second, the longest event-loop
stall (the longest loop iteration: :class:`_common.StallMonitor`) and the detection latency (the
sandbox's ``completes_at`` to the event reaching the runner: p50, p95, max). Then the ratios baseline /
kling from the same run.

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
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    API_KEY,
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
# In baseline_triggers.py (the real-triggerer benchmark runs them too). Imported lazily: that module
# imports Airflow, which must not be imported before prepare_airflow_env().


def _baseline_classes() -> dict[str, type[Any]]:
    from baseline_triggers import BASELINES

    return dict(BASELINES)


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
        stall = max(monitor.longest, monitor.current())
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
    sandbox: Any,
    variant: str,
    n: int,
    gens: list[float],
    poll_interval: float,
    latency: float,
    args: argparse.Namespace,
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
        command = [sys.executable, __file__, "--worker", str(spec_path)]
        profile_path = None
        if args.profile is not None and variant == "kling":
            args.profile.mkdir(parents=True, exist_ok=True)
            profile_path = args.profile / f"kling-n{n}-latency{latency * 1000:g}ms.txt"
            # pyinstrument samples the worker's main thread every 1 ms; its own cost lands in the figures.
            command[1:1] = ["-m", "pyinstrument", "--renderer", "text", "--show-all", "-o", str(profile_path)]
        load_at_start = os.getloadavg()[0]
        sandbox_cpu_before = process_cpu_seconds(sandbox.pid)
        begun = time.time()
        completed = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=spec["run_seconds"] + 300,
            check=False,
        )
        sandbox_busy = (process_cpu_seconds(sandbox.pid) - sandbox_cpu_before) / max(1e-9, time.time() - begun)
        log_path = Path(spec["log_path"])
        log_bytes = log_path.read_bytes() if log_path.exists() else b""
        log_lines = log_bytes.count(b"\n")
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        # Airflow's logging set-up sends the worker's own errors to its log file, not to stderr.
        log_tail = log_bytes[-3000:].decode(errors="replace")
        raise RuntimeError(
            f"worker {variant} N={n} failed ({completed.returncode}):\n{completed.stderr[-3000:]}\n{log_tail}"
        )
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
        "vendor_latency": latency,
        "aborted": raw.get("aborted"),
        "poll_interval": poll_interval,
        "asked_polls_per_second": n / poll_interval,
        "rss_mib": raw["rss_peak"] / MIB,
        "kib_per_trigger": (raw["rss_peak"] - raw["rss_before"]) / n / 1024,
        "cpu_seconds": cpu,
        "polls": polls,
        "cpu_ms_per_poll": cpu / polls * 1000 if polls else math.nan,
        "polls_per_second": polls / raw["wall_seconds"] if raw["wall_seconds"] > 0 else math.nan,
        "wall_seconds": raw["wall_seconds"],
        "stall_ms": raw["longest_stall"] * 1000,
        "stalls_over_100ms": raw.get("stalls_over_100ms"),
        "gc_freeze": args.gc_freeze,
        "detected": len(latencies),
        "latency_p50": percentile(latencies, 0.50),
        "latency_p95": percentile(latencies, 0.95),
        "latency_max": max(latencies, default=math.nan),
        "sandbox_busy": sandbox_busy,
        "log_lines": log_lines,
        "load_average": load_at_start,
        "profile": str(profile_path) if profile_path else None,
    }


def _poll_interval(n: int, latency: float, args: argparse.Namespace) -> float:
    """``poll_interval`` for N triggers: polls spread to at most the target rate, less for a slow vendor.

    With a slow vendor the rate asked is also kept to three quarters of what our trigger's polls in
    flight can carry (``in_flight / latency``), so our trigger keeps up with its schedule; the
    ``to_thread`` baseline's thread pool may not, and then it falls behind (its polls/s show it).
    """
    from airflow_provider_kling.hooks._shared_clients import polls_in_flight

    rate = args.target_poll_rate
    if latency > 0:
        rate = min(rate, 0.75 * polls_in_flight(args.max_polls_per_second) / latency)
    return max(args.poll_interval, n / rate)


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
    Column("load", "load_average", "{:.2f}"),
]
RATIO_COLUMNS = [
    Column("N", "n", "{:,}"),
    Column("vendor latency ms", "latency_ms", "{:g}"),
    Column("baseline", "variant"),
    Column("CPU/poll x", "cpu_ms_per_poll", "{:.2f}"),
    Column("peak RSS x", "rss_mib", "{:.2f}"),
    Column("memory/trigger x", "kib_per_trigger", "{:.1f}"),
    Column("longest stall x", "stall_ms", "{:.1f}"),
    Column("latency p95 x", "latency_p95", "{:.2f}"),
]
COMPARE_COLUMNS = [
    Column("N", "n", "{:,}"),
    Column("vendor latency ms", "latency_ms", "{:g}"),
    Column("trigger", "variant"),
    Column("CPU ms/poll before", "cpu_before", "{:.3f}"),
    Column("after", "cpu_after", "{:.3f}"),
    Column("x", "cpu_x", "{:.2f}"),
    Column("KiB/trigger before", "kib_before", "{:.1f}"),
    Column("after", "kib_after", "{:.1f}"),
    Column("stall ms before", "stall_before", "{:.0f}"),
    Column("after", "stall_after", "{:.0f}"),
    Column("p95 s before", "p95_before", "{:.2f}"),
    Column("after", "p95_after", "{:.2f}"),
]


def _key(row: dict[str, Any]) -> tuple[int, float]:
    return row["n"], float(row.get("vendor_latency", 0.0))


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ratios = []
    ours = {_key(row): row for row in rows if row["variant"] == "kling"}
    for row in rows:
        mine = ours.get(_key(row))
        if row["variant"] == "kling" or mine is None:
            continue
        ratio: dict[str, Any] = {
            "n": row["n"],
            "latency_ms": 1000 * float(row.get("vendor_latency", 0.0)),
            "variant": row["variant"],
        }
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


def _compare(rows: list[dict[str, Any]], earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Before (an earlier run's JSON) and after (this run), per trigger, N and vendor latency."""
    before = {(row["variant"], *_key(row)): row for row in earlier if not row.get("aborted")}
    table = []
    for row in rows:
        old = before.get((row["variant"], *_key(row)))
        if old is None or row["aborted"]:
            continue
        table.append(
            {
                "n": row["n"],
                "latency_ms": 1000 * float(row.get("vendor_latency", 0.0)),
                "variant": row["variant"],
                "cpu_before": old["cpu_ms_per_poll"],
                "cpu_after": row["cpu_ms_per_poll"],
                "cpu_x": old["cpu_ms_per_poll"] / row["cpu_ms_per_poll"] if row["cpu_ms_per_poll"] else math.nan,
                "kib_before": old["kib_per_trigger"],
                "kib_after": row["kib_per_trigger"],
                "stall_before": old["stall_ms"],
                "stall_after": row["stall_ms"],
                "p95_before": old["latency_p95"],
                "p95_after": row["latency_p95"],
            }
        )
    return table


#: The goals this benchmark reports against.
CPU_GOAL_MS = 0.35
CPU_RATIO_GOAL, CPU_RATIO_STRETCH = 2.5, 4.0
STALL_GOAL_MS = 100.0
MEMORY_GOAL_KIB = 6.0
GOAL_MIN_N = 1000


def _goals(rows: list[dict[str, Any]], earlier: list[dict[str, Any]] | None = None) -> list[str]:
    """The goals, checked against this run: CPU per poll and its ratio at N >= 1,000, stall and memory
    at the largest N, and (given an earlier run) p95 detection latency no worse than before."""
    ours = [row for row in rows if row["variant"] == "kling" and not row["aborted"]]
    if not ours:
        return []
    lines = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    big = [row for row in ours if row["n"] >= GOAL_MIN_N] or ours
    scope = f"N >= {GOAL_MIN_N:,}" if big is not ours else f"N = {max(r['n'] for r in ours):,} (below {GOAL_MIN_N:,})"
    for row in sorted(big, key=_key):
        where = f"N = {row['n']:,}, vendor latency {1000 * row.get('vendor_latency', 0.0):g} ms"
        lines.append(
            f"- at most {CPU_GOAL_MS} ms CPU per poll ({where}): {row['cpu_ms_per_poll']:.3f} ms "
            f"({verdict(row['cpu_ms_per_poll'] <= CPU_GOAL_MS)})"
        )
    big_keys = {_key(row) for row in big}
    for ratio in _ratios(rows):
        if ratio["variant"] != "to-thread" or (ratio["n"], ratio["latency_ms"] / 1000) not in big_keys:
            continue
        value = ratio["cpu_ms_per_poll"]
        if math.isnan(value):
            continue
        stretch = " (stretch 4x: met)" if value >= CPU_RATIO_STRETCH else " (stretch 4x: missed)"
        lines.append(
            f"- at least {CPU_RATIO_GOAL}x less CPU per poll than to-thread (N = {ratio['n']:,}, vendor latency "
            f"{ratio['latency_ms']:g} ms): {value:.2f}x ({verdict(value >= CPU_RATIO_GOAL)}){stretch}"
        )
    top_n = max(row["n"] for row in ours)
    for row in sorted((r for r in ours if r["n"] == top_n), key=_key):
        freeze = "with gc.freeze()" if row.get("gc_freeze") else "without gc.freeze()"
        where = f"N = {top_n:,}, vendor latency {1000 * row.get('vendor_latency', 0.0):g} ms, {freeze}"
        lines.append(
            f"- longest event-loop stall at most {STALL_GOAL_MS:.0f} ms ({where}): {row['stall_ms']:.0f} ms "
            f"({verdict(row['stall_ms'] <= STALL_GOAL_MS and not row.get('gc_freeze'))})"
        )
        lines.append(
            f"- memory per trigger at most {MEMORY_GOAL_KIB:g} KiB ({where}): {row['kib_per_trigger']:.1f} KiB "
            f"({verdict(row['kib_per_trigger'] <= MEMORY_GOAL_KIB)})"
        )
    if earlier:
        for row in _compare(rows, earlier):
            if row["variant"] != "kling":
                continue
            lines.append(
                f"- p95 detection latency no worse than the earlier run (N = {row['n']:,}, vendor latency "
                f"{row['latency_ms']:g} ms): {row['p95_after']:.2f} s against {row['p95_before']:.2f} s "
                f"({verdict(row['p95_after'] <= row['p95_before'] * 1.02)}: within 2 %)"
            )
    lines.insert(0, f"(CPU goals checked at {scope})")
    return lines


def _plot(rows: list[dict[str, Any]], directory: Path, earlier: list[dict[str, Any]] | None = None) -> list[Path]:
    """PNG plots (needs matplotlib, only with ``--plot``).

    Peak RSS and CPU per poll against N, at the vendor latency measured at the most N; with several vendor
    latencies also CPU per poll against the latency, per N >= 1,000 (and the earlier run's, dashed, when
    given).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    # Against N at the vendor latency measured at the most N (the lowest of those): one run can sweep
    # the latencies at one N and the N at another latency.
    latencies = {float(row.get("vendor_latency", 0.0)) for row in rows}
    lowest = min(
        latencies, key=lambda lat: (-len({row["n"] for row in rows if row.get("vendor_latency", 0.0) == lat}), lat)
    )
    by_n = [row for row in rows if float(row.get("vendor_latency", 0.0)) == lowest]
    for key, label, name in (
        ("rss_mib", "peak RSS of the process (MiB)", "triggerer_scale_memory.png"),
        ("cpu_ms_per_poll", "CPU time per poll (ms)", "triggerer_scale_cpu.png"),
    ):
        figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=110)
        stopped_label = "stopped at the RSS limit (figures up to the stop)"
        for index, variant in enumerate(VARIANTS):
            color = f"C{index}"
            mine = [row for row in by_n if row["variant"] == variant]
            points = sorted((row["n"], row[key]) for row in mine if not row["aborted"])
            if len({n for n, _ in points}) > 1:
                axis.plot(*zip(*points, strict=True), marker="o", color=color, label=variant)
            elif points:
                axis.scatter(*zip(*points, strict=True), marker="o", color=color, label=variant)
            for row in mine:
                if row["aborted"]:
                    axis.scatter([row["n"]], [row[key]], marker="x", s=70, color=color, label=stopped_label)
                    stopped_label = "_nolegend_"
        if key == "rss_mib":
            axis.axhline(1024, color="grey", linestyle="--", linewidth=1, label="1 GiB goal")
        else:
            axis.axhline(CPU_GOAL_MS, color="grey", linestyle="--", linewidth=1, label=f"{CPU_GOAL_MS} ms goal")
            axis.set_yscale("log")
        axis.set_xscale("log")
        axis.set_xlabel(f"concurrent triggers (N); vendor latency {lowest * 1000:g} ms")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="best", fontsize=8)
        figure.tight_layout()
        path = directory / name
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    if len({float(row.get("vendor_latency", 0.0)) for row in [*rows, *(earlier or [])]}) > 1:
        figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=110)
        for runs, style, suffix in ((earlier or [], "--", " (before)"), (rows, "-", "")):
            for index, variant in enumerate(VARIANTS):
                for n in sorted({row["n"] for row in runs if row["n"] >= GOAL_MIN_N}):
                    points = sorted(
                        (1000 * float(row.get("vendor_latency", 0.0)), row["cpu_ms_per_poll"])
                        for row in runs
                        if row["variant"] == variant and row["n"] == n and not row.get("aborted")
                    )
                    if points:
                        axis.plot(
                            *zip(*points, strict=True),
                            marker="o",
                            linestyle=style,
                            color=f"C{index}",
                            label=f"{variant}, N = {n:,}{suffix}",
                        )
        axis.axhline(CPU_GOAL_MS, color="grey", linestyle=":", linewidth=1, label=f"{CPU_GOAL_MS} ms goal")
        axis.set_xlabel("vendor latency (ms)")
        axis.set_ylabel("CPU time per poll (ms)")
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="best", fontsize=7)
        figure.tight_layout()
        path = directory / "triggerer_scale_latency.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run every (vendor latency, N, trigger) measurement, print the tables."""
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
        "max(--poll-interval, N / rate) (default 400, far below the sandbox's capacity); with a vendor "
        "latency L the rate is also kept to 0.75 x our polls in flight / L",
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
        nargs="+",
        default=[0.0],
        help="seconds the sandbox holds every poll before answering (its slow-answer chaos, no CPU), as a "
        "remote API would; several values run the whole set of N at each (e.g. 0 0.05 0.2; default 0)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="call gc.freeze() in each worker after start-up (Airflow's triggerer does not): moves the "
        "start-up objects out of the garbage collector's full collections",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run our trigger's workers under pyinstrument and write each text profile to DIR (the "
        "profiler's overhead is then in that trigger's figures: use a separate run for those)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="JSON",
        help="an earlier run's --json: print a before/after table and check p95 latency against it",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the generation times (default 7)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--plot", type=Path, help="write PNG plots to this directory (needs matplotlib)")
    parser.add_argument(
        "--replot",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="only redraw the --plot PNGs from the --json files of earlier runs (their rows together)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    earlier = json.loads(args.compare.read_text())["rows"] if args.compare else None
    if args.replot:
        if not args.plot:
            parser.error("--replot needs --plot DIR")
        rows = [row for path in args.replot for row in json.loads(path.read_text())["rows"]]
        for path in _plot(rows, args.plot, earlier):
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
    latencies = ", ".join(f"{value * 1000:g}" for value in args.vendor_latency)
    print(
        f"Generation {args.generation_seconds:g}-{args.generation_seconds * (1 + args.spread):g} s; vendor latency "
        f"{latencies} ms; gc.freeze() after start-up: {'yes' if args.gc_freeze else 'no'}; RSS limit "
        f"per run {args.rss_limit_mib} MiB"
    )
    rows: list[dict[str, Any]] = []
    sandbox_pid = None
    with SandboxProcess(api_key=API_KEY, log_level="warning", journal_limit=5_000_000, startup_timeout=120) as sandbox:
        sandbox_pid = sandbox.pid
        for latency in args.vendor_latency:
            if latency > 0:
                sandbox.configure(rate_slow=1.0, slow_seconds=latency, chaos_scope="poll")
            else:
                sandbox.configure(rate_slow=0.0)
            for n in args.n:
                poll_interval = _poll_interval(n, latency, args)
                gens = generation_seconds(
                    n, args.generation_seconds, args.generation_seconds * (1 + args.spread), seed=args.seed
                )
                spread = (
                    " (spread to keep the sandbox and our polls in flight far from their capacity)"
                    if poll_interval > args.poll_interval
                    else ""
                )
                print(
                    f"\n## N = {n:,}, vendor latency {latency * 1000:g} ms: poll_interval {poll_interval:g} s"
                    f"{spread}, max_poll_interval {6 * poll_interval:g} s, {n / poll_interval:.0f} polls/s asked"
                )
                block = []
                for variant in args.variants:
                    row = _measure(sandbox, variant, n, gens, poll_interval, latency, args)
                    row["detected_of"] = f"{row['detected']:,}/{n:,}" + (" stopped" if row["aborted"] else "")
                    rows.append(row)
                    block.append(row)
                    stopped = f" ({row['aborted']})" if row["aborted"] else ""
                    print(f"  {variant}: done in {row['wall_seconds']:.0f} s{stopped}", flush=True)
                print(markdown_table(RESULT_COLUMNS, block))
    print("\n## Ratios: baseline / kling (same run; above 1 means kling is better)")
    print(markdown_table(RATIO_COLUMNS, _ratios(rows)))
    if earlier is not None:
        print(f"\n## Before ({args.compare}) and after (this run)")
        print(markdown_table(COMPARE_COLUMNS, _compare(rows, earlier)))
    goals = _goals(rows, earlier)
    if goals:
        print("\n## Goals")
        print("\n".join(goals))
    print(f"\nSandbox (pid {sandbox_pid}) stopped; load average at the end {os.getloadavg()[0]:.2f}")
    write_json(args.json, {"started": started, "machine": machine_description(), "args": vars(args), "rows": rows})
    if args.plot:
        for path in _plot(rows, args.plot, earlier):
            print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
