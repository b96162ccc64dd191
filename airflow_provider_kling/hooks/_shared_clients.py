"""One poll transport and one poll-rate limiter per connection and event loop.

A triggerer runs every trigger in one event loop. Sharing the transport means one connection pool
(kept-alive TLS connections) for thousands of triggers instead of a handshake per poll, and sharing the
limiter means their polls together never exceed the connection's ``max_polls_per_second``, however many
videos are in flight. The connection is looked up once per loop, by one trigger, while the others wait.

A semaphore also caps the polls in flight at the pool's size, so polls beyond it queue on the semaphore
(constant cost) instead of in the pool, and the pool is kept small: polite to the vendor, and cheap.

The poll's GET goes straight through aiohttp (:class:`AiohttpPollTransport`): a poll is the one call a
triggerer makes thousands of times a minute, and httpx's request and response objects cost as much CPU as
aiohttp's whole request under them. httpx stays the vocabulary: a failure raises the exact httpx
exception httpcore would have raised (:func:`httpx_error`; a connect failure is still a "never sent"
``ConnectError``), and an error answer arrives as an ``httpx.Response`` in ``httpx.HTTPStatusError``, so
the hook classifies both as it classifies the sync path's. Unit tests that mock HTTP with respx select
:class:`HttpxPollTransport` (an ``httpx.AsyncClient``, which respx intercepts) through
:data:`transport_factory`; the tests against real servers and the end-to-end suite run aiohttp.
"""

from __future__ import annotations

import asyncio
import math
import urllib.request
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import httpx
from aiolimiter import AsyncLimiter

from airflow_provider_kling.hooks.connection import ConnectionSettings
from airflow_provider_kling.hooks.rate_limit import ClusterRateLimiter, aclose_cluster_limiters, async_cluster_limiter

#: Round trip assumed when sizing the pool: enough connections for ``max_polls_per_second`` polls per
#: second when each takes this long.
ROUND_TRIP_ALLOWANCE = 0.5
#: Bounds of the polls in flight per connection and loop: a few even at a low rate, and polite to the
#: vendor at a high one.
MIN_POLLS_IN_FLIGHT, MAX_POLLS_IN_FLIGHT = 4, 16


def polls_in_flight(max_polls_per_second: float) -> int:
    """How many polls may be in flight at once (and the pool's size) for a rate limit.

    ``max_polls_per_second`` times :data:`ROUND_TRIP_ALLOWANCE`, within the bounds: 10 for the default
    limit of 20 polls per second.
    """
    wanted = math.ceil(max_polls_per_second * ROUND_TRIP_ALLOWANCE)
    return max(MIN_POLLS_IN_FLIGHT, min(MAX_POLLS_IN_FLIGHT, wanted))


#: How long an idle kept-alive connection stays open (httpx's default keep-alive expiry).
KEEPALIVE_SECONDS = 5.0

#: Each httpx exception httpcore raises, and the aiohttp exceptions that mean the same failure; the
#: most specific first. Only a failure to connect (refused, DNS, TLS handshake, connect timeout) means
#: the request was never sent; a dropped connection or a read timeout may come after the vendor got it.
_AIOHTTP_ERRORS: tuple[tuple[tuple[type[BaseException], ...], type[httpx.TransportError]], ...] = (
    ((aiohttp.ConnectionTimeoutError,), httpx.ConnectTimeout),
    ((aiohttp.ServerTimeoutError, asyncio.TimeoutError), httpx.ReadTimeout),
    ((aiohttp.ClientConnectorError,), httpx.ConnectError),
    ((aiohttp.ClientHttpProxyError,), httpx.ProxyError),
    ((aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError), httpx.UnsupportedProtocol),
    (
        (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError),
        httpx.RemoteProtocolError,
    ),
    ((aiohttp.ClientConnectionError,), httpx.ReadError),
    ((aiohttp.ClientError,), httpx.TransportError),
)


def httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx exception httpcore would have raised for ``exc`` (from aiohttp), bound to ``request``.

    ``None`` when ``exc`` is not a transport failure.
    """
    for aiohttp_types, httpx_type in _AIOHTTP_ERRORS:
        if isinstance(exc, aiohttp_types):
            return httpx_type(str(exc) or type(exc).__name__, request=request)
    return None


class PollTransport(Protocol):
    """How the async hook sends a poll: one GET of an absolute URL, with the connection's headers.

    :meth:`get` returns the body of a 2xx (or 3xx) answer; an answer of 400 or more raises
    ``httpx.HTTPStatusError`` carrying the ``httpx.Response``, and a transport failure raises the
    ``httpx.TransportError`` httpcore would raise.
    """

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` was called."""

    async def get(self, url: str) -> bytes:
        """GET ``url``; the body of a successful answer."""

    async def aclose(self) -> None:
        """Close the pool's connections."""


class AiohttpPollTransport:
    """The production poll transport: one ``aiohttp.ClientSession`` of ``size`` kept-alive connections.

    It behaves as the httpx client it replaces: the connection's timeout for the connect and for each
    read, no redirects followed, no cookies kept, the CA bundle httpx would use, and a proxy named by the
    environment (``HTTPS_PROXY``, ``NO_PROXY``...) honoured as httpx honours it, resolved once: every
    request goes to the same base URL. Built inside the event loop that uses it.
    """

    __slots__ = ("_headers", "_proxy", "_proxy_headers", "_session")

    def __init__(self, settings: ConnectionSettings, size: int) -> None:
        connector = aiohttp.TCPConnector(
            limit=size, keepalive_timeout=KEEPALIVE_SECONDS, ssl=httpx.create_ssl_context()
        )
        timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.timeout, sock_connect=settings.timeout, sock_read=settings.timeout
        )
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar())
        # Sent with each request, never as the session's default headers: aiohttp adds those to a proxy's
        # CONNECT too, and would hand the API key to the proxy as its Proxy-Authorization.
        self._headers = settings.auth_headers
        self._proxy, self._proxy_headers = _environment_proxy(settings.base_url)

    @property
    def is_closed(self) -> bool:
        """Whether the session was closed."""
        return self._session.closed

    async def get(self, url: str) -> bytes:
        """GET ``url`` (see :class:`PollTransport`)."""
        try:
            async with self._session.get(
                url,
                headers=self._headers,
                allow_redirects=False,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
            ) as answer:
                body = await answer.read()
                if answer.status >= 400:
                    # Only an error answer pays for httpx's objects: the hook's error mapping reads them.
                    request = httpx.Request("GET", url)
                    response = httpx.Response(answer.status, headers=answer.raw_headers, content=body, request=request)
                    raise httpx.HTTPStatusError(f"HTTP {answer.status}", request=request, response=response)
                return body
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise httpx_error(exc, httpx.Request("GET", url)) or exc from exc

    async def aclose(self) -> None:
        """Close the session and its connections."""
        await self._session.close()


class HttpxPollTransport:
    """httpx's own async client and pool (httpcore): what respx intercepts, so unit tests select it."""

    __slots__ = ("client",)

    def __init__(self, settings: ConnectionSettings, size: int) -> None:
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=KEEPALIVE_SECONDS)
        self.client = httpx.AsyncClient(
            headers=settings.auth_headers, timeout=settings.timeout, transport=httpx.AsyncHTTPTransport(limits=limits)
        )

    @property
    def is_closed(self) -> bool:
        """Whether the client was closed."""
        return self.client.is_closed

    async def get(self, url: str) -> bytes:
        """GET ``url`` (see :class:`PollTransport`)."""
        response = await self.client.get(url)
        if response.is_error:
            raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request, response=response)
        return response.content

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self.client.aclose()


#: Builds the poll transport of each new shared entry. Unit tests that mock HTTP with respx set it to
#: :class:`HttpxPollTransport`; everything else (the triggerer, the end-to-end tests) runs aiohttp.
transport_factory: Callable[[ConnectionSettings, int], PollTransport] = AiohttpPollTransport


def absolute_url(base_url: str, path: str) -> str:
    """``path`` under ``base_url``, joined as ``httpx.Client(base_url=...)`` joins them.

    A base URL with a path (an API clone behind a prefix) keeps it: ``https://host/kling`` and
    ``/v3/async/task-result`` give ``https://host/kling/v3/async/task-result``.
    """
    base = httpx.URL(base_url)
    raw_path = base.raw_path if base.raw_path.endswith(b"/") else base.raw_path + b"/"
    return str(base.copy_with(raw_path=raw_path + path.lstrip("/").encode("ascii")))


