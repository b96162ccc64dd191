"""Delivering videos to storage: streaming, size checks, expired URLs, atomicity, sidecars."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from _fakes import SUCCEED, FakeClock, FakeTI, task_result

from airflow_provider_kling import clock
from airflow_provider_kling._completion import complete
from airflow_provider_kling.assets import EXTRA_KEY, emit_video_asset_events
from airflow_provider_kling.delivery import (
    StoredVideo,
    UrlExpiredError,
    check_output_path,
    copy_url_atomically,
    deliver_videos,
    destinations,
    normalise_output_path,
)
from airflow_provider_kling.exceptions import (
    KlingNotFoundError,
    KlingRequestError,
    KlingTransientError,
    KlingValidationError,
)
from airflow_provider_kling.links import XCOM_VIDEO_URL
from airflow_provider_kling.models import TaskResult

CDN = "https://cdn.example.com"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64  # 16 KiB of "video"


def result_with(*urls: str, kling_task_id: str = "kt-1") -> TaskResult:
    videos = [{"video_url": url, "video_url_ttl": "3600", "video_type": "mp4"} for url in urls]
    return TaskResult.model_validate(task_result(SUCCEED, kling_task_id=kling_task_id, videos=videos))


def never_refresh() -> TaskResult:
    raise AssertionError("the URL was not expired: no refresh expected")


def complete_to(ti: FakeTI, output_path: str, **options: Any) -> dict[str, Any]:
    """Complete a succeeded generation of ``{CDN}/v1.mp4`` into ``output_path``: the summary it returns."""
    return complete(
        {"ti": ti},
        result_with(f"{CDN}/v1.mp4"),
        model="kling-v3.0-std-t2v",
        output_path=output_path,
        request={"prompt": "a fox"},
        refresh=never_refresh,
        **options,
    )


@pytest.fixture
def cdn():
    with respx.mock(base_url=CDN, assert_all_called=False) as router:
        yield router


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[FakeClock]:
    """Retries wait on a fake clock (the provider's one clock), so no test really sleeps."""
    with clock.use_clock(FakeClock()) as fake:
        yield fake


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if path.is_file())


def test_a_video_is_copied_with_its_sha256_and_size(cdn, tmp_path):
    cdn.get("/v1.mp4").respond(200, content=VIDEO)

    [stored] = deliver_videos(
        result_with(f"{CDN}/v1.mp4?sig=1"), f"file://{tmp_path}/out/teaser.mp4", refresh=never_refresh
    )

    assert (tmp_path / "out" / "teaser.mp4").read_bytes() == VIDEO
    assert stored.size_bytes == len(VIDEO)
    assert stored.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert stored.uri == f"file://{tmp_path}/out/teaser.mp4"


def test_the_sidecar_describes_the_video_without_secrets_or_inline_images(cdn, tmp_path):
    cdn.get("/v1.mp4").respond(200, content=VIDEO)
    request = {"prompt": "a fox", "duration": 5, "image": "iVBORw0KGgo" * 100}

    [stored] = deliver_videos(
        result_with(f"{CDN}/v1.mp4"),
        f"file://{tmp_path}/clip.mp4",
        refresh=never_refresh,
        model="kling-v3.0-std-i2v",
        request=request,
        context_facts={"airflow": {"dag_id": "d", "run_id": "r"}},
    )

    sidecar = json.loads((tmp_path / "clip.json").read_text())
    assert stored.sidecar_uri == f"file://{tmp_path}/clip.json"
    assert sidecar["kling_task_id"] == "kt-1"
    assert sidecar["model"] == "kling-v3.0-std-i2v"
    assert sidecar["request"]["prompt"] == "a fox"
    assert sidecar["request"]["image"].startswith("<inline image: 1100 base64 chars, sha256 ")
    assert sidecar["duration_seconds"] == 5
    assert sidecar["size_bytes"] == len(VIDEO)
    assert sidecar["sha256"] == stored.sha256
    assert sidecar["seed"] == stored.seed
    assert set(sidecar["vendor_timings_ms"]) == {"submit", "execute", "complete"}
    assert sidecar["airflow"] == {"dag_id": "d", "run_id": "r"}


