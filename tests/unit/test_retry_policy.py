"""The retry policies and the failure classification they rely on, tested without HTTP or real waiting.

A poll is read-only: every transient failure is retried. A submit costs money and has no idempotency
key: it is retried only when the request surely created nothing (never sent, or answered 429).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from tenacity import Retrying

from airflow_provider_kling import exceptions
from airflow_provider_kling.hooks._errors import error_from_response, error_from_transport, submit_uncertain
from airflow_provider_kling.hooks.retry import apoll_retrying, poll_retrying, submit_retrying

URL = "https://api.novita.ai/v3/async/task-result?task_id=kt-1"


def failing(*errors: BaseException, then: str = "done") -> Callable[[], str]:
    """A call that raises ``errors`` in turn, then returns ``then``; ``calls`` counts attempts."""
    pending = list(errors)

    def call() -> str:
        call.calls += 1  # type: ignore[attr-defined]
        if pending:
            raise pending.pop(0)
        return then

    call.calls = 0  # type: ignore[attr-defined]
    return call


def run(policy: Retrying, call: Callable[[], str]) -> str:
    return policy(call)


@pytest.fixture
def waits(fake_clock) -> list[float]:
    return fake_clock.sleeps


# -- which failures are retried ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        exceptions.KlingTransientError("HTTP 503"),
        exceptions.KlingConnectionError("connection refused"),
        exceptions.KlingRateLimitError("HTTP 429"),
    ],
)
def test_a_poll_retries_every_transient_failure(waits, failure):
    call = failing(failure)

    assert run(poll_retrying(), call) == "done"
    assert call.calls == 2


@pytest.mark.parametrize(
    "failure",
    [
        exceptions.KlingAuthError("HTTP 401"),
        exceptions.KlingRequestError("HTTP 400"),
        exceptions.KlingNotFoundError("HTTP 404"),
        exceptions.KlingValidationError("duration=16"),
        ValueError("a bug"),
    ],
)
def test_a_poll_does_not_retry_a_permanent_failure(waits, failure):
    call = failing(failure)

    with pytest.raises(type(failure)):
        run(poll_retrying(), call)
    assert call.calls == 1


@pytest.mark.parametrize(
    "failure", [exceptions.KlingConnectionError("connection refused"), exceptions.KlingRateLimitError("HTTP 429")]
)
def test_a_submit_retries_only_failures_that_surely_created_no_task(waits, failure):
    call = failing(failure)

    assert run(submit_retrying(), call) == "done"
    assert call.calls == 2


@pytest.mark.parametrize(
    "failure", [exceptions.KlingTransientError("HTTP 500"), exceptions.KlingTransientError("ReadTimeout")]
)
def test_a_submit_is_not_retried_after_a_failure_that_may_have_created_a_task(waits, failure):
    call = failing(failure)

    with pytest.raises(exceptions.KlingTransientError):
        run(submit_retrying(), call)
    assert call.calls == 1


def test_the_last_error_itself_is_raised_not_a_retry_wrapper(waits):
    last = exceptions.KlingTransientError("HTTP 503, third time")

    with pytest.raises(exceptions.KlingTransientError) as caught:
        run(
            poll_retrying(max_attempts=3),
            failing(exceptions.KlingTransientError("1"), exceptions.KlingTransientError("2"), last),
        )

    assert caught.value is last


# -- how long to wait ----------------------------------------------------------------------------------


def test_waits_grow_exponentially_with_up_to_one_initial_wait_of_jitter(waits):
    run(poll_retrying(max_attempts=5), failing(*[exceptions.KlingTransientError("503")] * 4))

    assert [int(wait) for wait in waits] == [1, 2, 4, 8]
    assert all(0 <= wait - int(wait) <= 1 for wait in waits)


def test_waits_never_exceed_max_wait(waits):
    run(poll_retrying(max_attempts=8, max_wait=5), failing(*[exceptions.KlingTransientError("503")] * 7))

    assert max(waits) <= 5


def test_a_429_waits_what_retry_after_asks(waits):
    run(poll_retrying(), failing(exceptions.KlingRateLimitError("429", retry_after=12.5)))

    assert waits == [12.5]


def test_a_429_without_retry_after_backs_off_like_any_failure(waits):
    run(poll_retrying(), failing(exceptions.KlingRateLimitError("429")))

    assert 1 <= waits[0] <= 2


# -- when to stop --------------------------------------------------------------------------------------


def test_a_poll_stops_after_max_attempts(waits):
    call = failing(*[exceptions.KlingTransientError("503")] * 10)

    with pytest.raises(exceptions.KlingTransientError):
        run(poll_retrying(max_attempts=4), call)
    assert call.calls == 4


def test_a_poll_stops_before_a_wait_that_would_pass_the_deadline(fake_clock):
    deadline = fake_clock.now + 2.5  # the first wait (1-2 s) fits, the second (2-3 s) does not
    call = failing(*[exceptions.KlingTransientError("503", kling_task_id="kt-1")] * 10)

    with pytest.raises(exceptions.KlingTimeoutError) as caught:
        run(poll_retrying(max_attempts=10, deadline=deadline), call)

    assert call.calls == 2
    assert fake_clock.now < deadline
    assert str(caught.value) == "the deadline passed while retrying (503) [kling_task_id=kt-1]"


def test_a_poll_past_its_deadline_is_not_retried(fake_clock):
    call = failing(exceptions.KlingTransientError("503"))

    with pytest.raises(exceptions.KlingTimeoutError):
        run(poll_retrying(deadline=fake_clock.now - 1), call)
    assert call.calls == 1


def test_throttling_is_bounded_by_the_deadline_not_the_failure_budget(fake_clock):
    call = failing(*[exceptions.KlingRateLimitError("429", retry_after=1)] * 10)

    assert run(poll_retrying(max_attempts=2, deadline=fake_clock.now + 600), call) == "done"
    assert call.calls == 11


def test_without_a_deadline_throttling_spends_the_failure_budget(waits):
    call = failing(*[exceptions.KlingRateLimitError("429", retry_after=1)] * 10)

    with pytest.raises(exceptions.KlingRateLimitError):
        run(poll_retrying(max_attempts=3), call)
    assert call.calls == 3


def test_each_retry_is_logged_with_the_attempt_the_wait_and_the_error(waits, caplog):
    with caplog.at_level(logging.WARNING, logger="airflow_provider_kling.hooks.retry"):
        run(poll_retrying(), failing(exceptions.KlingRateLimitError("HTTP 429 slow down", retry_after=3)))

    assert "Kling call failed (attempt 1), retrying in 3.0 s: HTTP 429 slow down" in caplog.messages


async def test_the_async_poll_policy_retries_like_the_sync_one(fake_clock):
    call = failing(exceptions.KlingTransientError("503"), exceptions.KlingRateLimitError("429", retry_after=4))

    async def acall() -> str:
        return call()

    assert await apoll_retrying()(acall) == "done"
    assert call.calls == 3
    assert fake_clock.sleeps[1] == 4


# -- classification of answers -------------------------------------------------------------------------


def answer(status: int, *, json: object = None, text: str | None = None, headers: dict | None = None) -> httpx.Response:
    request = httpx.Request("GET", URL)
    if json is not None:
        return httpx.Response(status, json=json, headers=headers, request=request)
    return httpx.Response(status, text=text or "", headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        (400, "INVALID_REQUEST_BODY", exceptions.KlingRequestError),
        (400, "ILLEGAL_PROMPT", exceptions.KlingContentPolicyError),
        (400, "ILLEGAL_IMAGE_CONTENT", exceptions.KlingContentPolicyError),
        (400, "MISSING_API_KEY", exceptions.KlingAuthError),
        (401, None, exceptions.KlingAuthError),
        (403, "INVALID_API_KEY", exceptions.KlingAuthError),
        (403, "NEED_REAL_NAME_VERIFY", exceptions.KlingAuthError),
        (404, "API_NOT_FOUND", exceptions.KlingNotFoundError),
        (404, "TASK_NOT_FOUND", exceptions.KlingNotFoundError),
        (408, None, exceptions.KlingTransientError),
        (409, None, exceptions.KlingRequestError),
        (429, "RATE_LIMIT_EXCEEDED", exceptions.KlingRateLimitError),
        (500, "BILLING_FAILED", exceptions.KlingTransientError),
        (502, None, exceptions.KlingTransientError),
        (503, None, exceptions.KlingTransientError),
        (504, None, exceptions.KlingTransientError),
    ],
)
def test_each_status_maps_to_its_error_type(status, reason, kind):
    body = {"code": status, "reason": reason, "message": "vendor says"} if reason else None

    error = error_from_response(answer(status, json=body, text="vendor says"), kling_task_id="kt-1")

    assert type(error) is kind
    assert (error.http_status, error.reason, error.kling_task_id) == (status, reason, "kt-1")
    assert "vendor says" in str(error)


def test_an_html_error_page_is_reduced_to_its_text():
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad&nbsp;Gateway</h1></body></html>"

    error = error_from_response(answer(502, text=page))

    assert str(error) == "GET /v3/async/task-result answered HTTP 502: 502 Bad Gateway 502 Bad Gateway [HTTP 502]"


def test_a_long_error_body_is_cut_short():
    assert len(str(error_from_response(answer(500, text="x" * 5000)))) < 300


def test_retry_after_in_seconds_is_read_from_a_429():
    error = error_from_response(answer(429, headers={"Retry-After": "30"}))

    assert isinstance(error, exceptions.KlingRateLimitError)
    assert error.retry_after == 30.0


def test_retry_after_as_an_http_date_is_read_from_a_429():
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)

    error = error_from_response(answer(429, headers={"Retry-After": when}))

    assert isinstance(error, exceptions.KlingRateLimitError)
    assert error.retry_after is not None
    assert 50 <= error.retry_after <= 60


@pytest.mark.parametrize("value", ["soon", "", "-5"])
def test_an_unusable_retry_after_is_ignored_or_clamped(value):
    error = error_from_response(answer(429, headers={"Retry-After": value}))

    assert isinstance(error, exceptions.KlingRateLimitError)
    assert error.retry_after in (None, 0.0)


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow dns"), httpx.PoolTimeout("pool full")],
)
def test_a_failure_before_the_request_was_sent_is_a_connection_error(exc):
    exc.request = httpx.Request("POST", "https://api.novita.ai/v3/async/kling-v3.0-std-t2v")

    error = error_from_transport(exc)

    assert type(error) is exceptions.KlingConnectionError
    assert str(error).startswith(f"POST https://api.novita.ai/v3/async/kling-v3.0-std-t2v failed: {type(exc).__name__}")


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("peer closed"), httpx.ReadError("reset")],
)
def test_a_failure_after_the_request_may_have_been_sent_is_only_transient(exc):
    error = error_from_transport(exc, kling_task_id="kt-1")

    assert type(error) is exceptions.KlingTransientError
    assert error.kling_task_id == "kt-1"


def test_a_transport_error_names_the_url_without_its_query():
    exc = httpx.ReadTimeout("timed out", request=httpx.Request("GET", URL))

    assert "task_id=" not in str(error_from_transport(exc))


def test_an_uncertain_submit_keeps_the_status_and_reason_and_says_what_to_do():
    sent = exceptions.KlingTransientError("POST answered HTTP 500", http_status=500, reason="CREATE_TASK_FAILED")

    error = submit_uncertain(sent, model="kling-v3.0-pro-t2v", sent_at="2026-01-01T10:00:00+00:00")

    assert isinstance(error, exceptions.KlingSubmitUncertainError)
    assert isinstance(error, exceptions.KlingError)
    assert (error.http_status, error.reason) == (500, "CREATE_TASK_FAILED")
    message = str(error)
    assert "submitting to kling-v3.0-pro-t2v failed after the request was sent" in message
    assert "submitted at about 2026-01-01T10:00:00+00:00" in message
    assert "KlingTaskSensor(kling_task_id=...)" in message
