"""Task Result, error bodies and trigger events: parsed tolerantly, never mistaken for a success."""

from __future__ import annotations

import json

import pytest
from _fakes import DOCUMENTED_ANSWER
from pydantic import ValidationError

from airflow_provider_kling.models import ApiError, SubmitResponse, TaskEvent, TaskResult, TaskStatus


def parse(body: dict) -> TaskResult:
    return TaskResult.model_validate(body)


def test_the_documented_answer_parses():
    result = parse(DOCUMENTED_ANSWER)

    assert result.task.task_id == "kt-1"
    assert result.task.state is TaskStatus.PROCESSING
    assert (result.task.eta, result.task.progress_percent) == (42, 35)


def test_numbers_sent_as_strings_are_read_as_integers(result_body):
    result = parse(result_body("TASK_STATUS_SUCCEED", eta="12", progress="100"))

    assert result.extra.seed == 158881667
    assert result.extra.debug_info.submit_time_ms == 1731000000000
    assert result.videos[0].video_url_ttl == 3600
    assert (result.task.eta, result.task.progress_percent) == (12, 100)


def test_an_empty_string_number_means_not_known_yet():
    result = parse(DOCUMENTED_ANSWER)

    assert result.extra.debug_info.execute_time_ms is None
    assert result.extra.debug_info.complete_time_ms is None


def test_a_ttl_of_zero_is_kept_as_zero_not_unknown(result_body):
    body = result_body("TASK_STATUS_SUCCEED", videos=[{"video_url": "https://x/v.mp4", "video_url_ttl": "0"}])

    assert parse(body).videos[0].video_url_ttl == 0


@pytest.mark.parametrize(("sent", "read"), [("12.5", 12), (12.9, 12), ("soon", None), ([], None), (True, None)])
def test_an_odd_number_in_an_informational_field_never_fails_the_poll(sent, read):
    assert parse({"task": {"status": "TASK_STATUS_PROCESSING", "eta": sent}}).task.eta == read


def test_an_empty_extra_parses_to_defaults():
    result = parse({"task": {"task_id": "kt-1", "status": "TASK_STATUS_QUEUED"}, "extra": {}})

    assert result.extra.seed is None
    assert result.extra.debug_info.submit_time_ms is None


def test_a_missing_extra_and_media_lists_parse_to_defaults():
    result = parse({"task": {"task_id": "kt-1", "status": "TASK_STATUS_QUEUED"}})

    assert (result.extra.seed, result.videos, result.images, result.audios) == (None, [], [], [])


def test_null_extra_videos_and_debug_info_parse_to_defaults():
    result = parse(
        {"task": {"task_id": "kt-1", "status": "TASK_STATUS_QUEUED"}, "extra": {"debug_info": None}, "videos": None}
    )

    assert result.videos == []
    assert result.extra.debug_info.submit_time_ms is None
    assert parse({"task": {"status": "TASK_STATUS_QUEUED"}, "extra": None}).extra.seed is None


def test_unknown_keys_are_kept_on_the_task_the_video_the_extra_and_the_top_level(result_body):
    body = result_body("TASK_STATUS_SUCCEED")
    body["task"]["queue_position"] = 3
    body["videos"][0]["nsfw_detection_result"] = None
    body["extra"]["billing"] = {"units": 5}
    body["webhook"] = {"delivered": True}

    result = parse(body)

    assert result.task.model_extra == {"queue_position": 3}
    assert result.videos[0].model_extra == {"nsfw_detection_result": None}
    assert result.extra.model_extra == {"billing": {"units": 5}}
    assert result.model_extra == {"webhook": {"delivered": True}}


def test_a_result_without_a_task_is_refused():
    with pytest.raises(ValidationError):
        parse({"videos": []})


def test_a_video_without_a_url_is_refused():
    with pytest.raises(ValidationError):
        parse({"task": {"status": "TASK_STATUS_SUCCEED"}, "videos": [{"video_type": "mp4"}]})


# -- status --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "state", "in_flight", "terminal"),
    [
        ("TASK_STATUS_QUEUED", TaskStatus.QUEUED, True, False),
        ("TASK_STATUS_PROCESSING", TaskStatus.PROCESSING, True, False),
        ("TASK_STATUS_SUCCEED", TaskStatus.SUCCEED, False, True),
        ("TASK_STATUS_FAILED", TaskStatus.FAILED, False, True),
    ],
)
def test_each_documented_status_maps_to_its_state(raw, state, in_flight, terminal):
    parsed = parse({"task": {"status": raw}}).task.state

    assert (parsed, parsed.is_in_flight, parsed.is_terminal) == (state, in_flight, terminal)


@pytest.mark.parametrize("raw", ["TASK_STATUS_SUCCESS", "succeed", "TASK_STATUS_CANCELLED", "", None])
def test_an_undocumented_status_is_unknown_never_a_success(raw):
    state = parse({"task": {"task_id": "kt-1", "status": raw}}).task.state

    assert state is TaskStatus.UNKNOWN
    assert not state.is_terminal
    assert not state.is_in_flight


