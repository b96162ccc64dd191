"""KlingHook's async poll (the trigger's path): one shared client and limiter per connection and loop.

Nothing waits for real: retries run on ``fake_clock``, and the limiter tests freeze the event loop's own
clock (``loop_clock``), so "two polls pass, the rest wait" is decided by the limiter, not by how fast the
machine is.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import airflow_provider_kling.hooks.kling as hook_module
from airflow_provider_kling import _compat
from airflow_provider_kling.exceptions import (
    KlingAuthError,
    KlingNotFoundError,
    KlingTimeoutError,
    KlingTransientError,
)
from airflow_provider_kling.hooks import _shared_clients
from airflow_provider_kling.hooks._shared_clients import aclose_shared_clients, poll_limiter
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.models import TaskStatus

RESULT = "/v3/async/task-result"

pytestmark = pytest.mark.usefixtures("close_shared_clients")


class LoopClock:
    """Freezes the running event loop's clock (which aiolimiter reads); time moves only on ``advance``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.now = 0.0

    def freeze(self) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time()
        self._monkeypatch.setattr(loop, "time", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def loop_clock(monkeypatch) -> LoopClock:
    return LoopClock(monkeypatch)


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """Every async connection lookup the hook makes, by connection id."""
    seen: list[str] = []
    real = hook_module.get_async_connection

    async def counting(conn_id: str, hook: Any = None) -> Any:
        seen.append(conn_id)
        await asyncio.sleep(0)  # let the other first callers pile up behind this lookup
        return await real(conn_id, hook=hook)

    monkeypatch.setattr(hook_module, "get_async_connection", counting)
    return seen


_real_sleep = asyncio.sleep  # fake_clock replaces asyncio.sleep; settling needs the real zero-second one


async def settle(rounds: int = 50) -> None:
    """Let every ready task run as far as it can without the clock moving."""
    for _ in range(rounds):
        await _real_sleep(0)


def error(status: int, reason: str, message: str = "refused") -> httpx.Response:
    return httpx.Response(status, json={"code": status, "reason": reason, "message": message})


# -- the answer ----------------------------------------------------------------------------------------


async def test_aget_task_result_parses_the_answer(kling_conn, kling_api, result_body, kling_api_key):
    route = kling_api.get(RESULT, params={"task_id": "kt-1"}).respond(200, json=result_body("TASK_STATUS_SUCCEED"))

    result = await KlingHook().aget_task_result("kt-1")

    assert result.task.state is TaskStatus.SUCCEED
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {kling_api_key}"
    assert route.calls.last.request.headers["Content-Type"] == "application/json"


# -- one client per connection and loop ----------------------------------------------------------------


async def test_many_hooks_of_one_connection_share_one_async_client(kling_conn, kling_api, result_body, monkeypatch):
    kling_api.get(RESULT).respond(200, json=result_body())
    built: list[httpx.AsyncClient] = []
    real_client = httpx.AsyncClient

    def counting_client(*args: Any, **kwargs: Any) -> httpx.AsyncClient:
        built.append(real_client(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(_shared_clients.httpx, "AsyncClient", counting_client)
    hooks = [KlingHook() for _ in range(10)]

    for hook in hooks:
        await hook.aget_task_result("kt-1")

    assert len(built) == 1
    shared = {id(await hook._shared()) for hook in hooks}
    assert len(shared) == 1


async def test_the_connection_is_looked_up_once_for_50_concurrent_first_calls(
    kling_conn, kling_api, result_body, lookups
):
    route = kling_api.get(RESULT).respond(200, json=result_body())

    results = await asyncio.gather(*(KlingHook().aget_task_result("kt-1") for _ in range(50)))

    assert lookups == ["kling_default"]
    assert len(results) == route.call_count == 50


async def test_the_connection_lookup_path_is_logged_once_per_process(
    kling_conn, kling_api, result_body, captured_logs, monkeypatch
):
    """Before Airflow 3.3.2 compat reads connections in a worker thread: said once, not per trigger."""
    monkeypatch.setattr(_compat, "_logged_once", set())
    kling_conn("kling_other", password="other-key")
    kling_api.get(RESULT).respond(200, json=result_body())

    for conn_id in ("kling_default", "kling_other", "kling_default"):
        await KlingHook(conn_id).aget_task_result("kt-1")
    await aclose_shared_clients()
    await KlingHook().aget_task_result("kt-1")  # a fresh client reads the connection again

    said = captured_logs.messages(containing="connections are read in a worker thread")
    if _compat.native_async_connection_lookup():
        assert said == []
    else:
        assert len(said) == 1
        assert "native async connection lookup needs Airflow 3.3.2+" in said[0]


async def test_each_connection_id_has_its_own_client_and_key(kling_conn, kling_api, result_body):
    kling_conn("kling_other", password="other-key")
    route = kling_api.get(RESULT).respond(200, json=result_body())
    default, other = KlingHook(), KlingHook("kling_other")

    await default.aget_task_result("kt-1")
    await other.aget_task_result("kt-1")

    assert (await default._shared()) is not (await other._shared())
    assert [call.request.headers["Authorization"] for call in route.calls] == [
        "Bearer fake-key-123",
        "Bearer other-key",
    ]


def test_each_event_loop_gets_its_own_client(kling_conn):
    async def client_of_this_loop() -> object:
        client = (await KlingHook()._shared()).transport
        await aclose_shared_clients()
        return client

    first, second = asyncio.run(client_of_this_loop()), asyncio.run(client_of_this_loop())

    assert first is not second


async def test_closing_the_shared_clients_closes_them_and_the_next_call_builds_a_new_one(
    kling_conn, kling_api, result_body
):
    kling_api.get(RESULT).respond(200, json=result_body())
    hook = KlingHook()
    await hook.aget_task_result("kt-1")
    first = (await hook._shared()).transport

    await aclose_shared_clients()
    await hook.aget_task_result("kt-1")

    assert first.is_closed
    assert (await hook._shared()).transport is not first


# -- auth errors ---------------------------------------------------------------------------------------


async def test_an_auth_error_drops_the_shared_client_and_the_next_call_reads_the_connection_again(
    kling_conn, kling_api, result_body, lookups
):
    kling_conn(password="revoked-key")
    kling_api.get(RESULT, headers={"Authorization": "Bearer revoked-key"}).mock(
        return_value=error(403, "INVALID_API_KEY")
    )
    fresh = kling_api.get(RESULT, headers={"Authorization": "Bearer rotated-key"}).respond(200, json=result_body())
    hook = KlingHook()

    with pytest.raises(KlingAuthError):
        await hook.aget_task_result("kt-1")
    kling_conn(password="rotated-key")  # the user fixes the connection
    result = await hook.aget_task_result("kt-1")

    assert result.task.task_id == "kt-1"
    assert lookups == ["kling_default", "kling_default"]
    assert fresh.call_count == 1


async def test_polls_in_flight_when_another_is_refused_get_their_own_answers_before_the_pool_closes(
    kling_conn, kling_api, result_body
):
    release = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        task_id = request.url.params["task_id"]
        if task_id == "kt-refused":
            return error(403, "INVALID_API_KEY")
        await release.wait()  # still in flight when the refusal arrives
        return httpx.Response(200, json=result_body(kling_task_id=task_id))

    kling_api.get(RESULT).mock(side_effect=answer)
    in_flight = [asyncio.create_task(KlingHook().aget_task_result(task_id)) for task_id in ("kt-1", "kt-2")]
    await settle()
    shared = await KlingHook()._shared()

    with pytest.raises(KlingAuthError):
        await KlingHook().aget_task_result("kt-refused")
    await settle()
    still_open = not shared.transport.is_closed
    release.set()
    results = await asyncio.gather(*in_flight)
    await settle()

    assert still_open  # the refusal did not cut the other polls' requests
    assert [result.task.task_id for result in results] == ["kt-1", "kt-2"]
    assert shared.transport.is_closed  # closed once they were answered
    assert (await KlingHook()._shared()) is not shared  # the next poll reads the connection again


async def test_an_auth_error_is_not_retried(kling_conn, kling_api):
    route = kling_api.get(RESULT).mock(return_value=error(401, "UNAUTHORIZED"))

    with pytest.raises(KlingAuthError):
        await KlingHook().aget_task_result("kt-1")

    assert route.call_count == 1


async def test_a_poll_waiting_on_the_limiter_survives_another_hook_resetting_the_client(
    kling_conn, kling_api, result_body, loop_clock, fake_clock
):
    kling_conn(extra={"max_polls_per_second": 1})
    answers = iter([error(401, "UNAUTHORIZED"), httpx.Response(200, json=result_body())])

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        await settle(3)  # the request is in flight: other hooks run meanwhile
        return next(answers)

    route = kling_api.get(RESULT).mock(side_effect=slow_answer)
    await KlingHook()._shared()  # the connection is read; no poll spent yet
    loop_clock.freeze()

    first = asyncio.create_task(KlingHook().aget_task_result("kt-1"))
    second = asyncio.create_task(KlingHook().aget_task_result("kt-1"))
    await settle()
    assert first.done()
    assert isinstance(first.exception(), KlingAuthError)  # it reset the shared client...
    assert not second.done()  # ...while this poll waited on the limiter, holding that client
    loop_clock.advance(1.0)  # the second poll may go now

    result = await second

    assert result.task.task_id == "kt-1"
    assert route.call_count == 2


async def test_a_missing_connection_is_an_auth_error_naming_it(kling_conn, kling_api):
    catch_all = kling_api.route().respond(200)

    with pytest.raises(KlingAuthError, match=r"connection 'kling_nowhere' is not defined"):
        await KlingHook("kling_nowhere").aget_task_result("kt-1")

    assert catch_all.call_count == 0


async def test_an_empty_key_is_refused_before_any_request(kling_conn, kling_api):
    kling_conn("kling_no_key", password="")
    catch_all = kling_api.route().respond(200)

    with pytest.raises(KlingAuthError, match=r"connection 'kling_no_key': password \(the API key\) is empty"):
        await KlingHook("kling_no_key").aget_task_result("kt-1")

    assert catch_all.call_count == 0


# -- the poll-rate limiter -----------------------------------------------------------------------------


async def test_the_limiter_takes_its_rate_from_the_connection_and_is_shared(kling_conn):
    kling_conn(extra={"max_polls_per_second": 5})

    first, second = await KlingHook()._shared(), await KlingHook()._shared()

    assert first.limiter is second.limiter
    assert (first.limiter.max_rate, first.limiter.time_period) == (5, 1.0)


async def test_the_default_limit_is_20_polls_per_second(kling_conn):
    kling_conn(extra={})

    limiter = (await KlingHook()._shared()).limiter

    assert limiter.max_rate / limiter.time_period == 20


@pytest.mark.parametrize(("rate", "max_rate", "period"), [(0.5, 1, 2.0), (0.1, 1, 10.0), (2.5, 2.5, 1.0)])
def test_a_rate_below_one_poll_per_second_becomes_one_poll_per_period(rate, max_rate, period):
    limiter = poll_limiter(rate)

    assert (limiter.max_rate, limiter.time_period) == (max_rate, pytest.approx(period))


async def test_a_limit_below_one_poll_per_second_still_lets_a_poll_through(kling_conn, kling_api, result_body):
    kling_conn(extra={"max_polls_per_second": 0.5})
    kling_api.get(RESULT).respond(200, json=result_body())

    assert (await KlingHook().aget_task_result("kt-1")).task.task_id == "kt-1"


async def test_the_limiter_caps_polls_per_second_across_hooks(kling_conn, kling_api, result_body, loop_clock):
    kling_conn(extra={"max_polls_per_second": 2})
    route = kling_api.get(RESULT).respond(200, json=result_body())
    await KlingHook()._shared()
    loop_clock.freeze()

    polls = [asyncio.create_task(KlingHook().aget_task_result("kt-1")) for _ in range(6)]
    await settle()
    sent_at_once = route.call_count
    loop_clock.advance(1.0)
    await settle()
    sent_after_one_second = route.call_count
    loop_clock.advance(1.0)
    await settle()

    assert (sent_at_once, sent_after_one_second, route.call_count) == (2, 4, 6)
    assert all(poll.done() and poll.exception() is None for poll in polls)


async def test_many_concurrent_polls_all_succeed(kling_conn, kling_api, result_body):
    route = kling_api.get(RESULT).respond(200, json=result_body())

    results = await asyncio.gather(*(KlingHook().aget_task_result(f"kt-{n}") for n in range(200)))

    assert {result.task.task_id for result in results} == {"kt-1"}
    assert route.call_count == 200


# -- retries -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        error(500, "GET_RESULT_FAILED"),
        httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>"),
        error(429, "RATE_LIMIT_EXCEEDED"),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("connection refused"),
    ],
    ids=["500", "html-502", "429", "read-timeout", "connect-error"],
)
async def test_async_polls_are_retried_on_transient_failures(kling_conn, kling_api, result_body, fake_clock, failure):
    route = kling_api.get(RESULT).mock(side_effect=[failure, failure, httpx.Response(200, json=result_body())])

    result = await KlingHook().aget_task_result("kt-1")

    assert result.task.task_id == "kt-1"
    assert route.call_count == 3
    assert len(fake_clock.sleeps) == 2


async def test_an_unreadable_answer_is_retried_in_async_too(kling_conn, kling_api, result_body, fake_clock):
    route = kling_api.get(RESULT).mock(
        side_effect=[httpx.Response(200, text="<html>maintenance</html>"), httpx.Response(200, json=result_body())]
    )

    assert (await KlingHook().aget_task_result("kt-1")).task.task_id == "kt-1"
    assert route.call_count == 2


async def test_async_polls_wait_what_retry_after_asks(kling_conn, kling_api, result_body, fake_clock):
    kling_api.get(RESULT).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "9"}), httpx.Response(200, json=result_body())]
    )

    await KlingHook().aget_task_result("kt-1")

    assert fake_clock.sleeps == [9.0]


