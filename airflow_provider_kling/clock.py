"""The provider's one view of time: every deadline, wait and timestamp goes through here.

Deadlines travel between processes (a trigger's ``end_time`` is rebuilt by another triggerer), so they
are absolute epoch seconds, and timestamps written for people (sidecars, log lines) are timezone-aware
``pendulum`` datetimes in UTC, as Airflow's own are.

Tests swap the clock in one place with :func:`use_clock` instead of patching ``time`` module by module,
so a new module cannot silently escape a fake clock: ruff's banned-API rule refuses ``time.time``,
``time.sleep`` and ``asyncio.sleep`` everywhere else in the package.

Example::

    from airflow_provider_kling import clock

    deadline = clock.now() + 60
    while clock.now() < deadline:
        await clock.asleep(5)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Protocol

import pendulum


class Clock(Protocol):
    """What the provider needs of a clock: epoch seconds, and blocking and async waits."""

    def time(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        ...

    def asleep(self, seconds: float) -> Awaitable[None]:
        """Wait ``seconds`` without blocking the event loop (an ``async def`` qualifies)."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """``time.sleep(seconds)``."""
        time.sleep(seconds)

    def asleep(self, seconds: float) -> Awaitable[None]:
        """``asyncio.sleep(seconds)``."""
        return asyncio.sleep(seconds)


_current: Clock = SystemClock()


def now() -> float:
    """The current time in epoch seconds, from the active clock."""
    return _current.time()


def utcnow() -> pendulum.DateTime:
    """The current time as a UTC ``pendulum`` datetime, from the active clock."""
    return pendulum.from_timestamp(_current.time(), tz="UTC")


def sleep(seconds: float) -> None:
    """Block for ``seconds`` on the active clock (negative waits return at once)."""
    _current.sleep(max(0.0, seconds))


def asleep(seconds: float) -> Awaitable[None]:
    """Wait ``seconds`` on the active clock without blocking the event loop (``await clock.asleep(5)``).

    A plain function handing back the clock's own awaitable, not a coroutine wrapping it: thousands of
    triggers sleep here at once, and each wrapper would keep a frame alive per sleeping trigger.
    """
    return _current.asleep(max(0.0, seconds))


@contextmanager
def use_clock(replacement: Clock) -> Iterator[Clock]:
    """Make ``replacement`` the provider's clock for the duration of the ``with`` block (tests)."""
    global _current
    previous, _current = _current, replacement
    try:
        yield replacement
    finally:
        _current = previous