def test_the_raw_status_is_kept_for_messages():
    assert parse({"task": {"status": "TASK_STATUS_CANCELLED"}}).task.status == "TASK_STATUS_CANCELLED"


# -- summary -------------------------------------------------------------------------------------------


def test_summary_holds_the_task_id_model_status_videos_seed_and_timings(result_body):
    summary = parse(result_body("TASK_STATUS_SUCCEED")).summary(model="kling-v3.0-std-t2v")

    assert summary == {
        "kling_task_id": "kt-1",
        "model": "kling-v3.0-std-t2v",
        "status": "TASK_STATUS_SUCCEED",
        "reason": None,
        "videos": [{"url": "https://cdn.example.com/out/kt-1.mp4?X-Amz-Signature=abc", "ttl": 3600, "type": "mp4"}],
        "seed": 158881667,
        "submit_time_ms": 1731000000000,
        "execute_time_ms": 1731000001000,
        "complete_time_ms": 1731000090000,
    }


def test_summary_is_json_serialisable_and_leaves_out_unknown_keys(result_body):
    body = result_body("TASK_STATUS_SUCCEED")
    body["videos"][0]["nsfw_detection_result"] = {"score": 0.1}
    body["raw_headers"] = {"x": "y"}

    text = json.dumps(parse(body).summary())

    assert "nsfw_detection_result" not in text
    assert "raw_headers" not in text


def test_summary_carries_the_vendor_reason_of_a_failure(result_body):
    summary = parse(result_body("TASK_STATUS_FAILED", reason="ILLEGAL_PROMPT")).summary()

    assert (summary["status"], summary["reason"], summary["videos"]) == ("TASK_STATUS_FAILED", "ILLEGAL_PROMPT", [])


# -- submit answer -------------------------------------------------------------------------------------


def test_a_submit_answer_carries_the_task_id():
    assert SubmitResponse.model_validate({"task_id": "kt-9", "request_id": "r"}).task_id == "kt-9"


@pytest.mark.parametrize("body", [{}, {"task_id": ""}, {"task_id": None}, {"id": "kt-9"}])
def test_a_submit_answer_without_a_task_id_is_refused(body):
    with pytest.raises(ValidationError):
        SubmitResponse.model_validate(body)


# -- error bodies --------------------------------------------------------------------------------------


def test_an_error_body_with_code_reason_message_and_metadata_parses():
    error = ApiError.from_body(
        {"code": 400, "reason": "INVALID_REQUEST_BODY", "message": "duration is invalid", "metadata": {"f": 1}}
    )

    assert error is not None
    assert (error.code, error.reason, error.message, error.metadata) == (
        400,
        "INVALID_REQUEST_BODY",
        "duration is invalid",
        {"f": 1},
    )


def test_the_nested_error_body_shape_parses():
    error = ApiError.from_body({"error": {"message": "rate limited", "code": "429", "type": "RATE_LIMIT_EXCEEDED"}})

    assert error is not None
    assert (error.code, error.reason, error.message) == ("429", "RATE_LIMIT_EXCEEDED", "rate limited")


def test_a_nested_error_given_as_text_is_the_message():
    error = ApiError.from_body({"error": "Unauthorized"})

    assert error is not None
    assert error.message == "Unauthorized"


@pytest.mark.parametrize("body", [None, "Bad Gateway", [], {}, {"code": 502}, {"error": {}}])
def test_a_body_in_neither_shape_is_not_an_api_error(body):
    assert ApiError.from_body(body) is None


# -- trigger events ------------------------------------------------------------------------------------


def test_a_success_event_round_trips_through_its_payload(result_body):
    event = TaskEvent(
        status="success",
        kling_task_id="kt-1",
        message="the video is ready",
        result=parse(result_body("TASK_STATUS_SUCCEED")),
    )

    payload = event.to_payload()

    assert json.loads(json.dumps(payload)) == payload
    assert TaskEvent.model_validate(payload) == event


def test_an_event_payload_leaves_out_a_missing_result():
    payload = TaskEvent(status="timeout", kling_task_id="kt-1", message="too slow").to_payload()

    assert payload == {"status": "timeout", "kling_task_id": "kt-1", "message": "too slow"}


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "done", "kling_task_id": "kt-1", "message": "?"},
        {"status": "success", "message": "no task id"},
        {"status": "success", "kling_task_id": "kt-1"},
        {"status": "success", "kling_task_id": "kt-1", "message": "m", "api_key": "leak"},
        {"status": "success", "kling_task_id": "kt-1", "message": "m", "result": {"videos": []}},
    ],
    ids=["unknown-status", "no-task-id", "no-message", "unknown-key", "result-without-task"],
)
def test_a_malformed_event_is_refused(payload):
    with pytest.raises(ValidationError):
        TaskEvent.model_validate(payload)
