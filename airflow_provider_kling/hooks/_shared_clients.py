"""One ``httpx.AsyncClient`` and one poll-rate limiter per connection and event loop.

A triggerer runs every trigger in one event loop. Sharing the client means one connection pool (kept-
alive TLS connections) for thousands of triggers instead of a handshake per poll, and sharing the limiter
means their polls together never exceed the connection's ``max_polls_per_second``, however many videos
are in flight. The connection is looked up once per loop, by one trigger, while the others wait.

A semaphore also caps the polls in flight at the pool's size, so polls beyond it queue on the semaphore
(constant cost) instead of in httpx's pool, whose bookkeeping costs time proportional to the waiting
requests times the connections on every request: with thousands of triggers polling at once (a restarted
triggerer and a high ``max_polls_per_second``) that alone cost milliseconds of CPU per poll. The pool is
kept small for the same reason.

Under the ``httpx.AsyncClient`` runs aiohttp's connection pool (the ``httpx-aiohttp`` transport): httpx
stays the interface (types, timeouts, errors, what tests mock) while a request costs a fraction of the
CPU time of httpcore's async pool. aiohttp's exceptions are mapped back onto the exact httpx exceptions
httpcore raises (:func:`httpx_error`), so a connect failure is still a "never sent" ``ConnectError``.
Unit tests that mock HTTP with respx swap in httpx's own transport through :data:`transport_factory`.
"""

from __future__ import annotations

import asyncio
import math
import urllib.request
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import httpx
from aiolimiter import AsyncLimiter
from httpx_aiohttp import AiohttpTransport

from airflow_provider_kling.hooks.connection import ConnectionSettings
from airflow_provider_kling.hooks.rate_limit import ClusterRateLimiter, aclose_cluster_limiters, async_cluster_limiter

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


#: How long an idle kept-alive connection stays open (httpx's default keep-alive expiry).
KEEPALIVE_SECONDS = 5.0

#: Each httpx exception httpcore raises, and the aiohttp exceptions that mean the same failure; the
#: most specific first. Only a failure to connect (refused, DNS, TLS handshake, connect or pool timeout)
#: means the request was never sent; a dropped connection or a read timeout may come after the vendor
#: got it.
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

    ``httpx-aiohttp`` maps exceptions too, but coarsely (a dropped connection becomes ``ConnectTimeout``,
    which would read as "never sent") and without the request: this mapping looks at the aiohttp
    exception itself. ``None`` when ``exc`` is not a transport failure.
    """
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None else exc
    for aiohttp_types, httpx_type in _AIOHTTP_ERRORS:
        if isinstance(cause, aiohttp_types):
            return httpx_type(str(cause) or type(cause).__name__, request=request)
    if isinstance(exc, httpx.TransportError):
        return type(exc)(str(exc), request=request)
    return None


class _MappedStream(httpx.AsyncByteStream):
    """A response body whose read failures are mapped by :func:`httpx_error`."""

    __slots__ = ("_inner", "_request")

    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _mapped(exc, self._request) from exc

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except (httpx.TransportError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _mapped(exc, self._request) from exc


def _mapped(exc: BaseException, request: httpx.Request) -> BaseException:
    return httpx_error(exc, request) or exc


class KlingAiohttpTransport(AiohttpTransport):
    """``httpx_aiohttp.AiohttpTransport`` with httpcore's exception classes (see :func:`httpx_error`)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` over aiohttp; failures raise the httpx exception httpcore would raise."""
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _mapped(exc, request) from exc
        response.stream = _MappedStream(response.stream, request)  # type: ignore[arg-type]
        return response


def aiohttp_transport(settings: ConnectionSettings, size: int) -> httpx.AsyncBaseTransport:
    """The production transport: aiohttp's pool of ``size`` connections to the connection's base URL.

    The session keeps no cookies (httpx's client does, as before) and is created lazily, inside the
    event loop that uses it. A proxy named by the environment (``HTTPS_PROXY``, ``NO_PROXY``...) is
    honoured as httpx honours it, resolved once: every request goes to the same base URL.
    """
    ssl_context = httpx.create_ssl_context()
    proxy = _environment_proxy(settings.base_url)

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=size, keepalive_timeout=KEEPALIVE_SECONDS, ssl=ssl_context)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    # ``verify`` given the context already made: the transport would otherwise load the CA bundle again.
    return KlingAiohttpTransport(verify=ssl_context, client=session, proxy=httpx.Proxy(proxy) if proxy else None)


def httpx_transport(settings: ConnectionSettings, size: int) -> httpx.AsyncBaseTransport:
    """httpx's own transport (httpcore's pool): what respx intercepts, so unit tests select it."""
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=KEEPALIVE_SECONDS)
    )


#: Builds the transport of each new shared client. Unit tests that mock HTTP with respx set it to
#: :func:`httpx_transport`; everything else (the triggerer, the end-to-end tests) runs aiohttp.
transport_factory: Callable[[ConnectionSettings, int], httpx.AsyncBaseTransport] = aiohttp_transport


def _environment_proxy(base_url: str) -> str | None:
    url = httpx.URL(base_url)
    proxies = urllib.request.getproxies()
    bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 - absent from typeshed
    if not proxies or bypass(url.host, proxies):
        return None
    return proxies.get(url.scheme) or proxies.get("all")


@dataclass
class SharedAsyncClient:
    """The shared state of one connection in one event loop."""

    conn_id: str
    settings: ConnectionSettings
    client: httpx.AsyncClient
    limiter: AsyncLimiter
    #: Held for the duration of each request: at most the pool's size in flight (see the module docstring).
    in_flight: asyncio.Semaphore
    #: The deployment-wide poll limit (the extra ``rate_limit_storage_uri``), or ``None``.
    cluster_limiter: ClusterRateLimiter | None
    _registry: dict[str, SharedAsyncClient] = field(repr=False)
    #: The Task Result URL up to its query string, set by the hook's first poll (see ``_task_result_url``).
    result_url_prefix: str | None = None

    async def invalidate(self) -> None:
        """Forget this entry (after an auth error) so the next call reads the connection again."""
        if self._registry.get(self.conn_id) is self:
            del self._registry[self.conn_id]
        await self.client.aclose()

    async def acquire(self) -> None:
        """Wait until this process's and, when configured, the deployment's poll limits allow a poll."""
        await self.limiter.acquire()
        if self.cluster_limiter is not None:
            await self.cluster_limiter.acquire()


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
                    transport=transport_factory(settings, size),
                ),
                limiter=poll_limiter(settings.max_polls_per_second),
                in_flight=asyncio.Semaphore(size),
                cluster_limiter=async_cluster_limiter(
                    settings.rate_limit_storage_uri, settings.max_polls_per_second, conn_id
                ),
                _registry=registry,
            )
            registry[conn_id] = entry
    return entry


async def aclose_shared_clients() -> None:
    """Close every shared client of the running loop (tests and benchmarks call this at the end)."""
    registry = _clients.pop(asyncio.get_running_loop(), {})
    for entry in registry.values():
        await entry.client.aclose()
    await aclose_cluster_limiters()
