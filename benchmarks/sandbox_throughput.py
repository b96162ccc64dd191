"""How many Task Result polls the bundled sandbox serves per second (one uvicorn worker, loopback).

Starts a sandbox with :class:`~airflow_provider_kling.sandbox.SandboxProcess`, submits a few tasks (half
finished, so their answers carry a freshly signed video URL, half still generating), then polls them
from ``httpx.AsyncClient`` workers with bounded concurrency for a bounded time. Prints the client-side
rate and latency percentiles, and the sandbox's own CPU time (psutil): httpx usually
saturates its own core first, so "requests per sandbox CPU-second" is the sandbox's capacity on one
core. ``--client raw`` swaps httpx for a bare asyncio HTTP/1.1 keep-alive client that is cheap enough to
keep the sandbox's core busy, which measures that capacity directly.

    python benchmarks/sandbox_throughput.py --seconds 10 --concurrency 8
    python benchmarks/sandbox_throughput.py --seconds 10 --concurrency 32 --client raw
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import psutil

from airflow_provider_kling.sandbox import SandboxProcess

FAKE_KEY = "benchmark-fake-key"


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid`` (``None`` once it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


async def _hammer(url: str, task_ids: list[str], seconds: float, max_requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    ids = itertools.cycle(task_ids)
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    async with httpx.AsyncClient(base_url=url, limits=limits, headers=headers, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
                started = time.perf_counter()
                answer = await client.get("/v3/async/task-result", params={"task_id": next(ids)})
                if answer.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        begun = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - begun
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed}


async def _hammer_raw(url: str, task_ids: list[str], seconds: float, max_requests: int, concurrency: int) -> dict:
    """The same load from a bare keep-alive HTTP/1.1 client: cheap enough to saturate the sandbox."""
    host, port = url.removeprefix("http://").split(":")
    requests = [
        f"GET /v3/async/task-result?task_id={task_id} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {FAKE_KEY}\r\nContent-Type: application/json\r\n\r\n".encode()
        for task_id in task_ids
    ]
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def connection(offset: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        for index in itertools.count(offset):
            if time.perf_counter() >= deadline or len(latencies) + errors >= max_requests:
                break
            started = time.perf_counter()
            writer.write(requests[index % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
        writer.close()

    begun = time.perf_counter()
    await asyncio.gather(*(connection(offset) for offset in range(concurrency)))
    return {"latencies": latencies, "errors": errors, "elapsed": time.perf_counter() - begun}


def _client_process(args: tuple[str, str, list[str], float, int, int]) -> dict:
    client, *rest = args
    hammer: Callable[..., Coroutine[Any, Any, dict]] = _hammer_raw if client == "raw" else _hammer
    return asyncio.run(hammer(*rest))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(
    *,
    seconds: float,
    concurrency: int,
    max_requests: int,
    tasks: int,
    processes: int,
    state_file: bool,
    client: str = "httpx",
) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        settings: dict[str, Any] = {"api_key": FAKE_KEY, "log_level": "warning"}
        if state_file:
            settings["state_file"] = Path(tmp) / "state.db"
        with SandboxProcess(**settings) as sandbox:
            assert sandbox.pid is not None
            headers = {"Authorization": f"Bearer {FAKE_KEY}"}
            task_ids = []
            for index in range(tasks):
                marker = "[sandbox:seconds=0]" if index % 2 == 0 else "[sandbox:seconds=86400]"
                answer = httpx.post(
                    f"{sandbox.url}/v3/async/kling-v3.0-std-t2v",
                    json={"prompt": f"benchmark {index} {marker}"},
                    headers=headers,
                )
                answer.raise_for_status()
                task_ids.append(answer.json()["task_id"])
            # Warm up (imports, first connections) outside the measurement.
            _client_process((client, sandbox.url, task_ids, 1.0, 2000, concurrency))
            cpu_before = _cpu_seconds(sandbox.pid)
            per_process = max(1, concurrency // processes)
            job = (client, sandbox.url, task_ids, seconds, max(1, max_requests // processes), per_process)
            if processes == 1:
                results = [_client_process(job)]
            else:
                with multiprocessing.get_context("spawn").Pool(processes) as pool:
                    results = pool.map(_client_process, [job] * processes)
            cpu_after = _cpu_seconds(sandbox.pid)
    latencies = [value for result in results for value in result["latencies"]]
    elapsed = max(result["elapsed"] for result in results)
    served = len(latencies)
    figures: dict[str, Any] = {
        "requests": served,
        "errors": sum(result["errors"] for result in results),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(served / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "client": client,
        "concurrency": concurrency,
        "client_processes": processes,
        "state_file": state_file,
        "cpu_count": os.cpu_count(),
    }
    if cpu_before is not None and cpu_after is not None and cpu_after > cpu_before:
        busy = cpu_after - cpu_before
        figures["sandbox_cpu_seconds"] = round(busy, 2)
        figures["sandbox_cpu_share"] = round(busy / elapsed, 2)
        figures["requests_per_sandbox_cpu_second"] = round(served / busy)
    return figures


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print a summary (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement time (default 10)")
    parser.add_argument("--requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks to submit and poll (default 200)")
    parser.add_argument("--processes", type=int, default=1, help="client processes (default 1)")
    parser.add_argument("--state-file", action="store_true", help="run the sandbox with a SQLite state file")
    parser.add_argument(
        "--client",
        choices=("httpx", "raw"),
        default="httpx",
        help="httpx.AsyncClient (default), or a bare asyncio HTTP/1.1 client that can saturate the sandbox",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(
        seconds=args.seconds,
        concurrency=args.concurrency,
        max_requests=args.requests,
        tasks=args.tasks,
        processes=args.processes,
        state_file=args.state_file,
        client=args.client,
    )
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{figures['requests']} task-result polls in {figures['seconds']} s: "
            f"{figures['requests_per_second']} req/s, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms "
            f"({figures['client']} client, concurrency {figures['concurrency']}, "
            f"{figures['client_processes']} client process(es), "
            f"errors {figures['errors']})"
        )
        if "sandbox_cpu_share" in figures:
            print(
                f"sandbox CPU busy {figures['sandbox_cpu_share']:.0%} of one core: "
                f"{figures['requests_per_sandbox_cpu_second']} requests per sandbox CPU-second"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
