"""One ``httpx.AsyncClient`` and one poll-rate limiter per connection and event loop.

A triggerer runs every trigger in one event loop. Sharing the client means one connection pool (kept-
alive TLS connections) for thousands of triggers instead of a handshake per poll, and sharing the limiter
means their polls together never exceed the connection's ``max_polls_per_second``, however many videos
are in flight. The connection is looked up once per loop, by one trigger, while the others wait.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from aiolimiter import AsyncLimiter

from airflow_provider_kling.hooks.connection import ConnectionSettings

#: Enough keep-alive connections for a busy triggerer, few enough to be polite to the vendor.
POOL_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)


@dataclass
class SharedAsyncClient:
    """The shared state of one connection in one event loop."""

    conn_id: str
    settings: ConnectionSettings
    client: httpx.AsyncClient
    limiter: AsyncLimiter
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
            entry = SharedAsyncClient(
                conn_id=conn_id,
                settings=settings,
                client=httpx.AsyncClient(
                    base_url=settings.base_url,
                    headers=settings.auth_headers,
                    timeout=settings.timeout,
                    limits=POOL_LIMITS,
                ),
                limiter=poll_limiter(settings.max_polls_per_second),
                _registry=registry,
            )
            registry[conn_id] = entry
    return entry


async def aclose_shared_clients() -> None:
    """Close every shared client of the running loop (tests and benchmarks call this at the end)."""
    registry = _clients.pop(asyncio.get_running_loop(), {})
    for entry in registry.values():
        await entry.client.aclose()
