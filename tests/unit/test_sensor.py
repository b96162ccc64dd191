"""KlingTaskSensor: waits for a generation submitted earlier, on the triggerer or by poking."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from _fakes import (
    FAILED,
    PROCESSING,
    QUEUED,
    SUCCEED,
    VIDEO_URL,
    make_context,
    task_event,
    task_result,
)
from airflow.providers.common.compat.sdk import AirflowFailException, PokeReturnValue, TaskDeferred

from airflow_provider_kling.exceptions import (
    KlingContentPolicyError,
    KlingError,
    KlingNotFoundError,
    KlingTaskFailedError,
    KlingTimeoutError,
    KlingValidationError,
)
from airflow_provider_kling.sensors.kling import KlingTaskSensor
from airflow_provider_kling.triggers.kling import KlingTaskTrigger

KLING_TASK_ID = "kt-1"

pytestmark = pytest.mark.usefixtures("kling_conn", "clock")


def sensor(**kwargs: Any) -> KlingTaskSensor:
    kwargs.setdefault("task_id", "wait_for_video")
    kwargs.setdefault("kling_task_id", KLING_TASK_ID)
    return KlingTaskSensor(**kwargs)


def answer(status: str, **kwargs: Any) -> httpx.Response:
    return httpx.Response(200, json=task_result(status, **kwargs))


# -- poke --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [QUEUED, PROCESSING])
def test_poke_is_false_while_the_video_is_in_flight(result_route, status):
    result_route.side_effect = [answer(status)]

    assert sensor().poke(make_context()) is False


def test_poke_returns_the_result_summary_once_the_video_is_ready(result_route):
    result_route.side_effect = [answer(SUCCEED)]
    context = make_context()

    done = sensor().poke(context)

    assert isinstance(done, PokeReturnValue)
    assert done.is_done
    assert done.xcom_value["kling_task_id"] == KLING_TASK_ID
    assert done.xcom_value["status"] == SUCCEED
    assert done.xcom_value["videos"] == [{"url": VIDEO_URL, "ttl": 3600, "type": "mp4"}]
    assert context["ti"].xcoms["kling_video_url"] == VIDEO_URL


def test_poke_raises_the_vendor_reason_when_the_generation_failed(result_route):
    result_route.side_effect = [answer(FAILED, reason="render farm error")]

    with pytest.raises(KlingTaskFailedError, match="render farm error") as info:
        sensor().poke(make_context())

    assert not isinstance(info.value, AirflowFailException)


def test_poke_fails_without_retry_on_a_content_policy_refusal(result_route):
    result_route.side_effect = [answer(FAILED, reason="ILLEGAL_IMAGE_CONTENT")]

    with pytest.raises(KlingContentPolicyError) as info:
        sensor().poke(make_context())

    assert isinstance(info.value, AirflowFailException)


def test_poke_raises_on_an_undocumented_status(result_route):
    result_route.side_effect = [answer("TASK_STATUS_PAUSED")]

    with pytest.raises(KlingError, match="TASK_STATUS_PAUSED"):
        sensor().poke(make_context())


def test_poke_raises_when_the_vendor_still_does_not_know_the_task_after_the_grace_window(clock, result_route):
    result_route.respond(404, json={"code": 404, "reason": "TASK_NOT_FOUND", "message": "?"})
    waiting = sensor(not_found_grace=60)
    context = make_context()

    assert waiting.poke(context) is False  # within the window, counted from the sensor's first poll
    clock.advance(60)
    with pytest.raises(KlingNotFoundError, match="TASK_NOT_FOUND") as caught:
        waiting.poke(context)

    assert "kt-1" in str(caught.value)
    assert "60 s grace window" in str(caught.value)


# -- deferrable execute ------------------------------------------------------------------------------


def test_deferrable_execute_checks_once_then_defers_to_a_kling_task_trigger(clock, result_route):
    result_route.side_effect = [answer(PROCESSING)]
    waiting = sensor(kling_conn_id="kling_default", poll_interval=5, max_poll_interval=30, timeout=1800)

    with pytest.raises(TaskDeferred) as info:
        waiting.execute(make_context())

    assert result_route.call_count == 1
    deferred = info.value
    assert isinstance(deferred.trigger, KlingTaskTrigger)
    assert deferred.method_name == "execute_complete"
    assert deferred.kwargs == {"kling_task_id": KLING_TASK_ID}
    assert deferred.trigger.serialize()[1] == {
        "kling_task_id": KLING_TASK_ID,
        "end_time": clock.now + 1800,
        "kling_conn_id": "kling_default",
        "poll_interval": 5.0,
        "max_poll_interval": 30.0,
        "max_attempts": 6,
        "submitted_at": clock.now,  # the grace window goes on from the sensor's first poll
        "not_found_grace": 120.0,
        "progress_log_interval": 300.0,
    }


def test_deferrable_execute_outlasts_the_trigger_deadline(clock, result_route):
    result_route.side_effect = [answer(QUEUED)]

    with pytest.raises(TaskDeferred) as info:
        sensor(timeout=600).execute(make_context())

    assert info.value.timeout is not None
    assert info.value.timeout > timedelta(seconds=info.value.trigger.end_time - clock.now)


def test_deferrable_execute_returns_at_once_when_the_video_is_already_ready(result_route):
    result_route.side_effect = [answer(SUCCEED)]

    summary = sensor().execute(make_context())  # no TaskDeferred

    assert summary["kling_task_id"] == KLING_TASK_ID
    assert summary["status"] == SUCCEED


def test_deferrable_execute_fails_at_once_when_the_generation_already_failed(result_route):
    result_route.side_effect = [answer(FAILED, reason="render farm error")]

    with pytest.raises(KlingTaskFailedError, match="render farm error"):
        sensor().execute(make_context())


@pytest.mark.parametrize("empty", ["", "   ", "None"], ids=["empty", "blank", "rendered-none"])
def test_an_empty_kling_task_id_is_a_clear_error_before_any_request(api, empty):
    with pytest.raises(KlingError, match="kling_task_id is empty: did the submitting task push it to XCom"):
        sensor(kling_task_id=empty).execute(make_context())

    assert not api.calls


def test_the_kling_task_id_is_templated(result_route):
    result_route.side_effect = [answer(SUCCEED)]
    waiting = sensor(kling_task_id="{{ params.kling_task_id }}")
    waiting.render_template_fields({"params": {"kling_task_id": KLING_TASK_ID}})

    assert waiting.execute(make_context())["kling_task_id"] == KLING_TASK_ID
    assert result_route.call_count == 1


# -- execute_complete --------------------------------------------------------------------------------


def test_execute_complete_returns_the_result_summary():
    event = task_event("success", result=task_result(SUCCEED))

    summary = sensor().execute_complete(make_context(), event=event, kling_task_id=KLING_TASK_ID)

    assert summary["kling_task_id"] == KLING_TASK_ID
    assert summary["videos"][0]["url"] == VIDEO_URL


def test_execute_complete_raises_the_vendor_reason_on_failure():
    event = task_event("failed", result=task_result(FAILED, reason="render farm error"))

    with pytest.raises(KlingTaskFailedError, match="render farm error"):
        sensor().execute_complete(make_context(), event=event, kling_task_id=KLING_TASK_ID)


def test_execute_complete_raises_a_timeout_naming_the_kling_task():
    with pytest.raises(KlingTimeoutError, match=KLING_TASK_ID):
        sensor().execute_complete(make_context(), event=task_event("timeout"), kling_task_id=KLING_TASK_ID)


def test_execute_complete_refuses_an_event_for_another_kling_task():
    event = task_event("success", kling_task_id="kt-other", result=task_result(SUCCEED, kling_task_id="kt-other"))

    with pytest.raises(KlingError, match="expected 'kt-1'"):
        sensor().execute_complete(make_context(), event=event, kling_task_id=KLING_TASK_ID)


def test_execute_complete_refuses_a_malformed_event():
    with pytest.raises(KlingError, match="malformed trigger event"):
        sensor().execute_complete(make_context(), event={"status": "success"}, kling_task_id=KLING_TASK_ID)


# -- non-deferrable ----------------------------------------------------------------------------------


def test_non_deferrable_execute_pokes_until_ready_without_real_sleeping(clock, result_route):
    result_route.side_effect = [answer(QUEUED), answer(PROCESSING), answer(SUCCEED)]

    summary = sensor(deferrable=False, poll_interval=5).execute(make_context())

    assert summary["status"] == SUCCEED
    assert result_route.call_count == 3
    assert clock.sleeps == [5.0, 5.0]


def test_non_deferrable_execute_raises_the_vendor_reason(clock, result_route):
    result_route.side_effect = [answer(PROCESSING), answer(FAILED, reason="render farm error")]

    with pytest.raises(KlingTaskFailedError, match="render farm error"):
        sensor(deferrable=False, poll_interval=5).execute(make_context())


@pytest.mark.parametrize("poll_interval", [0, -1])
def test_a_non_positive_poll_interval_is_rejected_at_construction(poll_interval):
    with pytest.raises(KlingValidationError, match="poll_interval"):
        sensor(poll_interval=poll_interval)