def _environment_proxy(base_url: str) -> tuple[str | None, dict[str, str] | None]:
    """The proxy the environment names for ``base_url`` (credentials as a header), or ``(None, None)``."""
    url = httpx.URL(base_url)
    proxies = urllib.request.getproxies()
    bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 - absent from typeshed
    if not proxies or bypass(url.host, proxies):
        return None, None
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None, None
    proxy_url = httpx.URL(proxy if "://" in proxy else f"http://{proxy}")
    if not proxy_url.username:
        return str(proxy_url), None
    credentials = aiohttp.BasicAuth(proxy_url.username, proxy_url.password)
    return str(proxy_url.copy_with(username=None, password=None)), {"Proxy-Authorization": credentials.encode()}


@dataclass(eq=False)
class SharedAsyncClient:
    """The shared state of one connection in one event loop."""

    conn_id: str
    settings: ConnectionSettings
    transport: PollTransport
    limiter: AsyncLimiter
    #: The pool's size: at most this many polls in flight (see the module docstring).
    size: int
    #: Held for the duration of each request: at most ``size`` in flight.
    in_flight: asyncio.Semaphore
    #: The deployment-wide poll limit (the extra ``rate_limit_storage_uri``), or ``None``.
    cluster_limiter: ClusterRateLimiter | None
    _registry: dict[str, SharedAsyncClient] = field(repr=False)
    #: The Task Result URL up to its query string, set by the hook's first poll (see ``_task_result_url``).
    result_url_prefix: str | None = None
    #: Set by :meth:`invalidate`: polls still queued for a slot of this entry must not send.
    invalidated: bool = False

    def invalidate(self) -> None:
        """Forget this entry (after an auth error) so the next call reads the connection again.

        The polls already in flight on it finish: the triggers' polls of one connection wake together,
        and closing the pool under them would turn their answers (a refusal each trigger must read for
        itself, or a finished video) into dropped connections. The pool is closed once they have.
        """
        if self.invalidated:
            return
        self.invalidated = True
        if self._registry.get(self.conn_id) is self:
            del self._registry[self.conn_id]
        retiring = _retiring.setdefault(asyncio.get_running_loop(), {})
        retiring[self] = asyncio.get_running_loop().create_task(self._close_when_idle())

    async def _close_when_idle(self) -> None:
        for _ in range(self.size):
            await self.in_flight.acquire()
        await self.transport.aclose()
        _retiring.get(asyncio.get_running_loop(), {}).pop(self, None)

    async def acquire(self) -> None:
        """Wait until this process's and, when configured, the deployment's poll limits allow a poll."""
        await self.limiter.acquire()
        if self.cluster_limiter is not None:
            await self.cluster_limiter.acquire()


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedAsyncClient]] = (
    weakref.WeakKeyDictionary()
)
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()
#: Invalidated entries whose pools close once their polls in flight finish, with the task that closes
#: each, per loop: kept so the tasks are not garbage-collected mid-way and :func:`aclose_shared_clients`
#: can close what is left.
_retiring: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[SharedAsyncClient, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary()
)


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
    """Return this loop's shared entry for ``conn_id``, creating it (once) with ``load_settings``."""
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
                transport=transport_factory(settings, size),
                limiter=poll_limiter(settings.max_polls_per_second),
                size=size,
                in_flight=asyncio.Semaphore(size),
                cluster_limiter=async_cluster_limiter(
                    settings.rate_limit_storage_uri, settings.max_polls_per_second, conn_id
                ),
                _registry=registry,
            )
            registry[conn_id] = entry
    return entry


async def aclose_shared_clients() -> None:
    """Close every shared transport of the running loop (tests and benchmarks call this at the end)."""
    loop = asyncio.get_running_loop()
    registry = _clients.pop(loop, {})
    for entry in registry.values():
        await entry.transport.aclose()
    for entry, closing in _retiring.pop(loop, {}).items():
        closing.cancel()
        await entry.transport.aclose()
    await aclose_cluster_limiters()
