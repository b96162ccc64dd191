"""The deployment-wide poll rate limit: a moving window in a real Redis, and polling on when it is gone.

Every test that needs Redis starts its own ``redis-server`` on a free port of 127.0.0.1 and stops it by
PID. Two limiter objects on one store stand for two processes (two triggerers, or a triggerer and a
worker): what they share is the store, nothing in memory.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from airflow_provider_kling import clock
from airflow_provider_kling.exceptions import KlingValidationError
from airflow_provider_kling.hooks import _shared_clients, rate_limit
from airflow_provider_kling.hooks.connection import settings_from_connection
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.hooks.rate_limit import (
    ClusterRateLimiter,
    SyncClusterRateLimiter,
    check_storage_uri,
    redacted,
    window,
)
from airflow_provider_kling.sandbox.process import free_port

RESULT = "/v3/async/task-result"

# CI never skips: there `make test` has installed redis-server, and a missing one must fail.
pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and os.environ.get("CI") != "true",
    reason="needs redis-server (apt redis-server; make test installs it)",
)


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1 (no persistence), started and stopped by PID."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        for _ in range(300):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)  # the server is starting: a test's own setup, not provider time
        else:
            raise RuntimeError(f"redis-server did not answer on port {self.port}")
        client.close()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def polls_counted(self) -> int:
        """How many polls the moving windows in the store hold."""
        client = redis.Redis(port=self.port)
        try:
            return sum(int(client.llen(key)) for key in client.keys(f"{rate_limit.KEY_PREFIX}*"))
        finally:
            client.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_limiter_state() -> Iterator[None]:
    """Each test starts with no warning given and no store known to be down."""
    rate_limit.reset_warning()
    yield
    rate_limit.reset_warning()


class Waited(Exception):
    """Raised by :class:`StopOnWait` instead of waiting."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class StopOnWait:
    """Real time (the moving window stores real timestamps), but a wait raises :class:`Waited`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        raise Waited(seconds)

    async def asleep(self, seconds: float) -> None:
        raise Waited(seconds)


# -- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "amount", "seconds"),
    [(20, 20, 1), (5, 5, 1), (2.5, 25, 10), (0.5, 5, 10), (0.05, 1, 20)],
)
def test_the_window_never_lets_a_10_second_span_exceed_ten_times_the_rate(rate, amount, seconds):
    item = window(rate)

    assert (item.amount, item.get_expiry()) == (amount, seconds)
    # Any 10 s span is covered by ceil(10 / seconds) windows of ``amount`` polls each.
    assert item.amount * -(-10 // item.get_expiry()) <= max(10 * rate, 1)


def test_the_password_of_a_storage_uri_is_redacted():
    assert redacted("redis://:s3cret@redis.internal:6379/0") == "redis://:***@redis.internal:6379/0"
    assert redacted("rediss://user:s3cret@redis.internal/1") == "rediss://user:***@redis.internal/1"
    assert redacted("redis://redis.internal:6379/0") == "redis://redis.internal:6379/0"


def test_a_storage_uri_that_is_not_redis_is_refused_naming_the_field_without_its_password():
    with pytest.raises(KlingValidationError, match="rate_limit_storage_uri=") as caught:
        settings_from_connection(
            "kling_default",
            host=None,
            port=None,
            password="key",
            extra={"rate_limit_storage_uri": "memcached://user:s3cret@cache:11211"},
        )

    assert "s3cret" not in str(caught.value)
    assert "must be a Redis URI" in str(caught.value)


def test_the_storage_uri_is_read_from_the_extra_and_never_shown_in_the_settings():
    settings = settings_from_connection(
        "kling_default", host=None, port=None, password="key", extra={"rate_limit_storage_uri": "redis://:pw@r:1/0"}
    )

    assert settings.rate_limit_storage_uri == "redis://:pw@r:1/0"
    assert "pw@" not in repr(settings)
    assert check_storage_uri("c", "  ") is None
    assert settings_from_connection("c", host=None, port=None, password="k", extra={}).rate_limit_storage_uri is None


# -- the shared window ---------------------------------------------------------------------------------


async def test_two_processes_share_one_window(redis_server):
    first = ClusterRateLimiter(redis_server.uri, 0.5, "kling_default")  # 5 polls per 10 s
    second = ClusterRateLimiter(redis_server.uri, 0.5, "kling_default")
    try:
        with clock.use_clock(StopOnWait()):
            for limiter in (first, second, first, second, first):
                await limiter.acquire()
            with pytest.raises(Waited) as waited:
                await second.acquire()
    finally:
        await first.aclose()
        await second.aclose()

    assert 0 < waited.value.seconds <= 10 + rate_limit.JITTER_SECONDS
    assert redis_server.polls_counted() == 5


async def test_each_connection_id_has_its_own_window(redis_server):
    one = ClusterRateLimiter(redis_server.uri, 0.1, "kling_default")  # 1 poll per 10 s
    other = ClusterRateLimiter(redis_server.uri, 0.1, "kling_other")
    try:
        with clock.use_clock(StopOnWait()):
            await one.acquire()
            await other.acquire()
            with pytest.raises(Waited):
                await one.acquire()
    finally:
        await one.aclose()
        await other.aclose()


def test_sync_polls_on_workers_take_slots_of_the_same_window(redis_server):
    async_side = SyncClusterRateLimiter(redis_server.uri, 0.3, "kling_default")  # 3 polls per 10 s
    worker = SyncClusterRateLimiter(redis_server.uri, 0.3, "kling_default")

    with clock.use_clock(StopOnWait()):
        async_side.acquire()
        worker.acquire()
        worker.acquire()
        with pytest.raises(Waited):
            async_side.acquire()


async def test_async_polls_of_the_hook_count_in_the_store(kling_conn, kling_api, result_body, redis_server):
    kling_conn(extra={"max_polls_per_second": 1000, "rate_limit_storage_uri": redis_server.uri})
    kling_api.get(RESULT).respond(200, json=result_body())

    try:
        for _ in range(3):
            await KlingHook().aget_task_result("kt-1")
    finally:
        await _shared_clients.aclose_shared_clients()

    assert redis_server.polls_counted() == 3


def test_sync_polls_of_the_hook_count_in_the_store(kling_conn, kling_api, result_body, redis_server):
    kling_conn(extra={"max_polls_per_second": 1000, "rate_limit_storage_uri": redis_server.uri})
    kling_api.get(RESULT).respond(200, json=result_body())

    with KlingHook() as hook:
        hook.get_task_result("kt-1")
        hook.get_task_result("kt-1")

    assert redis_server.polls_counted() == 2


# -- an unreachable store --------------------------------------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == rate_limit.__name__]


async def test_a_stopped_store_falls_back_with_one_warning_and_recovers(redis_server, caplog):
    fake = StopOnWait()
    uri_with_password = f"redis://:s3cret@127.0.0.1:{redis_server.port}/0"
    redis.Redis(port=redis_server.port).config_set("requirepass", "s3cret")
    first = ClusterRateLimiter(uri_with_password, 0.1, "kling_default")
    second = ClusterRateLimiter(uri_with_password, 0.1, "kling_default")
    try:
        with clock.use_clock(fake), caplog.at_level(logging.INFO, logger=rate_limit.__name__):
            await first.acquire()
            redis_server.stop()

            for limiter in (first, second, first, second):
                await limiter.acquire()  # no wait, no error: this process's own limit only

            assert len(_warnings(caplog)) == 1
            assert "s3cret" not in caplog.text
            assert "redis://:***@127.0.0.1" in caplog.text

            redis_server.start()
            redis.Redis(port=redis_server.port).config_set("requirepass", "s3cret")
            await first.acquire()  # still within the pause: not tried yet
            fake.offset += rate_limit.RETRY_STORE_SECONDS + 1
            await first.acquire()  # tried again, and it answers
            with pytest.raises(Waited):
                await second.acquire()  # the window (1 per 10 s) is in force again
    finally:
        await first.aclose()
        await second.aclose()

    assert len(_warnings(caplog)) == 1
    assert "answers again" in caplog.text


async def test_polls_go_on_when_the_store_is_unreachable(kling_conn, kling_api, result_body, caplog):
    dead = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    kling_conn(extra={"max_polls_per_second": 1000, "rate_limit_storage_uri": dead})
    route = kling_api.get(RESULT).respond(200, json=result_body())

    try:
        with caplog.at_level(logging.WARNING, logger=rate_limit.__name__):
            results = [await KlingHook().aget_task_result("kt-1") for _ in range(3)]
            with KlingHook() as hook:
                results.append(hook.get_task_result("kt-1"))
    finally:
        await _shared_clients.aclose_shared_clients()

    assert [result.task.task_id for result in results] == ["kt-1"] * 4
    assert route.call_count == 4
    assert len(_warnings(caplog)) == 1
    assert "s3cret" not in caplog.text