def test_an_image_given_as_bytes_is_recorded_by_size_and_hash(cdn, tmp_path):
    cdn.get("/v1.mp4").respond(200, content=VIDEO)

    deliver_videos(
        result_with(f"{CDN}/v1.mp4"), f"file://{tmp_path}/c.mp4", refresh=never_refresh, request={"image": b"\x89PNG"}
    )

    recorded = json.loads((tmp_path / "c.json").read_text())["request"]["image"]
    digest = hashlib.sha256(b"\x89PNG").hexdigest()
    assert recorded == f"<inline image: 4 bytes, sha256 {digest}>"


def test_a_folder_output_path_names_the_file_after_the_kling_task(cdn, tmp_path):
    cdn.get("/v1.mp4").respond(200, content=VIDEO)

    deliver_videos(result_with(f"{CDN}/v1.mp4", kling_task_id="kt-9"), f"{tmp_path}/daily/", refresh=never_refresh)

    assert files_in(tmp_path / "daily") == ["kt-9.json", "kt-9.mp4"]


def test_several_videos_get_numbered_names(tmp_path):
    targets = destinations(f"file://{tmp_path}/clip.mp4", "kt-1", 2)

    assert [target.name for target in targets] == ["clip-1.mp4", "clip-2.mp4"]


@pytest.mark.parametrize("bad", ["", "   ", "relative/clip.mp4"])
def test_an_unusable_output_path_is_refused_naming_the_field(bad):
    with pytest.raises(KlingValidationError, match="output_path="):
        normalise_output_path(bad)


@pytest.fixture
def storage_refusing_every_uri(monkeypatch):
    """What Airflow 3.0's ObjectStoragePath does with universal-pathlib 0.3 installed (apache/airflow#56369)."""
    import airflow_provider_kling.delivery as delivery

    def refuse(uri: str) -> Any:
        raise TypeError("ObjectStoragePath(...) detected protocol file which is incompatible with ObjectStoragePath.")

    monkeypatch.setattr(delivery, "ObjectStoragePath", refuse)


def test_storage_that_cannot_open_any_uri_is_reported_with_the_fix(storage_refusing_every_uri, tmp_path):
    with pytest.raises(KlingValidationError) as info:
        check_output_path(f"{tmp_path}/clip.mp4")

    assert str(info.value).startswith(f"output_path='file://{tmp_path}/clip.mp4': ")
    assert "install universal-pathlib<0.3" in str(info.value)


def test_a_usable_output_path_is_checked_and_returned_normalised(tmp_path):
    assert check_output_path(f"{tmp_path}/clip.mp4") == f"file://{tmp_path}/clip.mp4"


def test_an_absolute_path_becomes_a_file_uri():
    assert normalise_output_path("/data/clip.mp4") == "file:///data/clip.mp4"


def test_a_download_cut_short_is_retried_and_never_left_under_the_final_name(cdn, tmp_path):
    route = cdn.get("/v1.mp4")
    route.side_effect = [
        httpx.Response(200, content=VIDEO[:1000], headers={"Content-Length": str(len(VIDEO))}),
        httpx.Response(200, content=VIDEO),
    ]

    deliver_videos(result_with(f"{CDN}/v1.mp4"), f"file://{tmp_path}/clip.mp4", refresh=never_refresh)

    assert route.call_count == 2
    assert (tmp_path / "clip.mp4").read_bytes() == VIDEO
    assert files_in(tmp_path) == ["clip.json", "clip.mp4"]  # no partial file left behind


def test_a_size_mismatch_that_persists_fails_and_leaves_no_file(cdn, tmp_path):
    cdn.get("/v1.mp4").respond(200, content=VIDEO[:10], headers={"Content-Length": "999"})

    with pytest.raises(KlingTransientError, match="cut short: got 10 of 999 bytes"):
        deliver_videos(result_with(f"{CDN}/v1.mp4"), f"file://{tmp_path}/clip.mp4", refresh=never_refresh)

    assert files_in(tmp_path) == []


def test_an_interrupted_copy_leaves_nothing_under_the_final_name(tmp_path):
    def explode_midway(request: httpx.Request) -> httpx.Response:
        def body():
            yield VIDEO[:4096]
            raise httpx.ReadError("connection reset", request=request)

        return httpx.Response(200, content=body())

    client = httpx.Client(transport=httpx.MockTransport(explode_midway))
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    target = ObjectStoragePath(f"file://{tmp_path}/clip.mp4")
    with pytest.raises(KlingTransientError, match="ReadError"):
        copy_url_atomically(client, f"{CDN}/v1.mp4", target)

    assert files_in(tmp_path) == []


