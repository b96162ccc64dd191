"""KlingTaskTrigger, driven directly on the test's event loop (fake clock, mocked vendor, no waiting)."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import httpx
import pytest
from _fakes import (
    API_KEY,
    FAILED,
    PROCESSING,
    QUEUED,
    SUCCEED,
    VIDEO_URL,
    FakeClock,
    task_result,
)

from airflow_provider_kling.models import TaskEvent
from airflow_provider_kling.triggers.kling import KlingTaskTrigger

KLING_TASK_ID = "kt-1"
#: Real seconds a test may take before it is called hung (the fake clock never waits for real).
HANG = 5.0
#: ``asyncio.sleep`` before the fake clock replaces it: for a test that must let real time pass.
REAL_ASYNC_SLEEP = asyncio.sleep

pytestmark = pytest.mark.usefixtures("kling_conn", "close_shared_clients")


def make_trigger(clock: FakeClock, **overrides: Any) -> KlingTaskTrigger:
    kwargs: dict[str, Any] = {
        "kling_task_id": KLING_TASK_ID,
        "end_time": clock.now + 600,
        "poll_interval": 10,
        "max_poll_interval": 60,
        **overrides,
    }
    return KlingTaskTrigger(**kwargs)


async def first_event(trigger: KlingTaskTrigger) -> dict[str, Any]:
    event = await asyncio.wait_for(trigger.run().__anext__(), HANG)
    return event.payload


def answers(*bodies: dict[str, Any]) -> list[httpx.Response]:
    return [httpx.Response(200, json=body) for body in bodies]


# -- terminal events ---------------------------------------------------------------------------------


async def test_yields_success_with_the_parsed_result_when_the_video_is_ready(clock, result_route):
    result_route.side_effect = answers(task_result(SUCCEED))

    payload = await first_event(make_trigger(clock))

    event = TaskEvent.model_validate(payload)
    assert event.status == "success"
    assert event.kling_task_id == KLING_TASK_ID
    assert event.result is not None
    assert event.result.videos[0].video_url == VIDEO_URL
    assert event.result.videos[0].video_url_ttl == 3600
    assert event.result.extra.seed == 158881667


async def test_keeps_polling_while_queued_or_processing(clock, result_route):
    result_route.side_effect = answers(task_result(QUEUED), task_result(PROCESSING), task_result(SUCCEED))

    payload = await first_event(make_trigger(clock))

    assert payload["status"] == "success"
    assert result_route.call_count == 3


async def test_yields_failed_with_the_vendor_reason(clock, result_route):
    result_route.side_effect = answers(task_result(FAILED, reason="ILLEGAL_PROMPT: the prompt was refused"))

    payload = await first_event(make_trigger(clock))

    assert payload["status"] == "failed"
    assert "ILLEGAL_PROMPT: the prompt was refused" in payload["message"]
    assert payload["result"]["task"]["reason"] == "ILLEGAL_PROMPT: the prompt was refused"


async def test_yields_timeout_without_polling_when_end_time_has_passed(clock, result_route):
    payload = await first_event(make_trigger(clock, end_time=clock.now - 1))

    assert payload["status"] == "timeout"
    assert payload["kling_task_id"] == KLING_TASK_ID
    assert not result_route.called


async def test_yields_timeout_when_end_time_passes_while_the_video_renders(clock, result_route):
    result_route.side_effect = lambda request: httpx.Response(200, json=task_result(PROCESSING, eta=500))
    start = clock.now

    payload = await first_event(make_trigger(clock, end_time=start + 45))

    assert payload["status"] == "timeout"
    assert clock.now == pytest.approx(start + 45)  # the last wait is cut to the deadline, not overshot


async def test_yields_timeout_when_end_time_passes_during_a_retried_poll(clock, result_route):
    def slow_gateway_error(request: httpx.Request) -> httpx.Response:
        clock.advance(40)  # the proxy hangs, then gives up
        return httpx.Response(504, text="<html><body>504 Gateway Time-out</body></html>")

    result_route.side_effect = slow_gateway_error

    payload = await first_event(make_trigger(clock, end_time=clock.now + 30))

    assert payload["status"] == "timeout"
    assert "504" in payload["message"]


async def test_yields_timeout_when_retries_are_cut_short_by_the_deadline(clock, result_route):
    result_route.side_effect = lambda request: httpx.Response(503, json={"reason": "OVERLOADED", "message": "busy"})

    payload = await first_event(make_trigger(clock, end_time=clock.now + 3, max_attempts=10))

    assert payload["status"] == "timeout"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, {"code": 401, "reason": "MISSING_API_KEY", "message": "no key"}, "MISSING_API_KEY"),
        (403, {"code": 403, "reason": "INVALID_API_KEY", "message": "key refused"}, "INVALID_API_KEY"),
        (404, {"code": 404, "reason": "API_NOT_FOUND", "message": "no such API"}, "API_NOT_FOUND"),
        (400, {"error": {"message": "bad task id", "code": 400}}, "bad task id"),
    ],
    ids=["401", "403", "404", "400-error-shape"],
)
async def test_yields_error_at_once_on_a_permanent_4xx(clock, result_route, status, body, reason):
    result_route.side_effect = [httpx.Response(status, json=body), httpx.Response(status, json=body)]

    payload = await first_event(make_trigger(clock))

    assert payload["status"] == "error"
    assert payload["http_status"] == status
    assert payload.get("reason") == reason or reason in payload["message"]
    assert payload["error_type"] in ("KlingAuthError", "KlingNotFoundError", "KlingRequestError")
    # Not retried, but for one poll after a refused key (a rotated key is read again).
    assert result_route.call_count == (2 if payload["error_type"] == "KlingAuthError" else 1)


async def test_yields_error_never_success_on_an_undocumented_status(clock, result_route):
    body = task_result("TASK_STATUS_CANCELLED", videos=[{"video_url": VIDEO_URL}])
    result_route.side_effect = answers(body)

    payload = await first_event(make_trigger(clock))

    assert payload["status"] == "error"
    assert "TASK_STATUS_CANCELLED" in payload["message"]


# -- transient failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"code": 500, "reason": "GET_RESULT_FAILED", "message": "try again"}),
        httpx.Response(429, json={"code": 429, "reason": "RATE_LIMIT_EXCEEDED", "message": "slow down"}),
        httpx.Response(502, text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"),
        httpx.Response(503, text="Service Unavailable"),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
    ],
    ids=["500", "429", "html-502", "text-503", "read-timeout", "connect-error"],
)
async def test_retries_a_transient_failure_then_succeeds(clock, result_route, failure):
    result_route.side_effect = [failure, httpx.Response(200, json=task_result(SUCCEED))]

    payload = await first_event(make_trigger(clock))

    assert payload["status"] == "success"
    assert result_route.call_count == 2


async def test_retries_an_unreadable_200_answer_then_succeeds(clock, result_route):
    result_route.side_effect = [
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, json=task_result(SUCCEED)),
    ]

    payload = await first_event(make_trigger(clock))

    assert payload["status"] == "success"


async def test_waits_what_retry_after_asks_on_429(clock, result_route):
    result_route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"reason": "RATE_LIMIT_EXCEEDED"}),
        httpx.Response(200, json=task_result(SUCCEED)),
    ]

    await first_event(make_trigger(clock))

    assert clock.sleeps == [7.0]


async def test_yields_error_when_the_failure_budget_is_spent(clock, result_route):
    result_route.side_effect = lambda request: httpx.Response(500, json={"reason": "GET_RESULT_FAILED"})

    payload = await first_event(make_trigger(clock, max_attempts=3))

    assert payload["status"] == "error"
    assert payload["reason"] == "GET_RESULT_FAILED"
    assert payload["error_type"] == "KlingTransientError"
    assert result_route.call_count == 3


async def test_failure_budget_resets_after_a_good_poll(clock, result_route):
    error = httpx.Response(500, json={"reason": "GET_RESULT_FAILED"})
    result_route.side_effect = [
        error,
        error,
        httpx.Response(200, json=task_result(PROCESSING)),
        error,
        error,
        httpx.Response(200, json=task_result(SUCCEED)),
    ]

    payload = await first_event(make_trigger(clock, max_attempts=3))

    assert payload["status"] == "success"


# -- the event stream --------------------------------------------------------------------------------


async def test_yields_exactly_one_event_and_then_ends(clock, result_route):
    result_route.side_effect = answers(task_result(PROCESSING), task_result(SUCCEED))

    async def all_events() -> list[Any]:
        return [event async for event in make_trigger(clock).run()]

    events = await asyncio.wait_for(all_events(), HANG)

    assert len(events) == 1
    assert events[0].payload["status"] == "success"


async def test_event_payload_is_json_and_carries_no_secret(clock, result_route):
    result_route.side_effect = answers(task_result(SUCCEED))

    payload = await first_event(make_trigger(clock))

    text = json.dumps(payload)
    assert API_KEY not in text
    assert json.loads(text) == payload


async def test_sends_the_api_key_as_a_bearer_token(clock, result_route):
    result_route.side_effect = answers(task_result(SUCCEED))

    await first_event(make_trigger(clock))

    assert result_route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_two_copies_of_one_trigger_both_finish(clock, result_route):
    result_route.side_effect = lambda request: httpx.Response(200, json=task_result(SUCCEED))

    first, second = await asyncio.wait_for(
        asyncio.gather(first_event(make_trigger(clock)), first_event(make_trigger(clock))), HANG
    )

    assert first["status"] == second["status"] == "success"


# -- progress and pacing -----------------------------------------------------------------------------


async def test_logs_status_progress_and_eta_on_every_poll(clock, result_route, captured_logs):
    result_route.side_effect = answers(
        task_result(QUEUED),
        task_result(PROCESSING, progress=35, eta="42"),
        task_result(SUCCEED, progress=0),
    )

    await first_event(make_trigger(clock))

    lines = [line for line in captured_logs.messages(containing=KLING_TASK_ID) if "status=" in line]
    assert lines == [
        f"Kling task {KLING_TASK_ID}: status=TASK_STATUS_QUEUED progress=? eta=?",
        f"Kling task {KLING_TASK_ID}: status=TASK_STATUS_PROCESSING progress=35% eta=42s",
        f"Kling task {KLING_TASK_ID}: status=TASK_STATUS_SUCCEED progress=0% eta=?",
    ]


async def test_sleeps_longer_while_the_eta_is_far_and_poll_interval_when_it_is_near(clock, result_route):
    result_route.side_effect = answers(
        task_result(PROCESSING, eta=600),  # far: capped at max_poll_interval
        task_result(PROCESSING, eta=50),  # half the eta
        task_result(PROCESSING, eta=4),  # near: poll_interval
        task_result(PROCESSING),  # no eta: poll_interval
        task_result(SUCCEED),
    )

    await first_event(make_trigger(clock, poll_interval=10, max_poll_interval=60))

    assert clock.sleeps == [60.0, 25.0, 10.0, 10.0]


async def test_without_max_poll_interval_backs_off_to_six_poll_intervals(clock, result_route):
    result_route.side_effect = answers(task_result(PROCESSING, eta=3600), task_result(SUCCEED))

    await first_event(make_trigger(clock, poll_interval=5, max_poll_interval=None))

    assert clock.sleeps == [30.0]


async def test_waits_end_on_a_tenth_of_a_second_so_many_triggers_wake_together(clock, result_route):
    clock.now = 1_800_000_000.03
    result_route.side_effect = answers(task_result(PROCESSING), task_result(PROCESSING), task_result(SUCCEED))

    await first_event(make_trigger(clock, poll_interval=5, max_poll_interval=None))

    assert clock.sleeps == [pytest.approx(4.97), pytest.approx(5.0)]
    assert round(clock.now * 10) == pytest.approx(clock.now * 10, abs=1e-4)


# -- serialisation and kill --------------------------------------------------------------------------


def test_serialize_returns_the_class_path_and_primitive_kwargs_only():
    trigger = KlingTaskTrigger(kling_task_id=KLING_TASK_ID, end_time=1_800_000_600.5, poll_interval=15)

    classpath, kwargs = trigger.serialize()

    assert classpath == "airflow_provider_kling.triggers.kling.KlingTaskTrigger"
    assert all(isinstance(value, (str, int, float, bool)) for value in kwargs.values())
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert "max_poll_interval" not in kwargs  # None is left out
    assert API_KEY not in json.dumps(kwargs)


def test_serialize_round_trips_through_the_class_path():
    trigger = KlingTaskTrigger(
        kling_task_id=KLING_TASK_ID,
        end_time=1_800_000_600.5,
        kling_conn_id="kling_other",
        poll_interval=15,
        max_poll_interval=90,
        max_attempts=4,
    )
    classpath, kwargs = trigger.serialize()
    module_name, class_name = classpath.rsplit(".", 1)

    rebuilt = getattr(importlib.import_module(module_name), class_name)(**kwargs)

    assert isinstance(rebuilt, KlingTaskTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {
        "kling_task_id": KLING_TASK_ID,
        "end_time": 1_800_000_600.5,
        "kling_conn_id": "kling_other",
        "poll_interval": 15.0,
        "max_poll_interval": 90.0,
        "max_attempts": 4,
        "not_found_grace": 120.0,
        "progress_log_interval": 300.0,
    }


def test_a_rebuilt_trigger_keeps_its_absolute_deadline(clock):
    original = make_trigger(clock, end_time=clock.now + 300)
    _, kwargs = original.serialize()

    clock.advance(200)  # the triggerer restarts a while later
    rebuilt = KlingTaskTrigger(**kwargs)

    assert rebuilt.end_time == original.end_time == kwargs["end_time"]


async def test_a_trigger_rebuilt_after_its_deadline_times_out(clock, result_route):
    _, kwargs = make_trigger(clock, end_time=clock.now + 300).serialize()
    clock.advance(301)

    payload = await first_event(KlingTaskTrigger(**kwargs))

    assert payload["status"] == "timeout"
    assert not result_route.called


async def test_on_kill_logs_the_kling_task_that_keeps_running(clock, captured_logs):
    await make_trigger(clock).on_kill()

    (warning,) = captured_logs.messages("warning")
    assert KLING_TASK_ID in warning
    assert "keeps rendering" in warning


async def test_a_cancelled_trigger_says_once_what_it_means_where_on_kill_is_never_called(
    clock, result_route, captured_logs
):
    """Before Airflow 3.3 a killed task only cancels its trigger: the cancellation is the only signal."""
    from airflow_provider_kling._compat import TRIGGER_ON_KILL_SUPPORTED

    result_route.respond(200, json=task_result(PROCESSING))
    waiting = asyncio.ensure_future(make_trigger(clock, end_time=clock.now + 10**9).run().__anext__())
    hang_at = time.monotonic() + HANG
    while not result_route.called and time.monotonic() < hang_at:
        await REAL_ASYNC_SLEEP(0.001)
    waiting.cancel()

    with pytest.raises(asyncio.CancelledError):
        await waiting
    said = captured_logs.messages(containing="cancelled")
    if TRIGGER_ON_KILL_SUPPORTED:
        assert said == []  # on_kill speaks for a killed task; any other cancellation is routine
    else:
        assert len(said) == 1
        assert KLING_TASK_ID in said[0]
        assert "may keep rendering" in said[0]


# -- unusable connections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn_id", "connection", "named"),
    [
        pytest.param("kling_nowhere", None, "kling_nowhere", id="missing"),
        pytest.param("kling_keyless", {"conn_type": "kling", "host": "http://127.0.0.1:8089"}, "API key", id="keyless"),
        pytest.param(
            "kling_plain",
            {"conn_type": "kling", "host": "http://api.example.com", "password": API_KEY},
            "https",
            id="plain-http-not-loopback",
        ),
    ],
)
async def test_yields_error_for_an_unusable_connection(monkeypatch, clock, api, conn_id, connection, named):
    if connection is not None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))

    payload = await first_event(make_trigger(clock, kling_conn_id=conn_id))

    assert payload["status"] == "error"
    assert named in payload["message"]
    assert API_KEY not in payload["message"]
    assert not api.calls
