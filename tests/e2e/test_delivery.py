"""Delivering videos to storage, on the real stack: ``file://``, an expired URL, and S3.

One Airflow stack serves the module: the example content pipeline and publish DAGs plus
``dags_delivery/``, with an ``aws_default`` connection pointing at moto's S3 server, which this module
starts on 127.0.0.1 and stops at its end. The module starts its three DAG runs together (their
generations render side by side, as they would in production), then each test waits for the run it
checks: that saves about half the module's time on two cores. The witnesses are the stored bytes
themselves (compared with the MP4 the sandbox serves), Airflow's own record (XCom, asset events, the
runs they triggered, the extra link) and the vendor's side (the sandbox's journal).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kling.sandbox.media import task_id_of, video_for
from airflow_provider_kling.sandbox.process import SandboxProcess
from tools.airflow_stack import REPO_ROOT, TERMINAL_RUN_STATES, AirflowStack, RunResult, log_text
from tools.moto_s3 import FAKE_CREDENTIALS, aws_connection, s3_client

pytestmark = pytest.mark.e2e

PIPELINE = "example_kling_content_pipeline"
PUBLISH = "example_kling_publish_videos"
EXPIRED_URL = "delivery_expired_url"
TO_S3 = "delivery_to_s3"
MODEL = "kling-v3.0-std-t2v"
#: One prompt per mapped task; the seed marker makes each video's seed known in advance.
PROMPTS = [
    ("A hummingbird at a red flower [sandbox:seed=101]", 101),
    ("Waves on black sand at sunset [sandbox:seed=102]", 102),
    ("Latte art in a cosy cafe [sandbox:seed=103]", 103),
]
BUCKET = "kling-e2e"
PUBLISH_SECONDS = 120.0


def assert_succeeded(result: RunResult) -> None:
    failed = {key: states for key, states in result.states_seen.items() if states[-1:] != ["success"]}
    assert result.state == "success", f"run {result.run_id} {result.state}; task states: {failed}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def s3(moto_s3: str) -> Any:
    """A boto3 S3 client on the moto server, with the bucket the DAGs write to."""
    return s3_client(moto_s3, bucket=BUCKET)


@pytest.fixture(scope="module")
def airflow_stack_options(moto_s3: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shared stack of this module: its own DAGs folder, and AWS reaching moto through ``aws_default``."""
    dags = tmp_path_factory.mktemp("dags")
    examples = REPO_ROOT / "example_dags"
    checks = Path(__file__).parent / "dags_delivery"
    for path in (examples / f"{PIPELINE}.py", examples / f"{PUBLISH}.py", *sorted(checks.glob("*.py"))):
        shutil.copy(path, dags / path.name)
    return {
        "dags_folder": dags,
        "connections": {"aws_default": aws_connection(moto_s3)},
        # Fake credentials for moto; the endpoint comes from the connection.
        "env": dict(FAKE_CREDENTIALS),
    }


@pytest.fixture(scope="module")
def expired_url_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the expired-URL generation stores its video."""
    return tmp_path_factory.mktemp("expired-url")


@pytest.fixture(scope="module")
def started(airflow_stack: AirflowStack, s3: Any, expired_url_folder: Path) -> dict[str, str]:
    """Run ids of this module's three DAG runs, triggered together."""
    for dag_id in (PIPELINE, PUBLISH, EXPIRED_URL, TO_S3):
        airflow_stack.wait_for_dag(dag_id)
    # Parsing the DAGs (above) must not create anything: the task creates the folders it writes to.
    assert not (airflow_stack.home / "kling_videos").exists()
    expired_url_conf = {"output_folder": str(expired_url_folder), "prompt": "A lighthouse at dusk [sandbox:ttl=1]"}
    return {
        # The content pipeline with three prompts, to its default folder.
        PIPELINE: airflow_stack.trigger(PIPELINE, conf={"prompts": [prompt for prompt, _ in PROMPTS], "review": False}),
        EXPIRED_URL: airflow_stack.trigger(EXPIRED_URL, conf=expired_url_conf),
        TO_S3: airflow_stack.trigger(TO_S3, conf={"bucket": BUCKET}),
    }


@pytest.fixture(scope="module")
def pipeline_run(airflow_stack: AirflowStack, started: dict[str, str]) -> RunResult:
    """The content pipeline's run, finished."""
    return airflow_stack.wait_for_run(PIPELINE, started[PIPELINE])


def stored_of(stack: AirflowStack, result: RunResult, map_index: int) -> dict[str, Any]:
    """The one ``stored`` entry of a mapped task's return value."""
    [stored] = stack.xcom(result.dag_id, result.run_id, "generate", map_index=map_index)["stored"]
    return dict(stored)