def test_an_expired_signed_url_is_refreshed_from_the_task_result_api(cdn, tmp_path):
    cdn.get("/old.mp4").respond(403, text="<Error><Code>AccessDenied</Code></Error>")
    cdn.get("/fresh.mp4").respond(200, content=VIDEO)
    refreshed: list[int] = []

    def refresh() -> TaskResult:
        refreshed.append(1)
        return result_with(f"{CDN}/fresh.mp4")

    [stored] = deliver_videos(result_with(f"{CDN}/old.mp4"), f"file://{tmp_path}/clip.mp4", refresh=refresh)

    assert refreshed == [1]
    assert stored.size_bytes == len(VIDEO)


def test_transient_5xx_downloads_are_retried(cdn, tmp_path):
    route = cdn.get("/v1.mp4")
    route.side_effect = [httpx.Response(503), httpx.Response(200, content=VIDEO)]

    deliver_videos(result_with(f"{CDN}/v1.mp4"), f"file://{tmp_path}/clip.mp4", refresh=never_refresh)

    assert route.call_count == 2


def test_a_throttled_download_waits_for_retry_after_and_is_retried(cdn, tmp_path, no_backoff):
    route = cdn.get("/v1.mp4")
    route.side_effect = [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, content=VIDEO)]

    deliver_videos(result_with(f"{CDN}/v1.mp4"), f"file://{tmp_path}/clip.mp4", refresh=never_refresh)

    assert route.call_count == 2
    assert no_backoff.sleeps == [7.0]


def test_a_request_timeout_from_the_storage_host_is_retried(cdn, tmp_path):
    route = cdn.get("/v1.mp4")
    route.side_effect = [httpx.Response(408), httpx.Response(200, content=VIDEO)]

    deliver_videos(result_with(f"{CDN}/v1.mp4"), f"file://{tmp_path}/clip.mp4", refresh=never_refresh)

    assert route.call_count == 2


@pytest.mark.parametrize(("status", "error"), [(404, KlingNotFoundError), (400, KlingRequestError)])
def test_other_client_errors_of_the_storage_host_fail_at_once(cdn, tmp_path, status, error):
    route = cdn.get("/v1.mp4").respond(status, text="<Error><Code>NoSuchKey</Code></Error>")

    with pytest.raises(error, match=f"GET /v1.mp4 answered HTTP {status}: NoSuchKey"):
        deliver_videos(result_with(f"{CDN}/v1.mp4?sig=s3cr3t"), f"file://{tmp_path}/clip.mp4", refresh=never_refresh)

    assert route.call_count == 1
    assert files_in(tmp_path) == []


