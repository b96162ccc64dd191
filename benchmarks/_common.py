"""Helpers shared by the benchmarks: Airflow environment, trigger logging, task submission, measurements.

Benchmarks are scripts (``python benchmarks/<name>.py``), so this module is imported as ``_common`` from
the benchmarks directory. It imports nothing from Airflow at import time: :func:`prepare_airflow_env` must
run first, because Airflow reads its configuration when it is first imported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

import httpx
import psutil

#: The only key the benchmark sandboxes accept (a made-up one: nothing leaves 127.0.0.1).
API_KEY = "benchmark-key"
MODEL = "kling-v3.0-std-t2v"
TASK_RESULT_PATH = "/v3/async/task-result"


def prepare_airflow_env() -> None:
    """A throwaway ``AIRFLOW_HOME`` and no examples or metadata DB, then Airflow imported with them.

    Call it before anything else imports Airflow, so Airflow reads these settings.
    """
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="kling-bench-airflow-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("_AIRFLOW_SKIP_DB_TESTS", "true")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    import airflow

    if tuple(int(part) for part in airflow.__version__.split(".")[:2]) < (3, 3):
        # Before 3.3 the environment-variable secrets backend builds an ORM Connection, which configures
        # every mapper and so needs every model imported: a triggerer has them, a bare process does not,
        # and the lookup then fails quietly ("connection 'kling_default' is not defined").
        import airflow.models

        airflow.models.import_all_models()


def connection_json(url: str, *, max_polls_per_second: float) -> str:
    """The value of ``AIRFLOW_CONN_KLING_DEFAULT`` for a sandbox at ``url``."""
    return json.dumps(
        {
            "conn_type": "kling",
            "host": url,
            "password": API_KEY,
            "extra": {"max_polls_per_second": max_polls_per_second},
        }
    )


def configure_trigger_logging(output: BinaryIO) -> None:
    """Log the way a triggerer's trigger-runner subprocess does: structlog JSON lines, INFO and up.

    The runner sends each line to its supervisor over a socket; here they go to ``output`` (a file), so
    the cost of formatting and writing a log line per poll is part of every measurement.
    """
    from airflow.sdk.log import configure_logging

    configure_logging(json_output=True, output=output, sending_to_supervisor=True, log_level="INFO")


def generation_seconds(count: int, low: float, high: float, *, seed: int) -> list[float]:
    """``count`` generation times drawn uniformly from ``[low, high]`` (seeded, so runs are comparable)."""
    rng = random.Random(seed)
    return [round(rng.uniform(low, high), 3) for _ in range(count)]


async def submit_tasks(url: str, seconds: Sequence[float], *, concurrency: int = 8) -> list[str]:
    """Create one sandbox task per entry of ``seconds`` (its generation time); return the task ids, in order.

    Each prompt carries a ``[sandbox:seconds=N]`` marker, so every task has its own generation time.
    """
    ids: list[str] = [""] * len(seconds)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(seconds)):
        queue.put_nowait(index)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # A generous timeout: on a busy shared machine the sandbox can take seconds to answer a burst.
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                body = {"prompt": f"benchmark task {index} [sandbox:seconds={seconds[index]}]"}
                for attempt in range(5):
                    try:
                        answer = await client.post(f"/v3/async/{MODEL}", json=body)
                        break
                    except httpx.TransportError:
                        # An overloaded machine makes the sandbox drop a connection now and then; the
                        # benchmark's own set-up retries it rather than failing the run.
                        if attempt == 4:
                            raise
                        await asyncio.sleep(1.0)
                answer.raise_for_status()
                ids[index] = answer.json()["task_id"]

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


class StallMonitor:
    """The longest stretch the event loop spent running callbacks without getting back to its selector.

    While the loop runs callbacks it cannot notice a timer that falls due or a socket that becomes
    readable: each stretch between two selector waits is a stall every trigger may have seen, and the
    longest one is the worst. Measured by timing each loop iteration from the moment its ``select``
    returns to the end of the iteration (two clock reads per iteration, a wrapper around the loop's own
    ``_run_once`` and its selector's ``select``).

    An earlier version measured the lateness of a coroutine sleeping 10 ms: the same figure, but its 100
    wake-ups a second cost about 23 ms of CPU per second on the benchmark machine, charged to every
    trigger measured (a third of a millisecond per poll at 90 polls/s). This one adds no wake-ups.
    """

    def __init__(self) -> None:
        self.longest = 0.0
        self.over_100ms = 0
        self.iterations = 0
        self._woke = 0.0
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def current(self) -> float:
        """How long the loop has been busy in the current iteration (0 while it waits): for a stalled loop."""
        return time.perf_counter() - self._woke if self._busy else 0.0

    def start(self) -> None:
        """Start timing the running loop's iterations."""
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        select, run_once = selector.select, loop._run_once  # type: ignore[attr-defined]
        clock = time.perf_counter

        def timed_select(timeout: float | None = None) -> Any:
            self._busy = False
            events = select(timeout)
            self._woke = clock()
            self._busy = True
            return events

        def timed_run_once() -> None:
            run_once()
            busy = clock() - self._woke
            self._busy = False
            self.iterations += 1
            if busy > self.longest:
                self.longest = busy
            if busy > 0.1:
                self.over_100ms += 1

        selector.select = timed_select
        loop._run_once = timed_run_once  # type: ignore[attr-defined]
        self._loop = loop

    async def stop(self) -> None:
        """Stop timing (the loop's own methods back)."""
        if self._loop is not None:
            del self._loop._selector.select  # type: ignore[attr-defined]
            del self._loop._run_once  # type: ignore[attr-defined]
            self._loop = None


class RssSampler(threading.Thread):
    """A thread sampling this process's RSS every ``interval`` seconds, keeping the peak.

    A thread, not a coroutine, so it keeps sampling while the event loop is stalled. Past ``limit_bytes``
    it calls ``on_limit`` once (the benchmark then stops the run before it can hurt the machine).
    """

    def __init__(self, *, interval: float = 0.25, limit_bytes: int | None = None, on_limit: Callable[[], None]):
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.limit_bytes = limit_bytes
        self.on_limit = on_limit
        self.peak = rss_bytes()
        self.limit_hit_at: float | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        """Sample until :meth:`stop`."""
        process = psutil.Process()
        while not self._stopped.wait(self.interval):
            rss = process.memory_info().rss
            self.peak = max(self.peak, rss)
            if self.limit_bytes is not None and rss > self.limit_bytes and self.limit_hit_at is None:
                self.limit_hit_at = time.time()
                self.on_limit()

    def stop(self) -> int:
        """Stop sampling; return the peak RSS in bytes."""
        self._stopped.set()
        self.join()
        self.peak = max(self.peak, rss_bytes())
        return self.peak


def rss_bytes() -> int:
    """This process's resident set size."""
    rss: int = psutil.Process().memory_info().rss
    return rss


def process_cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU time of a process (this one by default), all threads included."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def percentile(values: Iterable[float], share: float) -> float:
    """The ``share`` quantile (nearest rank) of ``values``; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


@dataclass
class Column:
    """One column of a printed table: its heading and how a value is shown."""

    heading: str
    key: str
    fmt: str = "{}"

    def show(self, row: dict[str, Any]) -> str:
        """The cell for ``row`` (``-`` when missing or not a number)."""
        value = row.get(self.key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return self.fmt.format(value)


def markdown_table(columns: Sequence[Column], rows: Iterable[dict[str, Any]], *, left: Collection[str] = ()) -> str:
    """A Markdown table (readable as plain text too); the columns whose keys are in ``left`` align left."""
    lines = [
        "| " + " | ".join(column.heading for column in columns) + " |",
        "|" + "|".join(":---" if column.key in left else "---:" for column in columns) + "|",
    ]
    lines += ["| " + " | ".join(column.show(row) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def machine_description() -> str:
    """CPU model, cores, memory, Python and load: what a reader needs to judge the figures."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at start {load}"
    )


