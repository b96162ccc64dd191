"""One ``httpx.AsyncClient`` and one poll-rate limiter per connection and event loop.

A triggerer runs every trigger in one event loop. Sharing the client means one connection pool (kept-
alive TLS connections) for thousands of triggers instead of a handshake per poll, and sharing the limiter
means their polls together never exceed the connection's ``max_polls_per_second``, however many videos
are in flight. The connection is looked up once per loop, by one trigger, while the others wait.

A semaphore also caps the polls in flight at the pool's size, so polls beyond it queue on the semaphore
(constant cost) instead of in httpx's pool, whose bookkeeping costs time proportional to the waiting
requests times the connections on every request: with thousands of triggers polling at once (a restarted
triggerer and a high ``max_polls_per_second``) that alone cost milliseconds of CPU per poll. The pool is
kept small for the same reason: httpx checks every idle connection on every request.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from aiolimiter import AsyncLimiter

from airflow_provider_kling.hooks.connection import ConnectionSettings

#: Round trip assumed when sizing the pool: enough connections for ``max_polls_per_second`` polls per
#: second when each takes this long.
ROUND_TRIP_ALLOWANCE = 0.5
#: Bounds of the polls in flight per connection and loop: a few even at a low rate, and polite to the
#: vendor (and cheap for httpx's pool, whose per-request work grows with its connections) at a high one.
MIN_POLLS_IN_FLIGHT, MAX_POLLS_IN_FLIGHT = 4, 16


def polls_in_flight(max_polls_per_second: float) -> int:
    """How many polls may be in flight at once (and the pool's size) for a rate limit.

    ``max_polls_per_second`` times :data:`ROUND_TRIP_ALLOWANCE`, within the bounds: 10 for the default
    limit of 20 polls per second.
    """
    wanted = math.ceil(max_polls_per_second * ROUND_TRIP_ALLOWANCE)
    return max(MIN_POLLS_IN_FLIGHT, min(MAX_POLLS_IN_FLIGHT, wanted))


@dataclass
class SharedAsyncClient:
    """The shared state of one connection in one event loop."""

    conn_id: str
    settings: ConnectionSettings
    client: httpx.AsyncClient
    limiter: AsyncLimiter
    #: Held for the duration of each request: at most the pool's size in flight (see the module docstring).
    in_flight: asyncio.Semaphore
    _registry: dict[str, SharedAsyncClient] = field(repr=False)

    async def invalidate(self) -> None:
        """Forget this entry (after an auth error) so the next call reads the connection again."""
        if self._registry.get(self.conn_id) is self:
            del self._registry[self.conn_id]
        await self.client.aclose()


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedAsyncClient]] = (
    weakref.WeakKeyDictionary()
)
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def poll_limiter(max_polls_per_second: float) -> AsyncLimiter:
    """A limiter allowing ``max_polls_per_second`` polls per second on average.

    aiolimiter refuses to acquire more than its ``max_rate`` at once, so a rate below one per second is
    expressed as one poll per ``1 / rate`` seconds (``AsyncLimiter(0.5, 1)`` would refuse every poll).
    """
    if max_polls_per_second >= 1:
        return AsyncLimiter(max_polls_per_second, 1.0)
    return AsyncLimiter(1, 1.0 / max_polls_per_second)


async def shared_async_client(
    conn_id: str, load_settings: Callable[[], Awaitable[ConnectionSettings]]
) -> SharedAsyncClient:
    """Return this loop's shared client for ``conn_id``, creating it (once) with ``load_settings``."""
    loop = asyncio.get_running_loop()
    registry = _clients.setdefault(loop, {})
    entry = registry.get(conn_id)
    if entry is not None:
        return entry
    lock = _locks.setdefault(loop, {}).setdefault(conn_id, asyncio.Lock())
    async with lock:
        entry = registry.get(conn_id)
        if entry is None:
            settings = await load_settings()
            size = polls_in_flight(settings.max_polls_per_second)
            entry = SharedAsyncClient(
                conn_id=conn_id,
                settings=settings,
                client=httpx.AsyncClient(
                    base_url=settings.base_url,
                    headers=settings.auth_headers,
                    timeout=settings.timeout,
                    limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                ),
                limiter=poll_limiter(settings.max_polls_per_second),
                in_flight=asyncio.Semaphore(size),
                _registry=registry,
            )
            registry[conn_id] = entry
    return entry


async def aclose_shared_clients() -> None:
    """Close every shared client of the running loop (tests and benchmarks call this at the end)."""
    registry = _clients.pop(asyncio.get_running_loop(), {})
    for entry in registry.values():
        await entry.client.aclose()
