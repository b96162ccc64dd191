"""The API key never shows: not in logs, output, exceptions, settings, trigger rows, events or XCom.

Every test runs real hook, trigger and operator code with a distinctive fake key, collects everything a
user or an operator of Airflow could see, and searches it for the key.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from typing import Any

import httpx
import pytest
from _fakes import FakeTI

from airflow_provider_kling.exceptions import KlingError
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.operators.kling import KlingTextToVideoOperator
from airflow_provider_kling.triggers.kling import KlingTaskTrigger

KEY = "sk-kling-LEAKCHECK-7f3a9c1e5b2d"
MODEL = "kling-v3.0-std-t2v"
SUBMIT = f"/v3/async/{MODEL}"
RESULT = "/v3/async/task-result"
BODY = {"prompt": "a red fox in the snow"}


def error(status: int, reason: str) -> httpx.Response:
    return httpx.Response(status, json={"code": status, "reason": reason, "message": "refused"})


def shown(error: BaseException) -> str:
    """Everything a log shows of an exception: str, repr and the formatted traceback with its causes."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


class Seen:
    """Collects what a user could see during a test: log records, stdout/stderr, exceptions."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
        self._caplog = caplog
        self._capsys = capsys
        self.errors: list[str] = []

    def failing(self, call: Any) -> None:
        """Run ``call``; it must raise a provider error, which is kept for the search."""
        with pytest.raises(KlingError) as caught:
            call()
        self.errors.append(shown(caught.value))

    async def afailing(self, call: Any) -> None:
        with pytest.raises(KlingError) as caught:
            await call()
        self.errors.append(shown(caught.value))

    def text(self) -> str:
        records = [f"{record.getMessage()} {record.args!r} {record.__dict__!r}" for record in self._caplog.records]
        out, err = self._capsys.readouterr()
        return "\n".join([*records, out, err, *self.errors])


@pytest.fixture
def seen(caplog, capsys) -> Seen:
    caplog.set_level(logging.DEBUG)
    return Seen(caplog, capsys)


@pytest.fixture
def secret_conn(kling_conn) -> str:
    return kling_conn(password=KEY)


def test_the_key_is_really_sent_so_the_searches_below_mean_something(secret_conn, kling_api):
    route = kling_api.post(SUBMIT).respond(200, json={"task_id": "kt-1"})

    KlingHook().submit(MODEL, BODY)

    assert route.calls.last.request.headers["Authorization"] == f"Bearer {KEY}"


def test_successful_sync_calls_show_the_key_nowhere(secret_conn, kling_api, result_body, fake_clock, seen):
    kling_api.post(SUBMIT).mock(
        side_effect=[httpx.ConnectError("connection refused"), httpx.Response(200, json={"task_id": "kt-1"})]
    )
    kling_api.get(RESULT).mock(
        side_effect=[
            error(503, "GET_RESULT_FAILED"),
            httpx.Response(200, json=result_body("TASK_STATUS_PROCESSING", eta=30)),
            httpx.Response(200, json=result_body("TASK_STATUS_SUCCEED")),
        ]
    )

    with KlingHook() as hook:
        kling_task_id = hook.submit(MODEL, BODY)
        result = hook.wait_for_task(kling_task_id, poll_interval=10, timeout=600)

    text = seen.text()
    assert "Kling call failed (attempt 1)" in text  # the retry warnings were captured...
    assert "status=TASK_STATUS_PROCESSING progress=" in text  # ...and the progress lines
    assert KEY not in text
    assert KEY not in result.model_dump_json()


def test_failing_sync_calls_show_the_key_nowhere(kling_conn, secret_conn, kling_api, fake_clock, seen):
    kling_api.post(SUBMIT).mock(
        side_effect=[
            error(401, "UNAUTHORIZED"),
            error(400, "INVALID_REQUEST_BODY"),
            error(500, "CREATE_TASK_FAILED"),
            httpx.ReadTimeout("timed out"),
            httpx.Response(200, text="<html>not json</html>"),
        ]
    )
    kling_api.get(RESULT, params={"task_id": "kt-1"}).mock(side_effect=httpx.ConnectError("connection refused"))
    kling_api.get(RESULT, params={"task_id": "airflow-connection-test"}).mock(
        return_value=error(403, "INVALID_API_KEY")
    )

    with KlingHook(max_attempts=3) as hook:
        for _ in range(5):
            seen.failing(lambda: hook.submit(MODEL, BODY))
        seen.failing(lambda: hook.get_task_result("kt-1"))
        seen.failing(lambda: hook.get_task_result("kt-1", deadline=fake_clock.now + 3))
        ok, message = hook.test_connection()

    assert not ok
    assert KEY not in message
    assert KEY not in seen.text()


def test_refused_connections_show_the_key_nowhere(kling_conn, seen):
    kling_conn("kling_plain", host="http://api.example.com", password=KEY)
    kling_conn("kling_bad_extra", password=KEY, extra={"timeout": "soon"})

    seen.failing(lambda: KlingHook("kling_plain").settings)
    seen.failing(lambda: KlingHook("kling_bad_extra").settings)

    assert KEY not in seen.text()


async def test_async_polls_show_the_key_nowhere(
    secret_conn, kling_api, result_body, fake_clock, seen, close_shared_clients
):
    kling_api.get(RESULT).mock(
        side_effect=[
            error(401, "UNAUTHORIZED"),
            httpx.ReadTimeout("timed out"),
            httpx.Response(200, json=result_body("TASK_STATUS_SUCCEED")),
        ]
    )
    hook = KlingHook()

    await seen.afailing(lambda: hook.aget_task_result("kt-1"))
    result = await hook.aget_task_result("kt-1")
    shared = await hook._shared()

    assert KEY not in seen.text()
    assert KEY not in result.model_dump_json()
    assert KEY not in repr(shared)


@pytest.mark.parametrize(
    "render",
    [repr, str, lambda settings: settings.model_dump_json(), lambda settings: str(settings.model_dump())],
    ids=["repr", "str", "json", "dump"],
)
def test_settings_show_the_key_nowhere(secret_conn, render):
    assert KEY not in render(KlingHook().settings)


def test_a_serialized_trigger_holds_no_key(secret_conn):
    trigger = KlingTaskTrigger(kling_task_id="kt-1", end_time=time.time() + 600, kling_conn_id="kling_default")

    classpath, kwargs = trigger.serialize()

    assert KEY not in json.dumps([classpath, kwargs])


async def test_a_trigger_event_holds_no_key(secret_conn, kling_api, result_body, close_shared_clients, seen):
    kling_api.get(RESULT).respond(200, json=result_body("TASK_STATUS_SUCCEED"))
    trigger = KlingTaskTrigger(kling_task_id="kt-1", end_time=time.time() + 600, kling_conn_id="kling_default")

    event = await trigger.run().__anext__()

    assert KEY not in json.dumps(event.payload)
    assert KEY not in seen.text()


def test_the_operator_result_and_xcom_hold_no_key(secret_conn, kling_api, result_body, fake_clock, seen):
    kling_api.post(SUBMIT).respond(200, json={"task_id": "kt-1"})
    kling_api.get(RESULT).respond(200, json=result_body("TASK_STATUS_SUCCEED"))
    operator = KlingTextToVideoOperator(
        task_id="teaser", prompt="a red fox in the snow", deferrable=False, durable=False
    )
    ti = FakeTI()

    returned = operator.execute({"ti": ti})

    assert returned["kling_task_id"] == "kt-1"
    assert KEY not in json.dumps(returned)
    assert KEY not in json.dumps(ti.xcoms)
    assert KEY not in seen.text()
