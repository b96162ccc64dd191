"""Fixtures for the unit tests of the models, exceptions, connection settings and the hook.

* ``kling_conn`` defines the ``kling_default`` connection through ``AIRFLOW_CONN_KLING_DEFAULT`` (the only
  way without a metadata DB) and returns a factory that defines more.
* ``kling_api`` mocks the vendor at the connection's base URL with respx; an unmocked request fails.
  ``kling_base_url`` and ``kling_api_key`` are that connection's URL and key.
* ``fake_clock`` replaces every clock read and wait of the hook and of tenacity: nothing sleeps for real.
* ``make_image`` draws a real JPEG/PNG/GIF/WebP in memory with Pillow.
* ``result_body`` builds a Task Result answer the way the vendor sends it (numbers as strings).
* ``close_shared_clients`` closes the async hook's shared clients at the end of an async test.
* ``captured_logs`` collects what the provider logs, on every Airflow version (structlog on 3.3,
  the standard ``logging`` module before).
* ``_metadata_db`` (session, automatic) creates the SQLite metadata database of the Airflow versions
  that need one (see ``tests/conftest.py``).

Fixture names are prefixed or specific so that modules defining their own ``api`` or ``clock`` keep them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import respx
from PIL import Image

KLING_BASE_URL = "http://127.0.0.1:8089"
KLING_API_KEY = "fake-key-123"
VIDEO_URL = "https://cdn.example.com/out/kt-1.mp4?X-Amz-Signature=abc"

_real_async_sleep = asyncio.sleep


@pytest.fixture(scope="session", autouse=True)
def _metadata_db() -> None:
    """Create the empty SQLite metadata database of Airflow before 3.3, once per session.

    Before 3.3 a connection that is not in the environment is looked up in the metadata database, and
    building a ``Connection`` configures every ORM mapper, which needs all models imported first (the
    environment-variable lookup otherwise fails quietly and falls through to the database).
    """
    if os.environ.get("_AIRFLOW_SKIP_DB_TESTS"):  # Airflow 3.3+: no database at all
        return
    import airflow.models
    from airflow.utils import db

    airflow.models.import_all_models()
    db.initdb()


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
    import airflow_provider_kling.clock as clock_module
    import airflow_provider_kling.hooks.kling as hook_module

    clock = FakeClock()
    monkeypatch.setattr(clock_module, "_current", clock)  # clock.now()/sleep/asleep, tenacity's waits
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


@dataclass(frozen=True)
class LogLine:
    """One captured log call: its level (lower case) and its message with the arguments filled in."""

    level: str
    message: str


class CapturedLogs:
    """What was logged while the ``captured_logs`` fixture was active, whichever logging Airflow uses."""

    def __init__(self, caplog: pytest.LogCaptureFixture, structlog_entries: list[dict[str, Any]]) -> None:
        self._caplog = caplog
        self._structlog_entries = structlog_entries

    @property
    def lines(self) -> list[LogLine]:
        """Every captured line: structlog's (Airflow 3.3) first, then the standard library's."""
        lines = [LogLine(entry.get("log_level", ""), _structlog_message(entry)) for entry in self._structlog_entries]
        lines += [LogLine(record.levelname.lower(), record.getMessage()) for record in self._caplog.records]
        return lines

    def messages(self, level: str | None = None, *, containing: str = "") -> list[str]:
        """The messages at ``level`` (any, by default) that contain ``containing``."""
        return [
            line.message for line in self.lines if (level is None or line.level == level) and containing in line.message
        ]


def _structlog_message(entry: dict[str, Any]) -> str:
    event = str(entry.get("event", ""))
    args = entry.get("positional_args")
    if args:
        with contextlib.suppress(TypeError, ValueError):
            return event % tuple(args)
    return event


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[CapturedLogs]:
    """Capture the provider's log lines on every Airflow version.

    Airflow 3.3 logs through structlog (captured with ``structlog.testing``); 2.11 and 3.0 log through
    the standard library (captured by ``caplog``), and 2.11 does not ship structlog at all.
    """
    caplog.set_level(logging.DEBUG)
    try:
        from structlog.testing import capture_logs
    except ImportError:
        capture: contextlib.AbstractContextManager[list[dict[str, Any]]] = contextlib.nullcontext([])
    else:
        capture = capture_logs()
    with capture as structlog_entries:
        yield CapturedLogs(caplog, structlog_entries)


@pytest.fixture(autouse=True)
def _respx_visible_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the async hook's shared client on httpx's own transport, which respx intercepts.

    Production runs it on aiohttp (``httpx-aiohttp``), which respx cannot see; the tests that need the
    real transport set ``transport_factory`` back to ``aiohttp_transport`` against a real server.
    """
    from airflow_provider_kling.hooks import _shared_clients

    monkeypatch.setattr(_shared_clients, "transport_factory", _shared_clients.httpx_transport)
