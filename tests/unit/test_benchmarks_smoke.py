"""The benchmarks still run: each one, shrunk to seconds, completes and prints its tables.

Behaviour only: no figure is checked against a threshold (timings on a shared CI machine mean nothing).
Each benchmark runs as a subprocess, exactly as a user runs it, against its own sandbox on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO_ROOT / "benchmarks"


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
        timeout=900,  # six short workers for triggerer_scale; slack for a busy machine
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return completed.stdout


def _earlier_run(path: Path) -> Path:
    """A stand-in for an earlier run's --json: one row of our trigger per vendor latency of the smoke."""
    rows = [
        {
            "variant": "kling",
            "n": 20,
            "vendor_latency": latency,
            "aborted": None,
            "cpu_ms_per_poll": 50.0,
            "kib_per_trigger": 60.0,
            "stall_ms": 500.0,
            "latency_p95": 9.0,
        }
        for latency in (0.0, 0.02)
    ]
    path.write_text(json.dumps({"rows": rows}))
    return path


@pytest.fixture(scope="module")
def triggerer_scale(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    directory = tmp_path_factory.mktemp("bench")
    results = directory / "triggerer_scale.json"
    output = run_benchmark(
        "triggerer_scale.py",
        *("--n", "20", "--generation-seconds", "1", "--poll-interval", "0.3", "--vendor-latency", "0", "0.02"),
        *("--capacity-probe-seconds", "0", "--json", str(results)),
        *("--compare", str(_earlier_run(directory / "earlier.json"))),
    )
    return output, json.loads(results.read_text())


def test_triggerer_scale_prints_a_table_per_n_the_ratios_and_the_goals(triggerer_scale):
    output, _ = triggerer_scale

    for heading in (
        "# Triggerer scale benchmark",
        "## N = 20, vendor latency 0 ms",
        "## N = 20, vendor latency 20 ms",
        "## Ratios: baseline / kling",
        "## Before (",
        "## Goals",
    ):
        assert heading in output
    for column in ("peak RSS MiB", "KiB/trigger", "CPU ms/poll", "polls/s", "longest stall ms", "p95 s"):
        assert column in output


def test_triggerer_scale_runs_our_trigger_and_both_baselines_to_the_end(triggerer_scale):
    _, results = triggerer_scale

    rows = {(row["variant"], row["vendor_latency"]): row for row in results["rows"]}
    assert set(rows) == {
        (variant, latency) for variant in ("kling", "to-thread", "client-per-poll") for latency in (0, 0.02)
    }
    assert all(rows[("kling", latency)]["detected"] == 20 for latency in (0, 0.02))
    assert all(row["polls"] >= 20 for row in rows.values())


def test_triggerer_scale_compares_with_an_earlier_run_and_checks_p95_latency_against_it(triggerer_scale):
    output, _ = triggerer_scale

    before = output.split("## Before (", 1)[1].split("## Goals", 1)[0]
    assert before.count("| kling |") == 2  # one row per vendor latency the earlier run has
    assert "p95 detection latency no worse than the earlier run (N = 20, vendor latency 20 ms)" in output


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


def _load(name: str) -> ModuleType:
    """A benchmark module, imported from its file (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_real_triggerer_dag_maps_n_deferrable_generations_on_a_fixed_schedule():
    real_triggerer = _load("real_triggerer")
    namespace: dict = {}

    source = real_triggerer.render_dag(n=7, poll_interval=3.0, parallelism=2, timeout=900.0)
    exec(compile(source, "real_triggerer_dags.py", "exec"), namespace)

    dag = namespace["dag"]
    assert dag.dag_id == real_triggerer.DAG_ID
    generate = dag.task_dict["generate"]
    assert generate.partial_kwargs["deferrable"] is True
    assert generate.partial_kwargs["poll_interval"] == generate.partial_kwargs["max_poll_interval"] == 3.0
    assert len(generate.expand_input.value["prompt"]) == 7


def test_the_to_thread_baseline_is_built_from_our_triggers_serialized_kwargs():
    # The real-triggerer benchmark hands our trigger's rows of the trigger table to the baseline class.
    from airflow_provider_kling.triggers.kling import KlingTaskTrigger

    baseline_triggers = _load("baseline_triggers")
    _, kwargs = KlingTaskTrigger(kling_task_id="t-1", end_time=1e10, poll_interval=4, max_poll_interval=4).serialize()

    baseline = baseline_triggers.ToThreadTaskTrigger(**kwargs)

    classpath, rebuilt = baseline.serialize()
    assert classpath.endswith(".ToThreadTaskTrigger")
    assert rebuilt == {
        "kling_task_id": "t-1",
        "end_time": 1e10,
        "poll_interval": 4.0,
        "kling_conn_id": "kling_default",
        "max_poll_interval": 4.0,
    }


def test_real_triggerer_counts_cpu_of_processes_that_started_but_not_of_ones_that_ended():
    real_triggerer = _load("real_triggerer")

    spent = real_triggerer.cpu_between({1: 2.0, 2: 5.0}, {1: 2.5, 3: 0.25})

    assert spent == pytest.approx(0.75)


def test_real_triggerer_refuses_the_before_variant_without_a_source_directory():
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.real_triggerer", "--variants", "kling,kling-before"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 2
    assert "kling-before needs --before-src DIR" in completed.stderr