async def test_async_polls_give_up_after_the_failure_budget(kling_conn, kling_api, fake_clock):
    route = kling_api.get(RESULT).mock(return_value=error(503, "GET_RESULT_FAILED", "busy"))

    with pytest.raises(KlingTransientError, match=r"busy \[HTTP 503, GET_RESULT_FAILED, kling_task_id=kt-1\]"):
        await KlingHook(max_attempts=4).aget_task_result("kt-1")

    assert route.call_count == 4


async def test_async_polls_stop_retrying_at_the_deadline(kling_conn, kling_api, fake_clock):
    route = kling_api.get(RESULT).mock(return_value=error(500, "GET_RESULT_FAILED"))
    deadline = fake_clock.now + 5

    with pytest.raises(KlingTimeoutError, match=r"the deadline passed while retrying"):
        await KlingHook(max_attempts=100).aget_task_result("kt-1", deadline=deadline)

    assert route.call_count < 5
    assert fake_clock.now <= deadline


async def test_a_not_found_task_is_not_retried_in_async(kling_conn, kling_api, fake_clock):
    route = kling_api.get(RESULT).mock(return_value=error(404, "TASK_NOT_FOUND", "task not found"))

    with pytest.raises(KlingNotFoundError, match=r"kling_task_id=kt-1"):
        await KlingHook().aget_task_result("kt-1")

    assert route.call_count == 1


