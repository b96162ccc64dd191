"""Fixtures for the unit tests of the models, exceptions, connection settings and the hook.

* ``kling_conn`` defines the ``kling_default`` connection through ``AIRFLOW_CONN_KLING_DEFAULT`` (the only
  way without a metadata DB) and returns a factory that defines more.
* ``kling_api`` mocks the vendor at the connection's base URL with respx; an unmocked request fails.
  ``kling_base_url`` and ``kling_api_key`` are that connection's URL and key.
* ``fake_clock`` replaces every clock read and wait of the hook and of tenacity: nothing sleeps for real.
* ``make_image`` draws a real JPEG/PNG/GIF/WebP in memory with Pillow.
* ``result_body`` builds a Task Result answer the way the vendor sends it (numbers as strings).
* ``close_shared_clients`` closes the async hook's shared clients at the end of an async test.

Fixture names are prefixed or specific so that modules defining their own ``api`` or ``clock`` keep them.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import respx
from PIL import Image

KLING_BASE_URL = "http://127.0.0.1:8089"
KLING_API_KEY = "fake-key-123"
VIDEO_URL = "https://cdn.example.com/out/kt-1.mp4?X-Amz-Signature=abc"

_real_async_sleep = asyncio.sleep


ConnectionFactory = Callable[..., str]


@pytest.fixture
def kling_base_url() -> str:
    """The base URL of ``kling_default`` (the sandbox's loopback address)."""
    return KLING_BASE_URL


@pytest.fixture
def kling_api_key() -> str:
    """The (fake) API key of ``kling_default``."""
    return KLING_API_KEY


@pytest.fixture
def kling_conn(monkeypatch: pytest.MonkeyPatch) -> ConnectionFactory:
    """Define ``kling_default`` (sandbox URL, fake key, no rate limit in the way); return a factory.

    ``kling_conn("other", password="k2", extra={"timeout": 5})`` defines another connection and returns
    its id. Pass ``host=None`` or ``password=None`` to leave the field out.
    """

    def define(
        conn_id: str = "kling_default",
        *,
        host: str | None = KLING_BASE_URL,
        password: str | None = KLING_API_KEY,
        port: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        fields: dict[str, Any] = {"conn_type": "kling"}
        if host is not None:
            fields["host"] = host
        if password is not None:
            fields["password"] = password
        if port is not None:
            fields["port"] = port
        # Many polls in a few real milliseconds: keep the poll-rate limiter out of the way by default.
        fields["extra"] = {"max_polls_per_second": 10_000} if extra is None else extra
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
        return conn_id

    define()
    return define


@pytest.fixture
def kling_api() -> Iterator[respx.MockRouter]:
    """The vendor, mocked at the connection's base URL. A request to an unmocked route fails the test."""
    with respx.mock(base_url=KLING_BASE_URL, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


class FakeClock:
    """A clock that only moves when the code under test sleeps (or a test advances it)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)

    async def asleep(self, seconds: float, result: Any = None) -> Any:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await _real_async_sleep(0)  # still let other tasks run
        return result


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Route the hook's and tenacity's clock reads and waits (sync and async) to one :class:`FakeClock`."""
    import airflow_provider_kling.hooks._retry as retry_module
    import airflow_provider_kling.hooks.kling as hook_module

    clock = FakeClock()
    monkeypatch.setattr(retry_module, "time", clock)
    monkeypatch.setattr(hook_module, "time", clock)
    monkeypatch.setattr(time, "sleep", clock.sleep)  # tenacity's sync waits (tenacity.nap.sleep)
    monkeypatch.setattr(asyncio, "sleep", clock.asleep)  # tenacity's async waits
    return clock


ImageFactory = Callable[..., bytes]


@pytest.fixture
def make_image() -> ImageFactory:
    """``make_image(width, height, fmt="PNG")``: the bytes of a real image drawn in memory."""

    def draw(width: int = 640, height: int = 360, fmt: str = "PNG") -> bytes:
        mode = "RGB" if fmt in ("JPEG", "WEBP") else "RGBA" if fmt == "PNG" else "P"
        buffer = io.BytesIO()
        Image.new(mode, (width, height), color=1 if mode == "P" else (200, 80, 40)).save(buffer, fmt)
        return buffer.getvalue()

    return draw


ResultBody = Callable[..., dict[str, Any]]


@pytest.fixture
def result_body() -> ResultBody:
    """``result_body(status, kling_task_id=..., eta=..., ...)``: a Task Result as the vendor sends it."""

    def build(
        status: str = "TASK_STATUS_PROCESSING",
        *,
        kling_task_id: str = "kt-1",
        reason: str = "",
        eta: int | str | None = None,
        progress: int | str | None = None,
        videos: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        if videos is None:
            videos = (
                [{"video_url": VIDEO_URL, "video_url_ttl": "3600", "video_type": "mp4"}]
                if status == "TASK_STATUS_SUCCEED"
                else []
            )
        return {
            "task": {
                "task_id": kling_task_id,
                "task_type": "KLING_V3_VIDEO",
                "status": status,
                "reason": reason,
                "eta": eta,
                "progress_percent": progress,
            },
            "extra": {
                "seed": "158881667",
                "enable_nsfw_detection": False,
                "debug_info": {
                    "request_info": "",
                    "submit_time_ms": "1731000000000",
                    "execute_time_ms": "1731000001000",
                    "complete_time_ms": "1731000090000" if status == "TASK_STATUS_SUCCEED" else "",
                },
            },
            "videos": videos,
            "images": [],
            "audios": [],
        }

    return build


@pytest.fixture
async def close_shared_clients() -> AsyncIterator[None]:
    """Close the async hook's shared clients of this test's event loop when the test ends."""
    from airflow_provider_kling.hooks._shared_clients import aclose_shared_clients

    yield
    await aclose_shared_clients()
