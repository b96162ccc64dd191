"""Fixtures for the unit tests. The builders and fakes behind them live in ``_fakes.py``.

* ``kling_conn`` defines the ``kling_default`` connection through ``AIRFLOW_CONN_KLING_DEFAULT`` (the only
  way without a metadata DB) and returns a factory that defines more.
* ``kling_api`` (short: ``api``) mocks the vendor at the connection's base URL with respx; an unmocked
  request fails. ``result_route`` and ``submit_route`` are its Task Result route for ``kt-1`` and its
  submit route for the standard text-to-video model. ``kling_base_url`` and ``kling_api_key`` are that
  connection's URL and key.
* ``fake_clock`` (short: ``clock``) is the provider's clock for the test: nothing sleeps for real.
* ``sandbox_clock`` is the sandbox's own controllable clock (a task ages only when a test advances it),
  and ``sandbox_app(**settings)`` builds a sandbox app on it.
* ``make_image`` draws a real JPEG/PNG/GIF/WebP in memory with Pillow.
* ``result_body`` builds a Task Result answer the way the vendor sends it (numbers as strings).
* ``close_shared_clients`` closes the async hook's shared clients at the end of an async test.
* ``captured_logs`` collects what the provider logs, on every Airflow version (structlog on 3.3,
  the standard ``logging`` module before).
* ``_metadata_db`` (session, automatic) creates the SQLite metadata database of the Airflow versions
  that need one (see ``tests/conftest.py``).

A module that needs a different route or clock defines a fixture of the same name (such as a
``sandbox_clock`` that starts at a given time).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import _fakes
import pytest
import respx
from _fakes import FakeClock

from airflow_provider_kling.sandbox import SandboxSettings, create_app
from airflow_provider_kling.sandbox.testing import FakeClock as SandboxClock


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
    return _fakes.BASE_URL


@pytest.fixture
def kling_api_key() -> str:
    """The (fake) API key of ``kling_default``."""
    return _fakes.API_KEY


@pytest.fixture
def kling_conn(monkeypatch: pytest.MonkeyPatch) -> ConnectionFactory:
    """Define ``kling_default`` (sandbox URL, fake key, no rate limit in the way); return a factory.

    ``kling_conn("other", password="k2", extra={"timeout": 5})`` defines another connection and returns
    its id (:func:`_fakes.use_fake_connection`).
    """

    def define(conn_id: str = _fakes.CONN_ID, **fields: Any) -> str:
        return _fakes.use_fake_connection(monkeypatch, conn_id, **fields)

    define()
    return define


@pytest.fixture
def kling_api() -> Iterator[respx.MockRouter]:
    """The vendor, mocked at the connection's base URL. A request to an unmocked route fails the test."""
    with _fakes.mock_api() as router:
        yield router


@pytest.fixture
def api(kling_api: respx.MockRouter) -> respx.MockRouter:
    """``kling_api`` under the short name the operator, sensor and trigger tests use."""
    return kling_api


@pytest.fixture
def result_route(kling_api: respx.MockRouter) -> respx.Route:
    """The Task Result route of ``kt-1``; set its ``side_effect`` or ``respond`` in the test."""
    return kling_api.get(_fakes.RESULT_PATH, params={"task_id": _fakes.KLING_TASK_ID})


@pytest.fixture
def submit_route(kling_api: respx.MockRouter) -> respx.Route:
    """The submit route of the standard text-to-video model, answering ``kt-1``."""
    return kling_api.post(_fakes.submit_path(_fakes.T2V)).respond(200, json={"task_id": _fakes.KLING_TASK_ID})


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """The provider's clock for this test: a :class:`_fakes.FakeClock`; nothing sleeps for real."""
    with _fakes.installed(FakeClock(), monkeypatch) as fake:
        yield fake


@pytest.fixture
def clock(fake_clock: FakeClock) -> FakeClock:
    """``fake_clock`` under the short name the operator, sensor and trigger tests use."""
    return fake_clock


@pytest.fixture
def sandbox_clock() -> SandboxClock:
    """The sandbox's own clock, apart from the provider's ``fake_clock``: it moves only when advanced."""
    return SandboxClock()


SandboxAppFactory = Callable[..., Any]


@pytest.fixture
def sandbox_app(sandbox_clock: SandboxClock) -> SandboxAppFactory:
    """``sandbox_app(**settings)``: a sandbox app with those ``SandboxSettings``, on ``sandbox_clock``."""

    def make(**settings: Any) -> Any:
        return create_app(SandboxSettings(**settings), clock=sandbox_clock)

    return make


ImageFactory = Callable[..., bytes]


@pytest.fixture
def make_image() -> ImageFactory:
    """``make_image(width, height, fmt="PNG")``: the bytes of a real image drawn in memory."""
    return _fakes.draw_image


ResultBody = Callable[..., dict[str, Any]]


@pytest.fixture
def result_body() -> ResultBody:
    """``result_body(status, kling_task_id=..., eta=..., ...)``: a Task Result as the vendor sends it."""
    return _fakes.task_result


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
    """Send the async hook's polls through ``httpx.AsyncClient``, which respx intercepts.

    Production sends them through aiohttp, which respx cannot see; the tests that need the real
    transport set ``transport_factory`` back to ``AiohttpPollTransport`` against a real server.
    """
    from airflow_provider_kling.hooks import _shared_clients

    monkeypatch.setattr(_shared_clients, "transport_factory", _shared_clients.HttpxPollTransport)
