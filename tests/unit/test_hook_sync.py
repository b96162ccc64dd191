"""KlingHook's synchronous calls against a mocked vendor: headers, errors, retries, waiting.

Nothing sleeps for real: ``fake_clock`` records every wait of the hook and of tenacity.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_kling import exceptions
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.models import TaskStatus, TextToVideoRequest

MODEL = "kling-v3.0-std-t2v"
SUBMIT = f"/v3/async/{MODEL}"
RESULT = "/v3/async/task-result"
BODY = {"prompt": "a red fox in the snow", "duration": 5}

HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


def error(status: int, reason: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": status, "reason": reason, "message": message, "metadata": {}})


@pytest.fixture(autouse=True)
def _no_real_waiting(fake_clock):
    """Every test of this module runs on the fake clock."""


@pytest.fixture
def hook(kling_conn):
    with KlingHook() as hook:
        yield hook


@pytest.fixture
def submit_route(kling_api):
    return kling_api.post(SUBMIT)


# -- submit: the happy path ----------------------------------------------------------------------------


def test_submit_posts_the_validated_body_and_returns_the_task_id(hook, submit_route):
    submit_route.respond(200, json={"task_id": "kt-1"})

    assert hook.submit(MODEL, {"prompt": "a red fox in the snow", "duration": "5"}) == "kt-1"
    assert json.loads(submit_route.calls.last.request.content) == {"prompt": "a red fox in the snow", "duration": 5}


def test_submit_accepts_a_typed_request(hook, submit_route):
    submit_route.respond(200, json={"task_id": "kt-1"})

    assert hook.submit(MODEL, TextToVideoRequest(prompt="a red fox", sound=False)) == "kt-1"
    assert json.loads(submit_route.calls.last.request.content) == {"prompt": "a red fox", "sound": False}


def test_submit_sends_the_bearer_key_and_json_content_type(hook, submit_route, kling_base_url, kling_api_key):
    submit_route.respond(200, json={"task_id": "kt-1"})

    hook.submit(MODEL, BODY)

    request = submit_route.calls.last.request
    assert str(request.url) == f"{kling_base_url}{SUBMIT}"
    assert request.headers["Authorization"] == f"Bearer {kling_api_key}"
    assert request.headers["Content-Type"] == "application/json"


def test_get_task_result_sends_the_key_the_content_type_and_the_task_id(hook, result_route, result_body, kling_api_key):
    result_route.respond(200, json=result_body())

    hook.get_task_result("kt-1")

    request = result_route.calls.last.request
    assert request.method == "GET"
    assert request.url.params["task_id"] == "kt-1"
    assert request.headers["Authorization"] == f"Bearer {kling_api_key}"
    assert request.headers["Content-Type"] == "application/json"


# -- submit: validation comes first --------------------------------------------------------------------


def test_submit_refuses_an_invalid_body_before_any_request(hook, kling_api):
    catch_all = kling_api.route().respond(200, json={"task_id": "kt-1"})

    with pytest.raises(exceptions.KlingValidationError, match=r"duration=16: must be between 3 and 15 seconds"):
        hook.submit(MODEL, {"prompt": "a red fox", "duration": 16})

    assert catch_all.call_count == 0


def test_submit_sends_a_raw_payload_for_an_unknown_but_well_formed_model_unvalidated(hook, kling_api):
    route = kling_api.post("/v3/async/kling-v3.1-std-t2v").respond(200, json={"task_id": "kt-9"})
    payload = {"prompt": "a red fox", "duration": 99, "camera": {"pan": "left"}}

    assert hook.submit("kling-v3.1-std-t2v", payload) == "kt-9"
    assert json.loads(route.calls.last.request.content) == payload


@pytest.mark.parametrize(
    "model", ["../task-result", "kling/../../admin", "..", "kling-v3.0-std-t2v?x=1", "Kling-V3", "", "a b"]
)
def test_submit_refuses_a_model_name_that_is_not_an_endpoint_name(hook, kling_api, model):
    catch_all = kling_api.route().respond(200, json={"task_id": "kt-1"})

    with pytest.raises(
        exceptions.KlingValidationError, match=r"must be a Kling endpoint name such as kling-v3.0-std-t2v"
    ):
        hook.submit(model, BODY)

    assert catch_all.call_count == 0


def test_submit_refuses_a_typed_request_for_an_unknown_model(hook, kling_api):
    catch_all = kling_api.route().respond(200, json={"task_id": "kt-1"})

    with pytest.raises(exceptions.KlingValidationError, match=r"model='kling-v3.1-std-t2v': unknown Kling model"):
        hook.submit("kling-v3.1-std-t2v", TextToVideoRequest(prompt="a red fox"))

    assert catch_all.call_count == 0


# -- submit: permanent errors --------------------------------------------------------------------------


def test_a_400_invalid_request_body_raises_a_request_error_with_reason_and_message(hook, submit_route):
    submit_route.respond(400, json={"code": 400, "reason": "INVALID_REQUEST_BODY", "message": "duration invalid"})

    with pytest.raises(exceptions.KlingRequestError) as caught:
        hook.submit(MODEL, BODY)

    assert (caught.value.http_status, caught.value.reason) == (400, "INVALID_REQUEST_BODY")
    assert str(caught.value) == f"POST {SUBMIT} answered HTTP 400: duration invalid [HTTP 400, INVALID_REQUEST_BODY]"
    assert submit_route.call_count == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [(401, "UNAUTHORIZED"), (403, "INVALID_API_KEY"), (403, "API_NOT_ALLOWED"), (400, "MISSING_API_KEY")],
)
def test_a_refused_key_raises_an_auth_error_at_once(hook, submit_route, status, reason):
    submit_route.mock(return_value=error(status, reason, "key refused"))

    with pytest.raises(exceptions.KlingAuthError) as caught:
        hook.submit(MODEL, BODY)

    assert (caught.value.http_status, caught.value.reason) == (status, reason)
    assert submit_route.call_count == 1


def test_a_404_api_not_found_raises_not_found(hook, submit_route):
    submit_route.mock(return_value=error(404, "API_NOT_FOUND", "no such API"))

    with pytest.raises(exceptions.KlingNotFoundError, match=r"no such API \[HTTP 404, API_NOT_FOUND\]"):
        hook.submit(MODEL, BODY)


@pytest.mark.parametrize("reason", ["ILLEGAL_PROMPT", "ILLEGAL_IMAGE_CONTENT"])
def test_a_content_policy_refusal_at_submit_fails_without_retry(hook, submit_route, reason):
    submit_route.mock(return_value=error(400, reason, "refused by moderation"))

    with pytest.raises(exceptions.KlingContentPolicyError) as caught:
        hook.submit(MODEL, BODY)

    assert isinstance(caught.value, AirflowFailException)
    assert caught.value.reason == reason
    assert submit_route.call_count == 1


@pytest.mark.parametrize(
    "reason", ["BILLING_BALANCE_NOT_ENOUGH", "IMAGE_FILE_EXCEEDS_MAX_SIZE", "INVALID_IMAGE_FORMAT"]
)
def test_other_documented_400_reasons_are_request_errors_not_retried(hook, submit_route, reason):
    submit_route.mock(return_value=error(400, reason, "refused"))

    with pytest.raises(exceptions.KlingRequestError, match=reason):
        hook.submit(MODEL, BODY)

    assert submit_route.call_count == 1


# -- submit: what is retried and what is not -----------------------------------------------------------


def test_submit_is_retried_after_a_connection_error_because_nothing_was_sent(hook, submit_route, fake_clock):
    submit_route.mock(
        side_effect=[httpx.ConnectError("connection refused"), httpx.Response(200, json={"task_id": "kt-1"})]
    )

    assert hook.submit(MODEL, BODY) == "kt-1"
    assert submit_route.call_count == 2
    assert len(fake_clock.sleeps) == 1


def test_submit_is_retried_on_429_waiting_what_retry_after_asks(hook, submit_route, fake_clock):
    submit_route.mock(
        side_effect=[
            httpx.Response(
                429, headers={"Retry-After": "7"}, json={"reason": "RATE_LIMIT_EXCEEDED", "message": "slow"}
            ),
            httpx.Response(200, json={"task_id": "kt-1"}),
        ]
    )

    assert hook.submit(MODEL, BODY) == "kt-1"
    assert fake_clock.sleeps == [7.0]


def test_a_retry_after_given_as_an_http_date_is_honoured(hook, submit_route, fake_clock):
    when = format_datetime(datetime.fromtimestamp(fake_clock.now, timezone.utc) + timedelta(seconds=30), usegmt=True)
    submit_route.mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": when}), httpx.Response(200, json={"task_id": "kt-1"})]
    )

    hook.submit(MODEL, BODY)

    assert 20 <= fake_clock.sleeps[0] <= 30


def test_submit_on_429_without_retry_after_backs_off_with_jitter(hook, submit_route, fake_clock):
    submit_route.mock(side_effect=[httpx.Response(429), httpx.Response(200, json={"task_id": "kt-1"})])

    hook.submit(MODEL, BODY)

    assert 1.0 <= fake_clock.sleeps[0] <= 2.0


def test_submit_gives_up_on_sustained_429_with_a_rate_limit_error_not_an_uncertain_one(kling_conn, submit_route):
    submit_route.mock(return_value=error(429, "RATE_LIMIT_EXCEEDED", "too many requests"))

    with KlingHook(max_attempts=3) as hook, pytest.raises(exceptions.KlingRateLimitError) as caught:
        hook.submit(MODEL, BODY)

    assert not isinstance(caught.value, exceptions.KlingSubmitUncertainError)
    assert submit_route.call_count == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_submit_is_not_retried_after_a_5xx_because_a_task_may_exist(hook, submit_route, status):
    submit_route.mock(return_value=error(status, "CREATE_TASK_FAILED", "internal error"))

    with pytest.raises(exceptions.KlingSubmitUncertainError) as caught:
        hook.submit(MODEL, BODY)

    assert submit_route.call_count == 1
    assert isinstance(caught.value, AirflowFailException)
    message = str(caught.value)
    assert "may have created (and billed) a task anyway" in message
    assert "KlingTaskSensor" in message
    assert (caught.value.http_status, caught.value.reason) == (status, "CREATE_TASK_FAILED")


def test_submit_is_not_retried_after_an_html_502_from_a_proxy(hook, submit_route):
    submit_route.respond(502, text=HTML_502, headers={"Content-Type": "text/html"})

    with pytest.raises(exceptions.KlingSubmitUncertainError) as caught:
        hook.submit(MODEL, BODY)

    assert submit_route.call_count == 1
    assert "502 Bad Gateway" in str(caught.value)
    assert "<" not in str(caught.value)


def test_submit_is_not_retried_after_a_read_timeout(hook, submit_route):
    submit_route.mock(side_effect=httpx.ReadTimeout("timed out"))

    with pytest.raises(exceptions.KlingSubmitUncertainError, match=r"ReadTimeout"):
        hook.submit(MODEL, BODY)

    assert submit_route.call_count == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={}),
        httpx.Response(200, json={"task_id": ""}),
        httpx.Response(200, text="OK"),
        httpx.Response(200, json=["kt-1"]),
    ],
    ids=["empty-object", "empty-id", "not-json", "a-list"],
)
def test_a_2xx_submit_answer_without_a_task_id_is_uncertain(hook, submit_route, answer):
    submit_route.mock(return_value=answer)

    with pytest.raises(exceptions.KlingSubmitUncertainError, match=r"unexpected submit answer"):
        hook.submit(MODEL, BODY)

    assert submit_route.call_count == 1


# -- get_task_result -----------------------------------------------------------------------------------


def test_get_task_result_parses_the_answer(hook, result_route, result_body):
    result_route.respond(200, json=result_body("TASK_STATUS_SUCCEED"))

    result = hook.get_task_result("kt-1")

    assert result.task.state is TaskStatus.SUCCEED
    assert result.videos[0].video_url_ttl == 3600


@pytest.mark.parametrize(
    "failure",
    [
        error(500, "GET_RESULT_FAILED", "internal"),
        httpx.Response(503, text="Service Unavailable"),
        httpx.Response(502, text=HTML_502, headers={"Content-Type": "text/html"}),
        httpx.Response(504),
        error(429, "RATE_LIMIT_EXCEEDED", "slow down"),
        httpx.Response(408),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("peer closed connection"),
    ],
    ids=["500", "503", "html-502", "504", "429", "408", "read-timeout", "connect-error", "dropped"],
)
def test_get_task_result_is_retried_on_a_transient_failure_then_succeeds(hook, result_route, result_body, failure):
    result_route.mock(side_effect=[failure, failure, httpx.Response(200, json=result_body())])

    assert hook.get_task_result("kt-1").task.state is TaskStatus.PROCESSING
    assert result_route.call_count == 3


def test_get_task_result_backs_off_exponentially_between_retries(hook, result_route, result_body, fake_clock):
    failure = error(500, "GET_RESULT_FAILED", "internal")
    result_route.mock(side_effect=[failure, failure, failure, httpx.Response(200, json=result_body())])

    hook.get_task_result("kt-1")

    first, second, third = fake_clock.sleeps
    assert 1 <= first <= 2
    assert 2 <= second <= 3
    assert 4 <= third <= 5


def test_get_task_result_gives_up_after_the_failure_budget_with_a_transient_error(kling_conn, result_route):
    result_route.mock(return_value=error(503, "GET_RESULT_FAILED", "busy"))

    with KlingHook(max_attempts=3) as hook, pytest.raises(exceptions.KlingTransientError) as caught:
        hook.get_task_result("kt-1")

    assert result_route.call_count == 3
    assert caught.value.kling_task_id == "kt-1"
    assert "busy [HTTP 503, GET_RESULT_FAILED, kling_task_id=kt-1]" in str(caught.value)


def test_get_task_result_stops_retrying_at_the_deadline(kling_conn, result_route, fake_clock):
    result_route.mock(return_value=error(500, "GET_RESULT_FAILED", "internal"))
    deadline = fake_clock.now + 5

    with KlingHook(max_attempts=100) as hook, pytest.raises(exceptions.KlingTimeoutError) as caught:
        hook.get_task_result("kt-1", deadline=deadline)

    assert result_route.call_count < 5
    assert fake_clock.now <= deadline
    assert caught.value.kling_task_id == "kt-1"
    assert "the deadline passed while retrying" in str(caught.value)


def test_throttling_does_not_spend_the_failure_budget_when_a_deadline_bounds_the_poll(
    kling_conn, result_route, result_body, fake_clock
):
    throttled = httpx.Response(429, headers={"Retry-After": "1"})
    result_route.mock(side_effect=[throttled] * 5 + [httpx.Response(200, json=result_body())])

    with KlingHook(max_attempts=2) as hook:
        result = hook.get_task_result("kt-1", deadline=fake_clock.now + 600)

    assert result.task.task_id == "kt-1"
    assert result_route.call_count == 6


def test_an_unreadable_200_answer_is_retried(hook, result_route, result_body):
    maintenance_page = httpx.Response(200, text="<html>maintenance</html>")
    result_route.mock(side_effect=[maintenance_page, httpx.Response(200, json=result_body())])

    assert hook.get_task_result("kt-1").task.task_id == "kt-1"
    assert result_route.call_count == 2


def test_an_unreadable_answer_that_persists_raises_a_transient_error_saying_so(kling_conn, result_route):
    result_route.respond(200, json={"tasks": []})

    with (
        KlingHook(max_attempts=2) as hook,
        pytest.raises(exceptions.KlingTransientError, match=r"unreadable Task Result answer"),
    ):
        hook.get_task_result("kt-1")


def test_the_nested_error_body_shape_is_surfaced(hook, result_route):
    result_route.respond(
        400, json={"error": {"message": "task_id is malformed", "code": 400, "type": "INVALID_REQUEST_BODY"}}
    )

    with pytest.raises(exceptions.KlingRequestError) as caught:
        hook.get_task_result("kt-1")

    assert caught.value.reason == "INVALID_REQUEST_BODY"
    assert "task_id is malformed" in str(caught.value)


def test_a_plain_text_error_body_is_surfaced(hook, result_route):
    result_route.respond(403, text="Forbidden: account suspended")

    with pytest.raises(exceptions.KlingAuthError, match=r"answered HTTP 403: Forbidden: account suspended"):
        hook.get_task_result("kt-1")


def test_a_permanent_4xx_on_a_poll_is_not_retried(hook, result_route):
    result_route.mock(return_value=error(400, "INVALID_REQUEST_BODY", "bad"))

    with pytest.raises(exceptions.KlingRequestError):
        hook.get_task_result("kt-1")

    assert result_route.call_count == 1


def test_an_unknown_task_raises_not_found_with_the_task_id(hook, result_route):
    result_route.mock(return_value=error(404, "TASK_NOT_FOUND", "task not found"))

    with pytest.raises(exceptions.KlingNotFoundError) as caught:
        hook.get_task_result("kt-1")

    assert str(caught.value) == (
        f"GET {RESULT} answered HTTP 404: task not found [HTTP 404, TASK_NOT_FOUND, kling_task_id=kt-1]"
    )


# -- wait_for_task -------------------------------------------------------------------------------------


def answers(*bodies: dict) -> list[httpx.Response]:
    return [httpx.Response(200, json=body) for body in bodies]


def test_wait_for_task_polls_until_the_video_is_ready(hook, result_route, result_body, fake_clock):
    result_route.mock(
        side_effect=answers(
            result_body("TASK_STATUS_QUEUED"), result_body("TASK_STATUS_PROCESSING"), result_body("TASK_STATUS_SUCCEED")
        )
    )

    result = hook.wait_for_task("kt-1", poll_interval=10, timeout=600)

    assert result.task.state is TaskStatus.SUCCEED
    assert fake_clock.sleeps == [10, 10]


def test_wait_for_task_returns_a_failed_generation_for_the_caller_to_judge(hook, result_route, result_body):
    result_route.mock(side_effect=answers(result_body("TASK_STATUS_FAILED", reason="ILLEGAL_PROMPT")))

    result = hook.wait_for_task("kt-1", poll_interval=10, timeout=600)

    assert (result.task.state, result.task.reason) == (TaskStatus.FAILED, "ILLEGAL_PROMPT")


def test_wait_for_task_raises_on_an_undocumented_status_never_taking_it_for_success(hook, result_route, result_body):
    result_route.mock(side_effect=answers(result_body("TASK_STATUS_DONE")))

    with pytest.raises(
        exceptions.KlingError, match=r"undocumented task status 'TASK_STATUS_DONE' \[kling_task_id=kt-1\]"
    ):
        hook.wait_for_task("kt-1", poll_interval=10, timeout=600)


def test_wait_for_task_raises_a_timeout_naming_the_task_when_the_video_is_late(
    hook, result_route, result_body, fake_clock
):
    result_route.respond(200, json=result_body("TASK_STATUS_PROCESSING"))
    started = fake_clock.now

    with pytest.raises(exceptions.KlingTimeoutError) as caught:
        hook.wait_for_task("kt-1", poll_interval=10, timeout=60)

    assert caught.value.kling_task_id == "kt-1"
    assert "kling_task_id=kt-1" in str(caught.value)
    assert "KlingTaskSensor" in str(caught.value)
    assert fake_clock.now - started <= 60
    assert result_route.call_count == 6


@pytest.mark.parametrize(
    ("eta", "max_poll_interval", "expected"),
    [
        (120, 60, 60),  # far off: back off, up to max_poll_interval
        (80, 60, 40),  # half the eta
        (8, 60, 10),  # near the end: every poll_interval
        (None, 60, 10),  # no eta: every poll_interval
        ("", 60, 10),  # eta not known yet
        (1000, None, 60),  # default ceiling: six poll intervals
    ],
)
def test_wait_for_task_spaces_polls_by_the_vendor_eta(
    hook, result_route, result_body, fake_clock, eta, max_poll_interval, expected
):
    result_route.mock(
        side_effect=answers(result_body("TASK_STATUS_PROCESSING", eta=eta), result_body("TASK_STATUS_SUCCEED"))
    )

    hook.wait_for_task("kt-1", poll_interval=10, timeout=3600, max_poll_interval=max_poll_interval)

    assert fake_clock.sleeps == [expected]


# -- test_connection -----------------------------------------------------------------------------------


def test_test_connection_succeeds_when_the_made_up_task_is_not_found(hook, kling_api, kling_base_url):
    kling_api.get(RESULT).mock(return_value=error(404, "TASK_NOT_FOUND", "task not found"))

    ok, message = hook.test_connection()

    assert ok is True
    assert message == f"Connected to {kling_base_url}: the API key is accepted."


def test_test_connection_fails_with_a_clear_message_when_the_key_is_refused(hook, kling_api):
    kling_api.get(RESULT).mock(return_value=error(403, "INVALID_API_KEY", "invalid api key"))

    ok, message = hook.test_connection()

    assert ok is False
    assert message.startswith("The API key was refused: ")
    assert "HTTP 403, INVALID_API_KEY" in message


def test_test_connection_fails_when_the_host_does_not_answer_like_the_kling_api(hook, kling_api, kling_base_url):
    kling_api.get(RESULT).respond(404, text="<html><body>Not Found</body></html>")

    ok, message = hook.test_connection()

    assert ok is False
    assert message.startswith(f"{kling_base_url} does not answer like the Kling API: ")


def test_test_connection_fails_without_a_request_when_the_key_is_empty(kling_conn, kling_api):
    kling_conn("kling_no_key", password="")
    catch_all = kling_api.route().respond(200)

    ok, message = KlingHook("kling_no_key").test_connection()

    assert ok is False
    assert message.startswith("this connection has no API key; ")
    assert "kling_no_key" not in message  # the UI tests under a throwaway id: naming it would puzzle
    assert catch_all.call_count == 0


# -- the client ----------------------------------------------------------------------------------------


def test_the_hook_reuses_one_http_client_for_all_its_calls(hook, result_route, result_body, kling_base_url):
    result_route.respond(200, json=result_body())

    first = hook.get_conn()
    hook.get_task_result("kt-1")

    assert hook.get_conn() is first
    assert str(first.base_url).rstrip("/") == kling_base_url


def test_leaving_the_hook_context_closes_its_client(kling_conn):
    with KlingHook() as hook:
        client = hook.get_conn()

    assert client.is_closed