# ------------------------------------------------------------------ file://


def test_the_pipeline_stores_each_video_with_a_sidecar_in_its_default_folder(
    airflow_stack: AirflowStack, pipeline_run: RunResult
) -> None:
    assert_succeeded(pipeline_run)
    run_id = pipeline_run.run_id
    folder = airflow_stack.home / "kling_videos" / run_id
    for map_index, (prompt, seed) in enumerate(PROMPTS):
        kling_task_id = airflow_stack.xcom(PIPELINE, run_id, "generate", "kling_task_id", map_index)
        video, sidecar_file = folder / f"{map_index}.mp4", folder / f"{map_index}.json"
        # The sandbox serves each task its own video: the stored copy is exactly this task's.
        expected = video_for(kling_task_id)
        assert video.read_bytes() == expected
        assert task_id_of(video.read_bytes()) == kling_task_id
        assert stored_of(airflow_stack, pipeline_run, map_index) == {
            "uri": f"file://{video}",
            "sidecar_uri": f"file://{sidecar_file}",
            "conn_id": None,
            "size_bytes": len(expected),
            "sha256": sha256(expected),
            "kling_task_id": kling_task_id,
            "model": MODEL,
            "seed": seed,
        }
        sidecar = json.loads(sidecar_file.read_text())
        assert sidecar["sha256"] == sha256(video.read_bytes())
        assert sidecar["size_bytes"] == video.stat().st_size
        assert (sidecar["kling_task_id"], sidecar["model"], sidecar["seed"]) == (kling_task_id, MODEL, seed)
        assert sidecar["request"] == {"prompt": prompt, "duration": 5, "aspect_ratio": "9:16"}
        assert all(isinstance(sidecar["vendor_timings_ms"][k], int) for k in ("submit", "execute", "complete"))
        assert sidecar["uri"] == f"file://{video}"
        assert sidecar["airflow"] == {
            "dag_id": PIPELINE,
            "run_id": run_id,
            "task_id": "generate",
            "map_index": map_index,
            "try_number": 1,
        }
    # Only complete files under their final names: no temporary `.partial` left anywhere.
    assert sorted(path.name for path in folder.iterdir()) == ["0.json", "0.mp4", "1.json", "1.mp4", "2.json", "2.mp4"]
    assert list((airflow_stack.home / "kling_videos").rglob("*partial*")) == []
    catalog = airflow_stack.xcom(PIPELINE, run_id, "catalog")
    assert [video["uri"] for video in catalog] == [f"file://{folder}/{n}.mp4" for n in range(3)]


def test_the_kling_video_link_opens_each_generated_video(
    airflow_stack: AirflowStack, sandbox: SandboxProcess, pipeline_run: RunResult
) -> None:
    assert_succeeded(pipeline_run)
    for map_index in range(len(PROMPTS)):
        kling_task_id = airflow_stack.xcom(PIPELINE, pipeline_run.run_id, "generate", "kling_task_id", map_index)
        url = airflow_stack.xcom(PIPELINE, pipeline_run.run_id, "generate", "kling_video_url", map_index)
        # A file:// copy is not web-reachable: the link is the vendor's signed URL.
        assert url.startswith(f"{sandbox.url}/sandbox/media/{kling_task_id}.mp4?expires=")
        links = airflow_stack.extra_links(PIPELINE, pipeline_run.run_id, "generate", map_index)
        assert links == {"Kling video": url}


def test_the_run_emits_one_asset_event_listing_every_video_and_the_publish_dag_verifies_them(
    airflow_stack: AirflowStack, pipeline_run: RunResult
) -> None:
    assert_succeeded(pipeline_run)
    run_id = pipeline_run.run_id
    stored = [stored_of(airflow_stack, pipeline_run, n) for n in range(len(PROMPTS))]
    events: list[dict[str, Any]] = []

    def published() -> bool:
        events[:] = airflow_stack.asset_events(source_dag_id=PIPELINE, source_run_id=run_id)
        runs = [run["run_id"] for event in events for run in event["created_dagruns"]]
        return bool(runs) and all(airflow_stack.run_state(PUBLISH, run) in TERMINAL_RUN_STATES for run in runs)

    airflow_stack.wait_until(
        published,
        PUBLISH_SECONDS,
        lambda: f"events of {run_id} not published: {events}; {PUBLISH} runs: {airflow_stack.dag_runs(PUBLISH)}",
    )

    # One event, after the fan-in, on the pipeline's asset, listing every stored video.
    [event] = events
    assert (event["name"], event["source_task_id"]) == ("kling_videos", "catalog")
    assert event["extra"] == {"kling_videos": stored}
    # It started one publish run, which read every video back and checked it against its SHA-256.
    [publish_run] = event["created_dagruns"]
    assert airflow_stack.run_state(PUBLISH, publish_run["run_id"]) == "success"
    [run] = [run for run in airflow_stack.dag_runs(PUBLISH) if run["dag_run_id"] == publish_run["run_id"]]
    assert run["run_type"] == "asset_triggered"
    assert airflow_stack.xcom(PUBLISH, publish_run["run_id"], "publish") == [
        {**video, "prompt": prompt, "verified": True} for video, (prompt, _) in zip(stored, PROMPTS, strict=True)
    ]