def test_a_refused_signature_that_stays_refused_fails_as_expired_without_the_signature(cdn, tmp_path):
    cdn.get("/v1.mp4").respond(403, text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message>")

    with pytest.raises(UrlExpiredError, match="HTTP 403: AccessDenied Request has expired") as caught:
        deliver_videos(
            result_with(f"{CDN}/v1.mp4?X-Amz-Signature=s3cr3t"),
            f"file://{tmp_path}/clip.mp4",
            refresh=lambda: result_with(f"{CDN}/v1.mp4?X-Amz-Signature=s3cr3t"),
            max_attempts=2,
        )

    assert "s3cr3t" not in str(caught.value)


def test_the_download_does_not_send_the_api_key(cdn, tmp_path):
    route = cdn.get("/v1.mp4").respond(200, content=VIDEO)

    deliver_videos(result_with(f"{CDN}/v1.mp4"), f"file://{tmp_path}/clip.mp4", refresh=never_refresh)

    assert "authorization" not in route.calls.last.request.headers


def test_a_compressed_download_is_not_compared_with_its_encoded_length(cdn, tmp_path):
    import gzip

    packed = gzip.compress(VIDEO)
    cdn.get("/v1.mp4").respond(
        200, content=packed, headers={"Content-Encoding": "gzip", "Content-Length": str(len(packed))}
    )

    [stored] = deliver_videos(result_with(f"{CDN}/v1.mp4"), f"file://{tmp_path}/clip.mp4", refresh=never_refresh)

    assert stored.size_bytes == len(VIDEO)


def test_memory_stays_bounded_whatever_the_video_size(tmp_path):
    chunk = b"\x01" * (1024 * 1024)
    total_chunks = 64  # a 64 MiB video

    def stream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=(chunk for _ in range(total_chunks)),
            headers={"Content-Length": str(len(chunk) * total_chunks)},
        )

    from airflow.providers.common.compat.sdk import ObjectStoragePath

    client = httpx.Client(transport=httpx.MockTransport(stream))
    tracemalloc.start()
    size, _ = copy_url_atomically(client, f"{CDN}/big.mp4", ObjectStoragePath(f"file://{tmp_path}/big.mp4"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert size == len(chunk) * total_chunks
    assert peak < 16 * 1024 * 1024  # a few chunks, never the whole 64 MiB


def outlet_events() -> Any:
    """Airflow's own ``outlet_events`` of a task context (it moved to the Task SDK in Airflow 3)."""
    try:
        from airflow.sdk.execution_time.context import OutletEventAccessors
    except ImportError:  # Airflow 2
        from airflow.utils.context import OutletEventAccessors  # type: ignore[no-redef]
    return OutletEventAccessors()


def alias_events(accessor: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(asset URI, extra)`` of each event added through an alias (Airflow 2 calls them Datasets)."""
    if hasattr(accessor, "asset_alias_events"):
        return [(event.dest_asset_key.uri, event.extra) for event in accessor.asset_alias_events]
    return [(event["dest_dataset_uri"], event["extra"]) for event in accessor.dataset_alias_events]


def stored_video(uri: str) -> StoredVideo:
    return StoredVideo(uri=uri, sidecar_uri=uri + ".json", size_bytes=3, sha256="ab", kling_task_id="kt-1", seed=7)


def test_an_asset_outlet_gets_the_stored_videos_as_extra():
    from airflow.providers.common.compat.sdk import Asset

    asset = Asset("file:///videos/daily")
    events = outlet_events()

    emit_video_asset_events({"outlet_events": events}, [asset], [stored_video("file:///videos/daily/a.mp4")])

    assert events[asset].extra[EXTRA_KEY][0]["uri"] == "file:///videos/daily/a.mp4"


def test_an_asset_alias_outlet_gets_one_asset_event_per_video():
    from airflow.providers.common.compat.sdk import AssetAlias

    alias = AssetAlias("kling-videos")
    events = outlet_events()

    emit_video_asset_events(
        {"outlet_events": events}, [alias], [stored_video("file:///v/a.mp4"), stored_video("file:///v/b.mp4")]
    )

    added = alias_events(events[alias])
    assert [uri for uri, _ in added] == ["file:///v/a.mp4", "file:///v/b.mp4"]
    assert added[0][1]["sha256"] == "ab"


def test_the_asset_events_are_logged_in_the_running_airflows_words(captured_logs):
    """Airflow 2 calls them Datasets: the log line says what the user's Airflow shows."""
    from airflow.providers.common.compat.sdk import Asset, AssetAlias

    from airflow_provider_kling._compat import AIRFLOW_V_3_0_PLUS

    term = "Asset" if AIRFLOW_V_3_0_PLUS else "Dataset"
    emit_video_asset_events(
        {"outlet_events": outlet_events()},
        [Asset("file:///videos/daily"), AssetAlias("kling-videos")],
        [stored_video("file:///videos/daily/a.mp4")],
    )

    assert captured_logs.messages("info", containing=f"{term} file:///videos/daily: its event lists the 1 stored")
    assert captured_logs.messages("info", containing=f"{term} alias 'kling-videos': one {term} event per stored")


def test_completing_with_an_output_path_adds_stored_and_points_the_link_at_the_video(cdn, tmp_path):
    cdn.get("/v1.mp4").respond(200, content=VIDEO)
    ti = FakeTI()

    summary = complete_to(ti, f"file://{tmp_path}/c.mp4")

    assert summary["stored"][0]["uri"] == f"file://{tmp_path}/c.mp4"
    assert ti.xcoms[XCOM_VIDEO_URL] == f"{CDN}/v1.mp4"  # a file:// copy is not web-reachable


def test_completing_without_an_output_path_copies_nothing(tmp_path):
    ti = FakeTI()

    summary = complete(
        {"ti": ti}, result_with(f"{CDN}/v1.mp4"), model=None, output_path=None, request=None, refresh=never_refresh
    )

    assert "stored" not in summary
    assert ti.xcoms[XCOM_VIDEO_URL] == f"{CDN}/v1.mp4"
