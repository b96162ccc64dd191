"""N generations over two triggerers on Airflow's distributed deployment, with a triggerer killed mid-run.

Boots :class:`tools.distributed_stack.DistributedStack` (PostgreSQL, Redis, CeleryExecutor with two
workers, scheduler, dag-processor, api-server, two triggerers), the Kling sandbox and a second Redis for
the cluster-wide poll rate limit, all on 127.0.0.1. One DAG run maps ``--n`` generations
(``tests/e2e/dags_distributed/``: ``cluster_rate_limit``, one poll a second, on a ``kling`` connection
whose extra sets ``max_polls_per_second`` and ``rate_limit_storage_uri``). Once ``--kill-after`` of
them have been submitted, the triggerer holding the most triggers is SIGKILLed (its whole process
group). It prints:

* per triggerer: the triggers it ran (trigger log files per TriggererJob id), the polls it made (one
  progress line each in those files), its CPU time (its process tree, read just before the kill or
  at the end) and the CPU per poll;
* the failover delay: from the SIGKILL to the first poll of one of the dead triggerer's generations
  (the sandbox's journal; the dead process polls no more), and to the last of them polled again;
* the poll rate the sandbox saw in 10-second windows (max and mean) against the configured limit;
* duplicate submissions and generations that did not succeed (both should be 0).

    .venv/bin/python -m benchmarks.distributed                 # 300 generations (long on 2 cores)
    .venv/bin/python -m benchmarks.distributed --n 60 --json out.json

Every process is stopped by its PID (or process group) when the run ends, fails or is interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from airflow_provider_kling.sandbox.process import SandboxProcess  # noqa: E402
from benchmarks._common import API_KEY, machine_description, write_json  # noqa: E402
from tools.distributed_stack import DistributedStack, RedisServer  # noqa: E402

DAGS = REPO_ROOT / "tests" / "e2e" / "dags_distributed"
DAG_ID = "cluster_rate_limit"
SEED = 7_000_000
PROGRESS = "status="


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def windows(times: list[float], width: float = 10.0) -> list[float]:
    """Polls per second in every ``width``-second window starting at each whole second of the run."""
    if not times or times[-1] - times[0] < width:
        return []
    starts = [times[0] + s for s in range(int(times[-1] - times[0] - width) + 1)]
    return [sum(1 for t in times if s <= t < s + width) / width for s in starts]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Boot everything, run the generations, kill a triggerer, and measure; returns the figures."""
    limiter = RedisServer(Path(args.workdir) / "limiter-redis.log")
    limiter.start()
    sandbox = SandboxProcess(api_key=API_KEY, generation_seconds=args.generation_seconds)
    stack: DistributedStack | None = None
    try:
        sandbox.start()
        kling = json.loads(sandbox.airflow_connection(API_KEY))
        extra = {"max_polls_per_second": args.limit, "rate_limit_storage_uri": limiter.url(1)}
        stack = DistributedStack(
            dags_folder=DAGS,
            triggerer_health_check_threshold=args.health_check_threshold,
            connections={"kling_limited": json.dumps({**kling, "extra": extra})},
        )
        stack.boot()
        stack.wait_for_dag(DAG_ID, timeout=300)
        run_id = stack.trigger(DAG_ID, conf={"count": args.n, "seconds": args.generation_seconds, "seed": SEED})
        started = time.time()

        def submitted() -> dict[str, int]:
            found: dict[str, int] = {}
            for task in sandbox.tasks():
                seed = int((task.get("markers") or {}).get("seed") or -1)
                if SEED <= seed < SEED + args.n:
                    found[task["task_id"]] = seed - SEED
            return found

        stack.wait_for(lambda: len(submitted()) >= args.kill_after, args.timeout, "too few submissions", 2.0)
        names = {job: name for name, job in stack.triggerer_job_ids.items()}
        held: dict[str, set[str]] = {name: set() for name in stack.triggerer_job_ids}
        for row in stack.trigger_rows():
            for kling_id in submitted():
                if kling_id in row["kwargs"] and row["triggerer_id"] in names:
                    held[names[row["triggerer_id"]]].add(kling_id)
        victim = max(held, key=lambda name: len(held[name]))
        cpu = {name: tree_cpu_seconds(stack.procs[name].pid) for name in stack.triggerer_names}
        killed_at = time.time()
        stack.kill(victim)
        result = stack.wait_for_run(DAG_ID, run_id, timeout=args.timeout, poll_interval=5.0)
        for name in stack.triggerer_names:
            if name != victim:
                cpu[name] = tree_cpu_seconds(stack.procs[name].pid)
        ended = time.time()

        kling_ids = submitted()
        journal = sandbox.journal()
        polls = sorted(e["time"] for e in journal if e["kind"] == "poll" and e["task_id"] in kling_ids)
        submissions = [e for e in journal if e["kind"] == "submit" and e["status"] < 300]
        victim_polls = [e["time"] for e in journal if e["kind"] == "poll" and e["task_id"] in held[victim]]
        firsts: dict[str, float] = {}
        for e in journal:
            if e["kind"] == "poll" and e["task_id"] in held[victim] and e["time"] > killed_at:
                firsts.setdefault(e["task_id"], e["time"])
        per_triggerer: dict[str, dict[str, Any]] = {}
        jobs = {name: job for name, job in stack.triggerer_job_ids.items()}
        for name, job in jobs.items():
            triggers = polls_made = 0
            for n in range(args.n):
                path = stack.task_log_dir(DAG_ID, run_id, "generate", n) / f"attempt=1.log.trigger.{job}.log"
                if path.exists():
                    triggers += 1
                    polls_made += sum(1 for line in path.read_text(errors="replace").splitlines() if PROGRESS in line)
            per_triggerer[name] = {
                "job_id": job,
                "triggers_run": triggers,
                "held_at_kill": len(held[name]),
                "polls": polls_made,
                "cpu_seconds": round(cpu[name], 2),
                "cpu_ms_per_poll": round(1000 * cpu[name] / polls_made, 2) if polls_made else None,
            }
        rates = windows(polls)
        states = [ti.state for ti in result.task_instances if ti.task_id == "generate"]
        return {
            "machine": machine_description(),
            "n": args.n,
            "generation_seconds": args.generation_seconds,
            "health_check_threshold_s": args.health_check_threshold,
            "limit_polls_per_second": args.limit,
            "run_state": result.state,
            "run_seconds": round(ended - started, 1),
            "not_succeeded": sum(1 for s in states if s != "success"),
            "submissions": len(submissions),
            "duplicate_submissions": len(submissions) - len(kling_ids),
            "triggerers": per_triggerer,
            "killed": victim,
            "failover_first_poll_s": round(min(firsts.values()) - killed_at, 1) if firsts else None,
            "failover_all_polled_s": round(max(firsts.values()) - killed_at, 1) if firsts else None,
            "victim_generations_polled_again": f"{len(firsts)}/{len(held[victim])}",
            "victim_polls_before_kill": sum(1 for t in victim_polls if t <= killed_at),
            "poll_rate_max_10s": round(max(rates), 2) if rates else None,
            "poll_rate_mean_10s": round(sum(rates) / len(rates), 2) if rates else None,
            "polls": len(polls),
        }
    finally:
        if stack is not None:
            stack.stop()
            if args.keep_logs:
                stack.archive(Path(args.keep_logs))
            stack.cleanup()
        sandbox.stop()
        limiter.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run once, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=300, help="generations (default 300)")
    parser.add_argument("--generation-seconds", type=float, default=120.0)
    parser.add_argument("--limit", type=float, default=5.0, help="max_polls_per_second (cluster-wide)")
    parser.add_argument("--health-check-threshold", type=float, default=15.0)
    parser.add_argument("--kill-after", type=int, default=None, help="submissions before the kill (default n/2)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--workdir", default="/tmp")
    parser.add_argument("--keep-logs", default=None, help="copy the stack's AIRFLOW_HOME here at the end")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    args.kill_after = args.kill_after or max(1, args.n // 2)
    figures = run(args)
    print(json.dumps(figures, indent=2))
    write_json(args.json, figures)
    return 0 if figures["run_state"] == "success" and figures["duplicate_submissions"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