# ------------------------------------------------------------------ expired URL


def test_an_expired_signed_url_is_refreshed_and_the_video_still_stored(
    airflow_stack: AirflowStack, sandbox: SandboxProcess, started: dict[str, str], expired_url_folder: Path
) -> None:
    result = airflow_stack.wait_for_run(EXPIRED_URL, started[EXPIRED_URL])

    assert_succeeded(result)
    # It waited on the triggerer, then resumed (after a delay) to copy with the URL the trigger got.
    assert airflow_stack.trigger_log_files(result.dag_id, result.run_id, "generate")
    kling_task_id = airflow_stack.xcom(result.dag_id, result.run_id, "generate", key="kling_task_id")
    journal = sandbox.journal(task_id=kling_task_id)
    media = [entry for entry in journal if entry["kind"] == "media"]
    # The URL from the trigger had expired: refused, then one fresh Task Result, then the download.
    assert [entry["status"] for entry in media] == [403, 200], journal
    refused, served = media
    between = [entry for entry in journal if refused["seq"] < entry["seq"] < served["seq"]]
    assert [(entry["kind"], entry["status"]) for entry in between] == [("poll", 200)], journal
    assert (expired_url_folder / result.run_id / "clip.mp4").read_bytes() == video_for(kling_task_id)
    task_log = log_text(airflow_stack.task_log(result.dag_id, result.run_id, "generate"))
    assert f"The signed URL of Kling task {kling_task_id} has expired: asking for a fresh one" in task_log
    # The operator's own Asset outlet: its event lists the stored video.
    [event] = airflow_stack.asset_events(source_dag_id=EXPIRED_URL, source_run_id=result.run_id)
    stored = airflow_stack.xcom(result.dag_id, result.run_id, "generate")["stored"]
    assert (event["name"], event["extra"]) == ("kling_delivery_checks", {"kling_videos": stored})


# ------------------------------------------------------------------ S3


def test_videos_are_stored_in_s3_through_the_aws_connection(
    airflow_stack: AirflowStack, s3: Any, started: dict[str, str]
) -> None:
    result = airflow_stack.wait_for_run(TO_S3, started[TO_S3])

    assert_succeeded(result)
    prefix = f"kling/{result.run_id}/"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    # Only complete objects under their final keys: no temporary `.partial` left behind.
    assert sorted(item["Key"] for item in listed) == [prefix + name for name in ("0.json", "0.mp4", "1.json", "1.mp4")]
    for map_index in range(2):
        key = f"{prefix}{map_index}"
        video = s3.get_object(Bucket=BUCKET, Key=f"{key}.mp4")
        stored = stored_of(airflow_stack, result, map_index)
        expected = video_for(stored["kling_task_id"])
        assert video["ContentLength"] == len(expected)
        assert video["Body"].read() == expected
        assert (stored["uri"], stored["sidecar_uri"], stored["conn_id"]) == (
            f"s3://{BUCKET}/{key}.mp4",
            f"s3://{BUCKET}/{key}.json",
            "aws_default",
        )
        sidecar = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{key}.json")["Body"].read())
        assert (sidecar["sha256"], sidecar["size_bytes"]) == (sha256(expected), len(expected))
        assert (sidecar["uri"], sidecar["conn_id"]) == (stored["uri"], "aws_default")
        assert sidecar["kling_task_id"] == stored["kling_task_id"]
    # The operator's AssetAlias outlet: one event per video, the asset being the object (no connection id).
    events = airflow_stack.asset_events(source_dag_id=TO_S3, source_run_id=result.run_id)
    assert sorted((event["uri"], event["source_map_index"]) for event in events) == [
        (f"s3://{BUCKET}/{prefix}{n}.mp4", n) for n in range(2)
    ]
    assert all(event["extra"] == stored_of(airflow_stack, result, event["source_map_index"]) for event in events)
