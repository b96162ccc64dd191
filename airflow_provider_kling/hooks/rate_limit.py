"""A poll rate limit shared by every process of a deployment, kept in Redis.

Each process limits its own polls to the connection's ``max_polls_per_second`` (aiolimiter, in
:mod:`~airflow_provider_kling.hooks._shared_clients`). With several triggerers, and workers polling in
sync mode, the vendor would see that many times the rate. When the ``kling`` connection's extra names a
Redis store (``rate_limit_storage_uri``, e.g. ``redis://redis.internal:6379/0``), every poll of every
process using that connection also takes a slot of one moving window kept there, with the ``limits``
library (its Lua-scripted moving window: no hand-written counter). The window's length and size are
chosen so that no 10-second window ever holds more polls than ``10 * max_polls_per_second``.

The store must never stop a video: when it cannot be reached, polls carry on under the per-process
limit alone, with one warning per process, and the store is tried again every
:data:`RETRY_STORE_SECONDS` until it answers (then one info line says so). The URI's password never
appears in a log line or an error message (:func:`redacted`).

The moving window keeps the callers' timestamps, so the hosts' clocks must agree (NTP), as Airflow's own
scheduling already requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.errors import StorageError

from airflow_provider_kling import clock
from airflow_provider_kling.exceptions import KlingValidationError

log = logging.getLogger(__name__)

#: URI schemes of a Redis store (redis-py's ``from_url`` spellings).
SCHEMES = ("redis", "rediss", "unix")
#: Seconds between attempts to reach a store that did not answer.
RETRY_STORE_SECONDS = 5.0
#: Socket timeouts for the store: a Redis round trip takes a millisecond, a poll must not wait long.
STORE_TIMEOUT_SECONDS = 2.0
#: Extra random wait after the window frees a slot, so waiting processes do not all retry at once.
JITTER_SECONDS = 0.05
#: Redis key prefix of the windows.
KEY_PREFIX = "airflow-provider-kling"

_warned = False
_warn_lock = threading.Lock()


def redacted(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for log lines and error messages)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_storage_uri(conn_id: str, uri: str | None) -> str | None:
    """Return ``uri`` stripped (``None`` when empty) or raise :class:`KlingValidationError` naming the field.

    Only the scheme is checked here (no I/O): an unreachable store is not an error, see the module.
    """
    value = (uri or "").strip()
    if not value:
        return None
    scheme = urlsplit(value).scheme
    if scheme not in SCHEMES:
        raise KlingValidationError(
            f"connection {conn_id!r} extra: rate_limit_storage_uri={redacted(value)!r}: must be a Redis URI "
            "such as redis://host:6379/0 (schemes: redis, rediss, unix)"
        )
    return value


def window(max_polls_per_second: float) -> RateLimitItem:
    """The moving window for a rate: ``rate`` per second when that is a whole number, else per 10 s.

    Any 10-second span is covered by windows of that length, so it never holds more than
    ``10 * rate`` polls. A rate below one poll per 10 s gets a window of one poll.
    """
    rate = max_polls_per_second
    if rate >= 1 and float(rate).is_integer():
        return RateLimitItemPerSecond(int(rate), 1)
    seconds = 10 if rate * 10 >= 1 else math.ceil(1 / rate)
    return RateLimitItemPerSecond(max(1, math.floor(rate * seconds)), seconds)


def _store_options() -> dict[str, Any]:
    """redis-py options: short timeouts and no retries of its own (we fall back instead of waiting)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": STORE_TIMEOUT_SECONDS,
        "socket_connect_timeout": STORE_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 0),
    }


@dataclass
class _Health:
    """Whether the store answered last time, and when to try it again if not."""

    uri: str
    down_until: float = 0.0
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def usable(self) -> bool:
        return not self.down or clock.now() >= self.down_until

    def failed(self, error: BaseException) -> None:
        global _warned
        with self.lock:
            self.down = True
            self.down_until = clock.now() + RETRY_STORE_SECONDS
        with _warn_lock:
            first, _warned = not _warned, True
        if first:
            log.warning(
                "The cluster-wide Kling poll rate limit store %s cannot be reached (%s): polling goes on under "
                "this process's own limit (max_polls_per_second) and retries the store every %.0f s",
                redacted(self.uri),
                type(error).__name__,
                RETRY_STORE_SECONDS,
            )

    def answered(self) -> None:
        if self.down:
            with self.lock:
                was_down, self.down = self.down, False
            if was_down:
                log.info("The Kling poll rate limit store %s answers again", redacted(self.uri))


