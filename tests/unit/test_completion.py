"""How a final Task Result or a trigger event becomes a return value or a clear error (shared by all paths)."""

from __future__ import annotations

import json
from typing import Any

import _fakes
import pytest
from _fakes import FAILED, PROCESSING, QUEUED, SUCCEED, VIDEO_URL, make_context, mock_api, task_event, task_result
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_kling._completion import (
    XCOM_KLING_TASK_ID,
    complete,
    event_result,
    succeeded_result,
)
from airflow_provider_kling.exceptions import (
    KlingContentPolicyError,
    KlingError,
    KlingTaskFailedError,
    KlingTimeoutError,
)
from airflow_provider_kling.models import TaskResult

KLING_TASK_ID = "kt-1"
MODEL = "kling-v3.0-std-t2v"


def parsed(status: str, **kwargs: Any) -> TaskResult:
    return TaskResult.model_validate(task_result(status, **kwargs))


def result_or_raise(result: TaskResult, *, model: str | None = None) -> dict[str, Any]:
    """What an operator returns for a final result: the summary of a success, else the error raised."""
    return succeeded_result(result).summary(model=model)


def result_from_event(
    event: dict[str, Any] | None, *, model: str | None = None, kling_task_id: str | None = None
) -> dict[str, Any]:
    """What ``execute_complete`` returns for a trigger event."""
    return event_result(event, kling_task_id=kling_task_id).summary(model=model)


def no_refresh() -> TaskResult:
    raise AssertionError("the signed URL was fresh: no refresh expected")


# -- result_or_raise / succeeded_result --------------------------------------------------------------


def test_the_xcom_key_of_the_kling_task_id_is_kling_task_id():
    assert XCOM_KLING_TASK_ID == "kling_task_id"


def test_a_succeeded_result_becomes_a_small_json_summary():
    summary = result_or_raise(parsed(SUCCEED), model=MODEL)

    assert summary == _fakes.result_summary(MODEL)
    assert json.loads(json.dumps(summary)) == summary


def test_succeeded_result_returns_the_result_itself():
    result = parsed(SUCCEED)

    assert succeeded_result(result) is result


def test_a_success_without_a_video_is_an_error():
    with pytest.raises(KlingError, match="returned no video"):
        result_or_raise(parsed(SUCCEED, videos=[]))


@pytest.mark.parametrize(
    "reason",
    ["ILLEGAL_PROMPT", "ILLEGAL_IMAGE_CONTENT", "Rejected by content policy", "nsfw detected", "moderation failed"],
)
def test_a_content_policy_refusal_is_not_retried(reason):
    with pytest.raises(KlingContentPolicyError) as info:
        result_or_raise(parsed(FAILED, reason=reason))

    assert isinstance(info.value, AirflowFailException)
    assert isinstance(info.value, KlingTaskFailedError)
    assert info.value.reason == reason
    assert info.value.kling_task_id == KLING_TASK_ID
    assert reason in str(info.value)


def test_an_ordinary_failure_is_a_retryable_task_failed_error_with_the_reason():
    with pytest.raises(KlingTaskFailedError) as info:
        result_or_raise(parsed(FAILED, reason="render farm error"))

    assert not isinstance(info.value, AirflowFailException)
    assert "Kling generation failed: render farm error" in str(info.value)
    assert f"kling_task_id={KLING_TASK_ID}" in str(info.value)


def test_a_failure_without_a_reason_says_so():
    with pytest.raises(KlingTaskFailedError, match="no reason given by the vendor"):
        result_or_raise(parsed(FAILED, reason=""))


@pytest.mark.parametrize("status", [QUEUED, PROCESSING, "TASK_STATUS_CANCELLED", ""])
def test_an_unfinished_or_undocumented_status_is_never_a_success(status):
    with pytest.raises(KlingError, match="not finished or has an undocumented status"):
        result_or_raise(parsed(status, videos=[{"video_url": VIDEO_URL}]))


# -- events ------------------------------------------------------------------------------------------


def test_a_success_event_gives_the_summary():
    summary = result_from_event(task_event("success", result=task_result(SUCCEED)), model=MODEL)

    assert summary["model"] == MODEL
    assert summary["videos"][0]["url"] == VIDEO_URL