def write_json(path: Path | str | None, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` (nothing when ``path`` is ``None``)."""
    if path is not None:
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


# ------------------------------------------------------------ benchmarks on a real Airflow stack


class Terminated(Exception):
    """SIGTERM arrived: unwind, so everything started is stopped."""


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    """The SIGTERM handler of a stack benchmark: raise :class:`Terminated`."""
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A fresh temporary directory, removed with all it holds on the way out."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--keep-logs``: where a stack benchmark writes its figures and keeps its logs."""
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--keep-logs",
        type=Path,
        default=None,
        help="copy AIRFLOW_HOME and the sandbox log here (always; by default only on failure, to a temp dir)",
    )


def progress_logger(started: float, *, quiet: bool) -> Callable[[str], None]:
    """A ``log(message)`` printing progress lines on stderr, stamped with the seconds since ``started``."""

    def log(message: str) -> None:
        if not quiet:
            print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    return log


def stop_stack(
    stack: Any, sandbox: Any, *, log: Callable[[str], None], keep: Path | None, failed: bool, prefix: str
) -> None:
    """Stop the stack (if it was built) and the sandbox, then keep their logs.

    The logs go to ``keep`` when given, else after a failure to a new temp dir named with ``prefix``.
    """
    if stack is not None:
        log("stopping the stack")
        stack.stop()
    sandbox.stop()
    keep = keep or (Path(tempfile.mkdtemp(prefix=prefix)) if failed else None)
    if keep is not None and stack is not None:
        stack.archive(keep / "airflow-home")
        if sandbox.log_path.exists():
            shutil.copy(sandbox.log_path, keep / "sandbox.log")
        print(f"logs kept in {keep}", file=sys.stderr, flush=True)  # even with --quiet


def print_ending(elapsed: float, error: BaseException | None) -> None:
    """The last lines of a stack benchmark's report: the load at the end, the run time and any error."""
    print(f"load average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; benchmark took {elapsed:.0f} s")
    if error is not None:
        print()
        print(f"ERROR: {type(error).__name__}: {textwrap.shorten(str(error), 2000)}")


def exit_status(error: BaseException | None, *, ok: bool) -> int:
    """The exit status: a signal's conventional 128 + N when one stopped the run, else 0 when ``ok``."""
    if isinstance(error, Terminated):
        return 128 + signal.SIGTERM
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 0 if ok else 1


def airflow_version() -> str:
    """The Airflow version the stack runs (from its package metadata: this process imports no Airflow)."""
    from importlib.metadata import PackageNotFoundError, version

    with contextlib.suppress(PackageNotFoundError):
        return version("apache-airflow")
    return "?"