#: What a store failure can raise: limits wraps redis-py's errors; sockets and timeouts just in case.
_STORE_ERRORS = (StorageError, OSError, asyncio.TimeoutError)


class ClusterRateLimiter:
    """The deployment-wide poll limit of one connection, in an event loop (``acquire`` is async).

    :param uri: The Redis URI (``redis://``, ``rediss://`` or ``unix://``).
    :param max_polls_per_second: The limit, shared by every process that uses ``key``.
    :param key: What the processes share the limit by (the connection id).
    """

    def __init__(self, uri: str, max_polls_per_second: float, key: str) -> None:
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        self.uri = uri
        self.item = window(max_polls_per_second)
        self.key = key
        # limits' async Redis storage defaults to coredis; "redispy" runs on redis-py's asyncio client.
        self._storage = RedisStorage(
            f"async+{uri}", implementation="redispy", wrap_exceptions=True, key_prefix=KEY_PREFIX, **_store_options()
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._health = _health(uri)

    async def acquire(self) -> None:
        """Wait for a slot in the shared window; return at once (per-process limit only) if the store fails."""
        while self._health.usable():
            try:
                if await self._limiter.hit(self.item, self.key):
                    self._health.answered()
                    return
                reset, _ = await self._limiter.get_window_stats(self.item, self.key)
            except _STORE_ERRORS as err:
                self._health.failed(err)
                return
            self._health.answered()
            await clock.asleep(max(0.0, reset - clock.now()) + random.uniform(0, JITTER_SECONDS))

    async def aclose(self) -> None:
        """Close the connections to the store."""
        bridge = getattr(self._storage, "bridge", None)
        client = getattr(bridge, "storage", None)
        if client is not None:
            with contextlib.suppress(*_STORE_ERRORS):  # closing a dead connection
                await client.aclose()


class SyncClusterRateLimiter:
    """The blocking twin of :class:`ClusterRateLimiter`, for sync-mode polls on workers (thread-safe)."""

    def __init__(self, uri: str, max_polls_per_second: float, key: str) -> None:
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter

        self.uri = uri
        self.item = window(max_polls_per_second)
        self.key = key
        self._storage = RedisStorage(uri, wrap_exceptions=True, key_prefix=KEY_PREFIX, **_store_options())
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._health = _health(uri)

    def acquire(self) -> None:
        """Block for a slot in the shared window; return at once if the store fails."""
        while self._health.usable():
            try:
                if self._limiter.hit(self.item, self.key):
                    self._health.answered()
                    return
                reset, _ = self._limiter.get_window_stats(self.item, self.key)
            except _STORE_ERRORS as err:
                self._health.failed(err)
                return
            self._health.answered()
            clock.sleep(max(0.0, reset - clock.now()) + random.uniform(0, JITTER_SECONDS))


_healths: dict[str, _Health] = {}
_sync_limiters: dict[tuple[str, float, str], SyncClusterRateLimiter] = {}
_async_limiters: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, float, str], ClusterRateLimiter]
] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _health(uri: str) -> _Health:
    with _registry_lock:
        return _healths.setdefault(uri, _Health(uri))


def async_cluster_limiter(uri: str | None, max_polls_per_second: float, key: str) -> ClusterRateLimiter | None:
    """This event loop's limiter for ``(uri, rate, key)``, kept across shared-client resets; ``None`` without a URI."""
    if not uri:
        return None
    per_loop = _async_limiters.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get((uri, max_polls_per_second, key))
    if limiter is None:
        limiter = per_loop[(uri, max_polls_per_second, key)] = ClusterRateLimiter(uri, max_polls_per_second, key)
    return limiter


def sync_cluster_limiter(uri: str | None, max_polls_per_second: float, key: str) -> SyncClusterRateLimiter | None:
    """The process's blocking limiter for ``(uri, rate, key)``; ``None`` without a URI."""
    if not uri:
        return None
    with _registry_lock:
        limiter = _sync_limiters.get((uri, max_polls_per_second, key))
        if limiter is None:
            limiter = _sync_limiters[(uri, max_polls_per_second, key)] = SyncClusterRateLimiter(
                uri, max_polls_per_second, key
            )
    return limiter


async def aclose_cluster_limiters() -> None:
    """Close this event loop's async limiters (tests and benchmarks call this at the end)."""
    for limiter in _async_limiters.pop(asyncio.get_running_loop(), {}).values():
        await limiter.aclose()


def reset_warning() -> None:
    """Forget that the once-per-process warning was logged and every store's health (tests)."""
    global _warned
    with _warn_lock:
        _warned = False
    with _registry_lock:
        _healths.clear()
        _sync_limiters.clear()
