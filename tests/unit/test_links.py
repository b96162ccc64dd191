"""The "Kling video" extra link: the lasting copy when there is one, else the vendor URL while it is valid."""

from __future__ import annotations

from typing import Any

import pytest
from _fakes import SUCCEED, VIDEO_URL, FakeClock, make_context, mock_api, task_result

from airflow_provider_kling import clock
from airflow_provider_kling._completion import complete
from airflow_provider_kling.links import (
    XCOM_VIDEO_URL,
    XCOM_VIDEO_URL_EXPIRES_AT,
    KlingVideoLink,
    console_url,
    video_link,
)
from airflow_provider_kling.models import TaskResult


@pytest.fixture
def fake_time():
    with clock.use_clock(FakeClock()) as fake:
        yield fake


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "s3://my-bucket/kling/run 1/0.mp4",
            "https://s3.console.aws.amazon.com/s3/object/my-bucket?prefix=kling/run%201/0.mp4",
        ),
        (
            "s3://aws_prod@my-bucket/kling/0.mp4",
            "https://s3.console.aws.amazon.com/s3/object/my-bucket?prefix=kling/0.mp4",
        ),
        ("gs://media/kling/0.mp4", "https://console.cloud.google.com/storage/browser/_details/media/kling/0.mp4"),
        ("https://media.example.com/kling/0.mp4", "https://media.example.com/kling/0.mp4"),
        ("file:///data/kling/0.mp4", None),
        ("abfs://videos@account.dfs.core.windows.net/kling/0.mp4", None),
        ("s3://my-bucket", None),
    ],
)
def test_a_stored_uri_maps_to_its_web_console_page_or_to_nothing(uri, expected):
    assert console_url(uri) == expected


def test_a_lasting_copy_wins_over_the_vendor_url_and_never_expires(fake_time):
    assert video_link(VIDEO_URL, 3600, "s3://b/k.mp4") == (
        "https://s3.console.aws.amazon.com/s3/object/b?prefix=k.mp4",
        None,
    )


def test_a_local_copy_keeps_the_vendor_url_until_it_expires(fake_time):
    assert video_link(VIDEO_URL, 3600, "file:///data/k.mp4") == (VIDEO_URL, fake_time.now + 3600)


def test_an_unknown_ttl_sets_no_expiry(fake_time):
    assert video_link(VIDEO_URL, None) == (VIDEO_URL, None)


def _parsed() -> TaskResult:
    return TaskResult.model_validate(task_result(SUCCEED))


def _no_refresh() -> TaskResult:
    raise AssertionError("no refresh expected")


def test_complete_points_the_link_at_the_console_page_of_an_s3_copy(monkeypatch, fake_time):
    import airflow_provider_kling._completion as completion
    from airflow_provider_kling.delivery import StoredVideo

    stored = StoredVideo(
        uri="s3://media/kling/kt-1.mp4",
        sidecar_uri="s3://media/kling/kt-1.json",
        size_bytes=1,
        sha256="0" * 64,
        kling_task_id="kt-1",
    )
    monkeypatch.setattr(completion, "deliver_videos", lambda *args, **kwargs: [stored])
    context = make_context()

    complete(context, _parsed(), model=None, output_path="s3://media/kling/", request=None, refresh=_no_refresh)

    assert (
        context["ti"].xcoms[XCOM_VIDEO_URL] == "https://s3.console.aws.amazon.com/s3/object/media?prefix=kling/kt-1.mp4"
    )
    assert context["ti"].xcoms[XCOM_VIDEO_URL_EXPIRES_AT] is None


def test_complete_with_a_file_copy_links_the_vendor_url_with_its_expiry(tmp_path, fake_time):
    video = b"\x00\x00\x00\x18ftypmp42" + b"x" * 100
    context = make_context()
    with mock_api() as api:
        api.get(VIDEO_URL).respond(200, content=video, headers={"Content-Length": str(len(video))})
        complete(context, _parsed(), model=None, output_path=f"file://{tmp_path}/", request=None, refresh=_no_refresh)

    assert context["ti"].xcoms[XCOM_VIDEO_URL] == VIDEO_URL
    assert context["ti"].xcoms[XCOM_VIDEO_URL_EXPIRES_AT] == fake_time.now + 3600


class _XComValues:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get_value(self, *, ti_key: Any, key: str) -> Any:
        return self.values.get(key)


@pytest.mark.parametrize(
    ("values", "seconds_later", "expected"),
    [
        ({XCOM_VIDEO_URL: VIDEO_URL, XCOM_VIDEO_URL_EXPIRES_AT: 1_800_003_600.0}, 3599, VIDEO_URL),
        ({XCOM_VIDEO_URL: VIDEO_URL, XCOM_VIDEO_URL_EXPIRES_AT: 1_800_003_600.0}, 3600, ""),
        (
            {XCOM_VIDEO_URL: "https://s3.console.aws.amazon.com/s3/object/b?prefix=k", XCOM_VIDEO_URL_EXPIRES_AT: None},
            10**6,
            "https://s3.console.aws.amazon.com/s3/object/b?prefix=k",
        ),
        ({XCOM_VIDEO_URL: VIDEO_URL}, 10**6, VIDEO_URL),  # pushed by a version that kept no expiry
        ({XCOM_VIDEO_URL: ""}, 0, ""),  # submitted, not finished
        ({}, 0, ""),
    ],
)
def test_the_link_opens_nothing_before_the_end_or_after_the_vendor_url_expired(
    monkeypatch, fake_time, values, seconds_later, expected
):
    import airflow_provider_kling.links as links

    monkeypatch.setattr(links, "XCom", _XComValues(values))
    fake_time.advance(seconds_later)

    assert KlingVideoLink().get_link(None, ti_key=None) == expected  # type: ignore[arg-type]