def test_event_result_gives_the_parsed_task_result():
    result = event_result(task_event("success", result=task_result(SUCCEED)), kling_task_id=KLING_TASK_ID)

    assert isinstance(result, TaskResult)
    assert result.videos[0].video_url == VIDEO_URL


def test_a_failed_event_raises_the_vendor_reason():
    with pytest.raises(KlingTaskFailedError, match="render farm error"):
        result_from_event(task_event("failed", result=task_result(FAILED, reason="render farm error")))


def test_a_timeout_event_says_the_kling_task_keeps_running():
    with pytest.raises(KlingTimeoutError) as info:
        result_from_event(task_event("timeout"))

    assert info.value.kling_task_id == KLING_TASK_ID
    assert "keeps running" in str(info.value)
    assert "KlingTaskSensor" in str(info.value)


def test_an_error_event_raises_its_message():
    event = {"status": "error", "kling_task_id": KLING_TASK_ID, "message": "the API key was refused"}

    with pytest.raises(KlingError, match="the API key was refused") as info:
        result_from_event(event)

    assert info.value.kling_task_id == KLING_TASK_ID


@pytest.mark.parametrize("status", ["success", "failed"])
def test_a_terminal_event_without_a_result_is_an_error(status):
    event = {"status": status, "kling_task_id": KLING_TASK_ID, "message": "?"}

    with pytest.raises(KlingError, match=f"{status} event without a result"):
        result_from_event(event)


def test_a_malformed_event_is_described_briefly():
    event = {"status": "success", "kling_task_id": KLING_TASK_ID, "message": "x" * 5000, "raw": {}}

    with pytest.raises(KlingError, match="malformed trigger event") as info:
        result_from_event(event)

    assert len(str(info.value)) < 400


def test_an_event_for_another_task_is_refused():
    event = task_event("success", kling_task_id="kt-other", result=task_result(SUCCEED, kling_task_id="kt-other"))

    with pytest.raises(KlingError, match="trigger event is for task 'kt-other', expected 'kt-1'"):
        result_from_event(event, kling_task_id=KLING_TASK_ID)


def test_without_an_expected_id_any_task_is_accepted():
    event = task_event("success", kling_task_id="kt-other", result=task_result(SUCCEED, kling_task_id="kt-other"))

    assert result_from_event(event)["kling_task_id"] == "kt-other"


# -- complete ----------------------------------------------------------------------------------------


def test_complete_returns_the_summary_and_pushes_the_video_url_for_the_extra_link():
    context = make_context()

    summary = complete(context, parsed(SUCCEED), model=MODEL, output_path=None, request=None, refresh=no_refresh)

    assert summary == result_or_raise(parsed(SUCCEED), model=MODEL)
    assert context["ti"].xcoms["kling_video_url"] == VIDEO_URL


def test_complete_raises_before_pushing_anything_for_a_failed_generation():
    context = make_context()

    with pytest.raises(KlingTaskFailedError):
        complete(
            context, parsed(FAILED, reason="boom"), model=MODEL, output_path=None, request=None, refresh=no_refresh
        )

    assert context["ti"].xcoms == {}


def test_complete_works_without_a_task_instance():
    summary = complete({}, parsed(SUCCEED), model=None, output_path=None, request=None, refresh=no_refresh)

    assert summary["kling_task_id"] == KLING_TASK_ID


def test_complete_with_an_output_path_stores_the_video_and_lists_it(tmp_path):
    video = b"\x00\x00\x00\x18ftypmp42" + b"x" * 1000
    context = make_context()
    with mock_api() as api:
        api.get(VIDEO_URL).respond(200, content=video, headers={"Content-Length": str(len(video))})

        summary = complete(
            context,
            parsed(SUCCEED),
            model=MODEL,
            output_path=f"file://{tmp_path}/clips/",
            request={"prompt": "a fox", "duration": 5},
            refresh=no_refresh,
        )

    stored = summary["stored"]
    assert len(stored) == 1
    assert stored[0]["size_bytes"] == len(video)
    assert (tmp_path / "clips" / f"{KLING_TASK_ID}.mp4").read_bytes() == video
    assert context["ti"].xcoms["kling_video_url"] == VIDEO_URL  # a file:// copy is not web-reachable
