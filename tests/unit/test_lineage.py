"""OpenLineage: what the operators and the sensor report as read (prompt, media) and written (stored videos)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import respx
from _fakes import (
    RESULT_PATH,
    SUCCEED,
    VIDEO_URL,
    FakeTI,
    make_context,
    mock_api,
    submit_path,
    task_result,
    use_fake_connection,
)

from airflow_provider_kling.lineage import dataset_name, generation_facet, input_names, output_names
from airflow_provider_kling.operators.kling import (
    KlingImageToVideoOperator,
    KlingMotionControlOperator,
    KlingTextToVideoOperator,
)
from airflow_provider_kling.sensors.kling import KlingTaskSensor

T2V = "kling-v3.0-std-t2v"
KLING_TASK_ID = "kt-1"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 16


@pytest.fixture(autouse=True)
def _connection(monkeypatch):
    use_fake_connection(monkeypatch)


def needs_openlineage() -> Any:
    """The OpenLineage provider, or skip: only the Airflow 3.3 leg installs it (the ``openlineage`` extra)."""
    return pytest.importorskip("airflow.providers.openlineage.extractors", reason="OpenLineage provider not installed")


def names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(dataset.namespace, dataset.name) for dataset in datasets]


def serialised(facet: Any) -> dict[str, Any]:
    """The facet as the OpenLineage client sends it to a backend."""
    from openlineage.client.serde import Serde

    return json.loads(Serde.to_json(facet))


# -- naming, without the provider -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/kling/0.mp4", ("s3://bucket", "kling/0.mp4")),
        ("s3://aws_videos@bucket/kling/0.mp4", ("s3://bucket", "kling/0.mp4")),  # the conn id is no data
        ("gs://bucket/a/b.mp4", ("gs://bucket", "a/b.mp4")),
        ("file:///data/videos/0.mp4", ("file", "/data/videos/0.mp4")),
        ("/data/cat.png", ("file", "/data/cat.png")),
        (Path("/data/cat.png"), ("file", "/data/cat.png")),
        ("https://cdn.example.com/a.png", ("https://cdn.example.com", "/a.png")),
        ("http://127.0.0.1:8089/media/a.png", ("http://127.0.0.1:8089", "/media/a.png")),
    ],
)
def test_uris_become_openlineage_dataset_names(uri, expected):
    assert dataset_name(uri) == expected


def test_a_signed_url_loses_its_signature():
    assert dataset_name(VIDEO_URL) == ("https://cdn.example.com", "/out/kt-1.mp4")
    assert dataset_name("https://cdn.example.com/a.png?token=s3cret#frag") == ("https://cdn.example.com", "/a.png")


@pytest.mark.parametrize("inline", ["data:image/png;base64,iVBORw0KGgo=", "iVBORw0KGgo=", ""])
def test_inline_images_are_no_dataset(inline):
    assert dataset_name(inline) is None


def test_inputs_are_the_media_fields_of_the_request_only():
    request = {
        "prompt": "https://not-a-file.example.com/ is just text",
        "image": "https://cdn.example.com/first.png?sig=1",
        "end_image": "data:image/png;base64,iVBORw0KGgo=",
        "video": "https://cdn.example.com/dance.mp4",
    }

    assert input_names(request) == [
        ("https://cdn.example.com", "/first.png"),
        ("https://cdn.example.com", "/dance.mp4"),
    ]


def test_outputs_are_the_stored_videos_only():
    summary = {
        "videos": [{"url": VIDEO_URL}],
        "stored": [{"uri": "s3://bucket/k/0.mp4"}, {"uri": "s3://bucket/k/1.mp4"}],
    }

    assert output_names(summary) == [("s3://bucket", "k/0.mp4"), ("s3://bucket", "k/1.mp4")]
    assert output_names({"videos": [{"url": VIDEO_URL}]}) == []  # the vendor URL expires: no lasting output


def test_the_generation_facet_leaves_out_what_is_unknown():
    fields = generation_facet(
        model="kling-v3.0-pro-t2v",
        request={"prompt": "a fox", "multi_prompt": [{"prompt": "wide", "duration": 3}, {"prompt": "close"}]},
        kling_task_id=None,
        status=None,
    )

    assert fields == {"model": "kling-v3.0-pro-t2v", "prompt": "a fox", "shot_prompts": ["wide", "close"]}


def test_without_the_openlineage_provider_the_methods_return_none(monkeypatch):
    # A None entry in sys.modules makes the import fail, as on a leg without the provider.
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    operator = KlingTextToVideoOperator(task_id="generate", prompt="a fox")

    assert operator.get_openlineage_facets_on_start() is None
    assert operator.get_openlineage_facets_on_complete(FakeTI()) is None


# -- with the provider --------------------------------------------------------------------------------------


def test_on_start_reports_the_prompt_and_the_input_media():
    extractors = needs_openlineage()
    operator = KlingImageToVideoOperator(
        task_id="animate", image="https://cdn.example.com/first.png?X-Amz-Signature=abc", prompt="the cat turns"
    )

    lineage = operator.get_openlineage_facets_on_start()

    assert isinstance(lineage, extractors.OperatorLineage)
    assert names(lineage.inputs) == [("https://cdn.example.com", "/first.png")]
    assert lineage.outputs == []
    facet = serialised(lineage.run_facets["kling"])
    assert facet["model"] == "kling-v3.0-std-i2v"
    assert facet["prompt"] == "the cat turns"
    assert "kling_task_id" not in facet
    assert "externalQuery" not in lineage.run_facets


def test_motion_control_reads_the_character_image_and_the_reference_video():
    needs_openlineage()
    operator = KlingMotionControlOperator(
        task_id="dance",
        image="https://example.com/mascot.png",
        video="https://example.com/dance.mp4",
        character_orientation="video",
    )

    lineage = operator.get_openlineage_facets_on_start()

    assert names(lineage.inputs) == [("https://example.com", "/mascot.png"), ("https://example.com", "/dance.mp4")]


def test_a_finished_generation_reports_the_stored_video_as_output(monkeypatch, tmp_path, fake_clock):
    """A real (synchronous) run with delivery to a folder, then the complete-time lineage of that run."""
    needs_openlineage()
    context = make_context()
    operator = KlingTextToVideoOperator(
        task_id="generate",
        prompt="a red fox in fresh snow",
        negative_prompt="blur",
        deferrable=False,
        output_path=f"file://{tmp_path}/",
    )
    with mock_api() as api, respx.mock(base_url="https://cdn.example.com", assert_all_called=False) as cdn:
        api.post(submit_path(T2V)).respond(200, json={"task_id": KLING_TASK_ID})
        api.get(RESULT_PATH, params={"task_id": KLING_TASK_ID}).respond(200, json=task_result(SUCCEED))
        cdn.get("/out/kt-1.mp4").respond(200, content=VIDEO)
        summary = operator.execute(context)

    lineage = operator.get_openlineage_facets_on_complete(context["ti"])

    stored_uri = summary["stored"][0]["uri"]
    assert stored_uri.startswith(f"file://{tmp_path}/")
    assert names(lineage.outputs) == [("file", stored_uri.removeprefix("file://"))]
    assert lineage.inputs == []  # text to video reads no file
    facet = serialised(lineage.run_facets["kling"])
    assert facet["prompt"] == "a red fox in fresh snow"
    assert facet["negative_prompt"] == "blur"
    assert facet["kling_task_id"] == KLING_TASK_ID
    assert facet["status"] == SUCCEED
    external = serialised(lineage.run_facets["externalQuery"])
    assert (external["externalQueryId"], external["source"]) == (KLING_TASK_ID, "kling")


def test_a_resumed_task_reads_its_result_from_its_return_value():
    """After a deferral the listener may see an operator that did not run: the XCom return value counts."""
    needs_openlineage()
    ti = FakeTI()
    ti.xcoms["return_value"] = {
        "kling_task_id": "kt-9",
        "model": T2V,
        "status": SUCCEED,
        "stored": [{"uri": "s3://aws_videos@bucket/kling/kt-9.mp4"}],
    }
    operator = KlingTextToVideoOperator(task_id="generate", prompt="a fox")

    lineage = operator.get_openlineage_facets_on_complete(ti)

    assert names(lineage.outputs) == [("s3://bucket", "kling/kt-9.mp4")]
    assert serialised(lineage.run_facets["kling"])["kling_task_id"] == "kt-9"


def test_a_failed_generation_still_names_its_kling_task():
    needs_openlineage()
    ti = FakeTI()
    ti.xcoms["kling_task_id"] = "kt-failed"  # pushed right after the submit; no return value
    operator = KlingTextToVideoOperator(task_id="generate", prompt="a fox")

    lineage = operator.get_openlineage_facets_on_complete(ti)

    assert lineage.outputs == []
    assert serialised(lineage.run_facets["externalQuery"])["externalQueryId"] == "kt-failed"


def test_the_sensor_reports_the_task_it_waited_for_and_the_stored_video():
    needs_openlineage()
    ti = FakeTI()
    ti.xcoms["return_value"] = {"kling_task_id": "kt-7", "status": SUCCEED, "stored": [{"uri": "s3://b/v/kt-7.mp4"}]}
    sensor = KlingTaskSensor(task_id="wait", kling_task_id="kt-7")

    start = sensor.get_openlineage_facets_on_start()
    done = sensor.get_openlineage_facets_on_complete(ti)

    assert start.inputs == []
    assert start.outputs == []
    assert names(done.outputs) == [("s3://b", "v/kt-7.mp4")]
    facet = serialised(done.run_facets["kling"])
    assert facet == {**facet, "kling_task_id": "kt-7", "status": SUCCEED}
    assert "prompt" not in facet  # the sensor never saw the request


def test_the_default_extractor_uses_the_methods():
    """The provider's own extractor picks the methods up (no extractor registration needed)."""
    extractors = needs_openlineage()
    from airflow.providers.openlineage.extractors.base import DefaultExtractor

    operator = KlingTextToVideoOperator(task_id="generate", prompt="a fox")
    ti = FakeTI()
    ti.xcoms["return_value"] = {"kling_task_id": "kt-1", "status": SUCCEED, "stored": [{"uri": "s3://b/k.mp4"}]}

    lineage = DefaultExtractor(operator).extract_on_complete(ti)

    assert isinstance(lineage, extractors.OperatorLineage)
    assert names(lineage.outputs) == [("s3://b", "k.mp4")]
