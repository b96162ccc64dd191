"""``make demo``: the example content pipeline on a real local Airflow 3.3, against the Kling sandbox.

Starts the sandbox (a local stand-in for the Kling API) and an Airflow stack (api-server, scheduler,
dag-processor, triggerer; LocalExecutor, SQLite, 2 worker slots), runs
``example_dags/example_kling_content_pipeline.py`` end to end, prints where each video was stored and
how long it took, waits for ``example_kling_publish_videos`` (scheduled on the videos' asset) to verify
them, and stops everything it started, also on Ctrl-C or an error. Logs and videos stay in ``.demo/``.

Run from the repository root: ``python -m tools.demo [--prompt TEXT ...] [--keep-running]``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from airflow_provider_kling.sandbox.process import SandboxProcess
from tools.airflow_stack import REPO_ROOT, TERMINAL_RUN_STATES, AirflowStack, AirflowStackError, RunResult

DAG_ID = "example_kling_content_pipeline"
PUBLISH_DAG_ID = "example_kling_publish_videos"
PUBLISH_TIMEOUT = 120.0
DEMO_DIR = REPO_ROOT / ".demo"
API_KEY = "sandbox-key"  # the sandbox's fake key; a real run puts a Novita key in the connection
#: The connection list's Test button runs the hook's ``test_connection`` inside the API server. Airflow
#: disables it by default (a test reaches whatever host the form names); the demo is a local sandbox,
#: so it is on: add a ``kling`` connection in the UI and press Test.
DEMO_ENV = {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the process exit code (0 when every video was generated, stored and published)."""
    args = _parse_args(argv)
    started = time.monotonic()
    # Ctrl-C and SIGTERM (e.g. from a CI runner) unwind through the context managers, which stop every
    # process. SIGINT is set explicitly because a shell starts background jobs with it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    home = DEMO_DIR / "airflow-home"
    ok = False
    try:
        with SandboxProcess(
            api_key=API_KEY, generation_seconds=args.generation_seconds, log_path=DEMO_DIR / "sandbox.log"
        ) as sandbox:
            print(f"Kling sandbox listening on {sandbox.url} (a video takes {args.generation_seconds:g} s)")
            print("Booting Airflow 3.3 (api-server, scheduler, dag-processor, triggerer; 2 worker slots)...")
            stack = AirflowStack(
                home=home,
                parallelism=2,
                connections={"kling_default": sandbox.airflow_connection(API_KEY)},
                env=DEMO_ENV,
            )
            with stack:
                print(f"Airflow ready in {stack.boot_seconds:.1f} s at {stack.base_url}")
                # The demo runs unattended: the example's human review step is switched off (it has its own
                # end-to-end test, tests/e2e/test_review_step.py).
                conf: dict[str, Any] = {"review": False, **({"prompts": args.prompt} if args.prompt else {})}
                print(f"Running {DAG_ID}...")
                result = stack.run(DAG_ID, conf=conf, timeout=args.timeout)
                ok = _report(stack, result) and _report_publishing(stack, result)
                if args.keep_running:
                    print(f"\nAirflow UI: {stack.base_url} (no login needed). Ctrl-C stops everything.")
                    while True:
                        time.sleep(3600)
                print("Stopping Airflow and the sandbox...")
    except KeyboardInterrupt:
        print("\nInterrupted: everything the demo started has been stopped.")
        return 130
    print(
        f"Demo finished in {time.monotonic() - started:.1f} s. Logs: {home.relative_to(REPO_ROOT)}/, "
        f"videos: {home.relative_to(REPO_ROOT)}/kling_videos/"
    )
    return 0 if ok else 1


