"""The benchmarks still run: each one, shrunk to seconds, completes and prints its tables.

Behaviour only: no figure is checked against a threshold (timings on a shared CI machine mean nothing).
Each benchmark runs as a subprocess, exactly as a user runs it, against its own sandbox on 127.0.0.1.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _trigger_runner_logging() -> bool:
    """Whether this Airflow has the Task SDK logging the benchmarks set up, as the 3.3 trigger runner does."""
    try:
        from airflow.sdk.log import configure_logging
    except ImportError:  # Airflow 2: no Task SDK
        return False
    return "json_output" in inspect.signature(configure_logging).parameters


# The benchmarks measure a triggerer's trigger runner as Airflow 3.3 builds it (structlog JSON lines sent
# to a supervisor); older versions have no such runner to imitate.
pytestmark = pytest.mark.skipif(
    not _trigger_runner_logging(),
    reason="the benchmarks imitate Airflow 3.3's trigger runner: airflow.sdk.log.configure_logging(json_output=...) "
    "does not exist on this Airflow",
)


def run_benchmark(script: str, *args: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return completed.stdout


@pytest.fixture(scope="module")
def triggerer_scale(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    results = tmp_path_factory.mktemp("bench") / "triggerer_scale.json"
    output = run_benchmark(
        "triggerer_scale.py",
        *("--n", "20", "--generation-seconds", "1", "--poll-interval", "0.3"),
        *("--capacity-probe-seconds", "0", "--json", str(results)),
    )
    return output, json.loads(results.read_text())


def test_triggerer_scale_prints_a_table_per_n_the_ratios_and_the_goals(triggerer_scale):
    output, _ = triggerer_scale

    for heading in ("# Triggerer scale benchmark", "## N = 20", "## Ratios: baseline / kling", "## Goals"):
        assert heading in output
    for column in ("peak RSS MiB", "KiB/trigger", "CPU ms/poll", "polls/s", "longest stall ms", "p95 s"):
        assert column in output


def test_triggerer_scale_runs_our_trigger_and_both_baselines_to_the_end(triggerer_scale):
    _, results = triggerer_scale

    rows = {row["variant"]: row for row in results["rows"]}
    assert set(rows) == {"kling", "to-thread", "client-per-poll"}
    assert rows["kling"]["detected"] == 20
    assert all(row["polls"] >= 20 for row in rows.values())


def test_polling_efficiency_compares_both_schedules(tmp_path: Path):
    results = tmp_path / "polling_efficiency.json"

    output = run_benchmark(
        "polling_efficiency.py",
        *("--tasks", "4", "--min-seconds", "20", "--max-seconds", "60", "--poll-interval", "20"),
        *("--time-scale", "0.05", "--json", str(results)),
    )

    for heading in ("# Polling efficiency benchmark", "## Polls and detection latency", "## Goal"):
        assert heading in output
    rows = {row["schedule"]: row for row in json.loads(results.read_text())["rows"]}
    assert set(rows) == {"eta-aware", "fixed"}
    assert all(row["detected"] == 4 for row in rows.values())