# -- in-flight slots -----------------------------------------------------------------------------------


class BlockingClock:
    """A clock whose waits block until the test releases them: retries stay asleep while it looks."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.sleepers = 0
        self.release = asyncio.Event()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:  # pragma: no cover - the async path only
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleepers += 1
        await self.release.wait()
        self.now += seconds


async def test_a_poll_sleeping_before_a_retry_holds_no_in_flight_slot(kling_conn, kling_api, result_body):
    from airflow_provider_kling import clock

    kling_conn(extra={"max_polls_per_second": 8})  # 4 slots (the minimum), and 8 polls pass the limiter at once
    kling_api.get(RESULT, params={"task_id": "kt-bad"}).mock(
        side_effect=[error(503, "GET_RESULT_FAILED")] * 4 + [httpx.Response(200, json=result_body())] * 4
    )
    kling_api.get(RESULT, params={"task_id": "kt-1"}).respond(200, json=result_body())
    shared = await KlingHook()._shared()
    assert _shared_clients.polls_in_flight(shared.settings.max_polls_per_second) == 4

    with clock.use_clock(BlockingClock()) as blocking:
        failing = [asyncio.create_task(KlingHook().aget_task_result("kt-bad")) for _ in range(4)]
        await settle()
        assert blocking.sleepers == 4  # every slot's first poll failed and sleeps before its retry

        healthy = await asyncio.wait_for(KlingHook().aget_task_result("kt-1"), timeout=30)

        blocking.release.set()
        await asyncio.gather(*failing)
    assert healthy.task.task_id == "kt-1"


async def test_a_healthy_poll_builds_no_retry_controller(kling_conn, kling_api, result_body, monkeypatch):
    kling_api.get(RESULT).respond(200, json=result_body())
    built: list[int] = []
    real = hook_module.apoll_retrying
    monkeypatch.setattr(hook_module, "apoll_retrying", lambda **kw: built.append(1) or real(**kw))

    await KlingHook().aget_task_result("kt-1")

    assert built == []


async def test_the_first_failure_counts_as_the_first_attempt_of_the_budget(kling_conn, kling_api, fake_clock):
    route = kling_api.get(RESULT).mock(return_value=error(503, "GET_RESULT_FAILED", "busy"))

    with pytest.raises(KlingTransientError, match="busy"):
        await KlingHook(max_attempts=3).aget_task_result("kt-1")

    assert route.call_count == 3
    assert len(fake_clock.sleeps) == 2
