"""Delivering to S3: the connection to write with, URIs without it, atomic uploads.

The S3 tests run against moto's S3 server on 127.0.0.1 (in this process), written through Airflow's own
``ObjectStoragePath`` and the Amazon provider's s3fs filesystem, and read back with boto3. They are
skipped where the ``[s3]`` extra or moto is not installed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from _fakes import SUCCEED, FakeClock, FakeTI, task_result

from airflow_provider_kling import clock
from airflow_provider_kling.assets import emit_video_asset_events
from airflow_provider_kling.delivery import (
    StoredVideo,
    check_output_path,
    copy_url_atomically,
    deliver_videos,
    location,
    storage_path,
    uri_conn_id,
)
from airflow_provider_kling.exceptions import KlingTransientError, KlingValidationError
from airflow_provider_kling.models import TaskResult
from airflow_provider_kling.operators.kling import KlingTextToVideoOperator
from airflow_provider_kling.sensors.kling import KlingTaskSensor
from tools.moto_s3 import moto_server

CDN = "https://cdn.example.com"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64
BUCKET = "kling-unit"
CONN_ID = "kling_s3"


def result_with(url: str) -> TaskResult:
    videos = [{"video_url": url, "video_url_ttl": "3600", "video_type": "mp4"}]
    return TaskResult.model_validate(task_result(SUCCEED, videos=videos))


def never_refresh() -> TaskResult:
    raise AssertionError("no refresh expected")


@pytest.fixture
def cdn() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=CDN, assert_all_called=False) as router:
        router.get("/v1.mp4").respond(200, content=VIDEO)
        yield router


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[FakeClock]:
    """Retries wait on a fake clock (the provider's one clock), so no test really sleeps."""
    with clock.use_clock(FakeClock()) as fake:
        yield fake


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, for this module."""
    pytest.importorskip("s3fs", reason="the [s3] extra is not installed")
    pytest.importorskip("airflow.providers.amazon", reason="the [s3] extra is not installed")
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client on an empty bucket, and the ``kling_s3`` connection pointing at the server."""
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "fake")
    extra = {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "aws", "extra": extra}))
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(s3: Any) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def read(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_a_video_is_uploaded_with_the_output_conn_id(s3, cdn):
    [stored] = deliver_videos(
        result_with(f"{CDN}/v1.mp4"), f"s3://{BUCKET}/daily/clip.mp4", refresh=never_refresh, conn_id=CONN_ID
    )

    assert read(s3, "daily/clip.mp4") == VIDEO
    assert stored.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert (stored.uri, stored.sidecar_uri, stored.conn_id) == (
        f"s3://{BUCKET}/daily/clip.mp4",
        f"s3://{BUCKET}/daily/clip.json",
        CONN_ID,
    )
    sidecar = json.loads(read(s3, "daily/clip.json"))
    assert (sidecar["uri"], sidecar["conn_id"], sidecar["size_bytes"]) == (stored.uri, CONN_ID, len(VIDEO))
    assert keys(s3) == ["daily/clip.json", "daily/clip.mp4"]  # no partial object left behind


def test_a_connection_named_in_the_uri_is_used_and_kept_out_of_the_stored_uris(s3, cdn):
    [stored] = deliver_videos(result_with(f"{CDN}/v1.mp4"), f"s3://{CONN_ID}@{BUCKET}/named/", refresh=never_refresh)

    assert stored.uri == f"s3://{BUCKET}/named/kt-1.mp4"
    assert stored.conn_id == CONN_ID
    assert json.loads(read(s3, "named/kt-1.json"))["uri"] == stored.uri
    assert storage_path(stored.uri, stored.conn_id).read_bytes() == VIDEO  # what a downstream DAG does


def test_an_interrupted_upload_leaves_no_object(s3):
    def explode_midway(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield VIDEO[:4096]
            raise httpx.ReadError("connection reset", request=request)

        return httpx.Response(200, content=body())

    client = httpx.Client(transport=httpx.MockTransport(explode_midway))

    with pytest.raises(KlingTransientError, match="ReadError"):
        copy_url_atomically(client, f"{CDN}/v1.mp4", storage_path(f"s3://{BUCKET}/cut/clip.mp4", CONN_ID))

    assert keys(s3) == []


def test_completing_with_an_output_conn_id_stores_there_and_names_the_asset_without_it(s3, cdn):
    from airflow.providers.common.compat.sdk import AssetAlias
    from test_delivery import alias_events, complete_to, outlet_events

    ti = FakeTI()

    summary = complete_to(ti, f"s3://{BUCKET}/runs/0.mp4", output_conn_id=CONN_ID)

    assert summary["stored"][0]["uri"] == f"s3://{BUCKET}/runs/0.mp4"
    assert summary["stored"][0]["conn_id"] == CONN_ID
    # The asset is the object, whichever connection wrote it.
    events = outlet_events()
    alias = AssetAlias("kling-videos")
    emit_video_asset_events({"outlet_events": events}, [alias], [StoredVideo.model_validate(summary["stored"][0])])
    assert [uri for uri, _ in alias_events(events[alias])] == [f"s3://{BUCKET}/runs/0.mp4"]


# -- no storage needed -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "conn_id"),
    [
        ("s3://my_conn@bucket/key.mp4", "my_conn"),
        ("s3://bucket/key.mp4", None),
        ("file:///data/key.mp4", None),
    ],
)
def test_the_connection_a_uri_names_is_its_user_part(uri, conn_id):
    assert uri_conn_id(uri) == conn_id


def test_two_different_connections_for_one_output_path_are_refused():
    with pytest.raises(KlingValidationError, match="names connection 'a' but output_conn_id='b'"):
        check_output_path("s3://a@bucket/clip.mp4", "b")


def test_the_same_connection_in_the_uri_and_output_conn_id_is_accepted():
    assert check_output_path("s3://a@bucket/clip.mp4", "a") == "s3://a@bucket/clip.mp4"


def test_a_location_leaves_the_connection_out():
    assert location(storage_path("s3://bucket/k/clip.mp4", "my_conn")) == "s3://bucket/k/clip.mp4"
    assert location(storage_path("file:///data/clip.mp4")) == "file:///data/clip.mp4"


@pytest.mark.parametrize("make", [KlingTextToVideoOperator, KlingTaskSensor])
def test_output_conn_id_is_templated(make):
    assert "output_conn_id" in make.template_fields


def test_an_output_conn_id_without_an_output_path_is_refused_at_parse():
    with pytest.raises(KlingValidationError, match="output_conn_id needs output_path"):
        KlingTextToVideoOperator(task_id="t", prompt="a fox", output_conn_id="aws_default")


def test_a_sensor_with_an_output_conn_id_but_no_output_path_is_refused_at_parse():
    with pytest.raises(KlingValidationError, match="output_conn_id needs output_path"):
        KlingTaskSensor(task_id="w", kling_task_id="kt-1", output_conn_id="aws_default")


def test_conflicting_literal_connections_are_refused_at_parse():
    with pytest.raises(KlingValidationError, match="names connection 'a'"):
        KlingTextToVideoOperator(task_id="t", prompt="a fox", output_path="s3://a@bucket/x.mp4", output_conn_id="b")


def test_a_templated_output_conn_id_waits_for_the_run():
    operator = KlingTextToVideoOperator(
        task_id="t", prompt="a fox", output_path="s3://a@bucket/x.mp4", output_conn_id="{{ params.conn }}"
    )

    assert operator.output_conn_id == "{{ params.conn }}"