def _report(stack: AirflowStack, result: RunResult) -> bool:
    """Print where each video was stored and how long it took; return whether the run succeeded."""
    mapped = sorted((ti for ti in result.task_instances if ti.task_id == "generate"), key=lambda t: t.map_index)
    print(f"Run {result.state} in {result.seconds:.1f} s: {len(mapped)} video(s)\n")
    render_total = 0.0
    for n, ti in enumerate(mapped, start=1):
        prompt = ti.raw.get("rendered_fields", {}).get("prompt") or ti.raw.get("rendered_map_index") or "?"
        print(f"{n:3}. {prompt}")
        if ti.state != "success":
            print(f"     {ti.state}: see {stack.task_log_dir(result.dag_id, result.run_id, 'generate', ti.map_index)}")
            continue
        video = stack.xcom(result.dag_id, result.run_id, "generate", map_index=ti.map_index)
        render = _seconds_between(video.get("submit_time_ms"), video.get("complete_time_ms"))
        render_total += render or 0.0
        for stored in video.get("stored", []):
            size, digest = stored["size_bytes"], stored["sha256"]
            print(f"     stored: {_where(stored['uri'])} ({size:,} bytes, sha256 {digest[:12]}...)")
            print(f"     sidecar: {_where(stored['sidecar_uri'])}")
        rendered = f"rendered in {render:.1f} s" if render is not None else "rendered"
        print(
            f"     {rendered} by Kling (task {video['kling_task_id']}); "
            f"the Airflow task took {ti.raw['duration']:.1f} s, copy included"
        )
    if result.state == "success" and len(mapped) > 1:
        print(
            f"\n{len(mapped)} videos in {result.seconds:.1f} s, all rendering at once; "
            f"one after another they would have taken {render_total:.0f} s of rendering alone."
        )
    return result.state == "success"


def _report_publishing(stack: AirflowStack, result: RunResult) -> bool:
    """Wait for the asset-scheduled publish DAG to handle this run's videos; print what it verified."""
    events: list[dict[str, Any]] = []
    runs: set[str] = set()

    def all_published() -> bool:
        events[:] = stack.asset_events(source_dag_id=result.dag_id, source_run_id=result.run_id)
        runs.clear()
        runs.update(run["run_id"] for event in events for run in event["created_dagruns"])
        return all(event["created_dagruns"] for event in events) and all(
            stack.run_state(PUBLISH_DAG_ID, run) in TERMINAL_RUN_STATES for run in runs
        )

    print(f"\nWaiting for {PUBLISH_DAG_ID} (scheduled on the videos' asset)...")
    try:
        stack.wait_until(all_published, PUBLISH_TIMEOUT, lambda: f"{len(runs)} publish run(s) not finished")
    except AirflowStackError as err:
        print(f"{PUBLISH_DAG_ID} did not finish: {err}")
        return False
    published, ok = 0, True
    for run in sorted(runs):
        state = stack.run_state(PUBLISH_DAG_ID, run)
        ok = ok and state == "success"
        verified = stack.xcom(PUBLISH_DAG_ID, run, "publish") if state == "success" else []
        published += len(verified)
        print(f"  {PUBLISH_DAG_ID} run {run}: {state}, {len(verified)} video(s) read back, SHA-256 verified")
    print(f"{len(events)} asset event(s) -> {len(runs)} publish run(s), {published} video(s) published")
    return ok


def _where(uri: str) -> str:
    """A stored URI as the user would look for it: a path relative to the repository for local files."""
    if not uri.startswith("file://"):
        return uri
    path = Path(uri.removeprefix("file://"))
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _seconds_between(start_ms: Any, end_ms: Any) -> float | None:
    # The vendor sends these as strings, possibly empty.
    try:
        return (float(end_ms) - float(start_ms)) / 1000.0
    except (TypeError, ValueError):
        return None


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prompt", action="append", help="a prompt (repeat for several); default: the DAG's own prompts"
    )
    parser.add_argument("--generation-seconds", type=float, default=15.0, help="sandbox render time per video")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the DAG run")
    parser.add_argument("--keep-running", action="store_true", help="leave Airflow up to browse its UI")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
