"""The production poll transport (aiohttp) against real servers on 127.0.0.1.

The rest of the unit suite mocks HTTP with respx, which sees only httpx's own client, so it runs the polls
through :class:`~airflow_provider_kling.hooks._shared_clients.HttpxPollTransport`. This module proves the
transport a triggerer really uses behaves the same: the answers, every error class, the auth-error reset,
the connection's timeout, a base URL with a path, and a proxy named by the environment. Every server is a
process this module starts and stops by PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator

import _fakes
import httpx
import pytest
from _fakes import FakeClock

from airflow_provider_kling.exceptions import (
    KlingAuthError,
    KlingConnectionError,
    KlingRateLimitError,
    KlingTransientError,
)
from airflow_provider_kling.hooks import _shared_clients
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.models import TaskStatus
from airflow_provider_kling.sandbox import SandboxProcess
from airflow_provider_kling.sandbox.process import free_port

pytestmark = pytest.mark.usefixtures("close_shared_clients", "real_transport")

SANDBOX_KEY = "sandbox-key"

#: A server that accepts a connection and reads the request, then, by mode: closes it without an answer
#: ("drop"), never answers ("hang"), or answers a Task Result and prints the request's first line and its
#: headers as one JSON line ("proxy": what a forwarding proxy would see).
_BAD_SERVER = """
import json, socket, sys
mode, port = sys.argv[1], int(sys.argv[2])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(16)
print("ready", flush=True)
held = []
body = json.dumps({"task": {"task_id": "kt-1", "status": "TASK_STATUS_QUEUED"}}).encode()
while True:
    conn, _ = server.accept()
    request = conn.recv(65536).decode("latin-1")
    if mode == "drop":
        conn.close()
    elif mode == "proxy":
        lines = request.split("\\r\\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        print(json.dumps({"request_line": lines[0], "headers": headers}), flush=True)
        head = "HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)
        conn.sendall(head.encode() + body)
        conn.close()
    else:
        held.append(conn)
"""


@pytest.fixture
def real_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production transport (aiohttp), not the respx-visible one the other unit tests use."""
    monkeypatch.setattr(_shared_clients, "transport_factory", _shared_clients.AiohttpPollTransport)


@pytest.fixture
def bad_server() -> Iterator[Callable[[str], tuple[str, subprocess.Popen[str]]]]:
    """``bad_server(mode)``: start a misbehaving server on a free port; returns its URL and process."""
    processes: list[subprocess.Popen[str]] = []

    def start(mode: str) -> tuple[str, subprocess.Popen[str]]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-c", _BAD_SERVER, mode, str(port)], stdout=subprocess.PIPE, text=True
        )
        processes.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        return f"http://127.0.0.1:{port}", process

    yield start
    for process in processes:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    """One sandbox for the module; each test sets the chaos it needs and the fixture resets it."""
    with SandboxProcess(api_key=SANDBOX_KEY, generation_seconds=600) as process:
        yield process


@pytest.fixture
def sandbox_task(sandbox: SandboxProcess, kling_conn) -> Iterator[str]:
    """``kling_default`` pointed at the sandbox, and one rendering task there; chaos reset afterwards."""
    kling_conn(host=sandbox.url, password=SANDBOX_KEY, extra={"max_polls_per_second": 100})
    kling_task_id = KlingHook().submit("kling-v3.0-std-t2v", {"prompt": "a red fox"})
    sandbox.clear_journal()
    yield kling_task_id
    sandbox.reset_config()


async def test_a_poll_reaches_a_real_server_and_parses_its_answer(sandbox, sandbox_task):
    hook = KlingHook()

    result = await hook.aget_task_result(sandbox_task)
    again = await hook.aget_task_result(sandbox_task)  # a kept-alive connection of aiohttp's pool

    assert isinstance((await hook._shared()).transport, _shared_clients.AiohttpPollTransport)
    assert result.task.task_id == again.task.task_id == sandbox_task
    assert result.task.state in (TaskStatus.QUEUED, TaskStatus.PROCESSING)
    assert len(sandbox.journal(kind="poll")) == 2


async def test_every_hook_of_a_connection_in_a_loop_shares_one_session(sandbox, sandbox_task):
    hooks = [KlingHook() for _ in range(10)]

    for hook in hooks:
        await hook.aget_task_result(sandbox_task)

    assert len({id((await hook._shared()).transport) for hook in hooks}) == 1
    assert len(sandbox.journal(kind="poll")) == 10


async def test_a_429_is_a_rate_limit_error_with_the_vendors_retry_after(sandbox, sandbox_task):
    sandbox.configure(rate_429=1.0, chaos_scope="poll")

    with pytest.raises(KlingRateLimitError) as caught:
        await KlingHook(max_attempts=1).aget_task_result(sandbox_task)

    assert caught.value.http_status == 429
    assert caught.value.retry_after == 1.0
    assert "GET /v3/async/task-result answered HTTP 429" in caught.value.message


async def test_an_html_502_is_transient_and_its_message_is_the_pages_gist(sandbox, sandbox_task):
    sandbox.configure(rate_502_html=1.0, chaos_scope="poll")

    with pytest.raises(KlingTransientError, match=r"answered HTTP 502: .*Bad Gateway") as caught:
        await KlingHook(max_attempts=1).aget_task_result(sandbox_task)

    assert "<" not in caught.value.message


async def test_a_transient_answer_is_retried_and_the_retry_succeeds(sandbox, sandbox_task, monkeypatch):
    class RecoveringVendor(FakeClock):
        async def asleep(self, seconds: float, result: object = None) -> object:
            sandbox.reset_config()  # the vendor recovers while the hook waits out its backoff
            return await super().asleep(seconds, result)

    sandbox.configure(rate_500=1.0, chaos_scope="poll")
    with _fakes.installed(RecoveringVendor(), monkeypatch) as clock:
        result = await KlingHook(max_attempts=3).aget_task_result(sandbox_task)

    assert result.task.task_id == sandbox_task
    assert len(clock.sleeps) == 1
    assert [entry["status"] for entry in sandbox.journal(kind="poll")] == [500, 200]


async def test_a_refused_key_resets_the_shared_transport_and_the_next_poll_reads_the_connection_again(
    sandbox, sandbox_task, kling_conn
):
    kling_conn(host=sandbox.url, password="revoked-key", extra={"max_polls_per_second": 100})
    hook = KlingHook(max_attempts=1)

    with pytest.raises(KlingAuthError, match=r"answered HTTP 40[13]") as caught:
        await hook.aget_task_result(sandbox_task)
    refused = caught.value
    kling_conn(host=sandbox.url, password=SANDBOX_KEY, extra={"max_polls_per_second": 100})  # the rotated key
    result = await hook.aget_task_result(sandbox_task)

    assert "revoked-key" not in str(refused)
    assert result.task.task_id == sandbox_task


async def test_a_base_url_with_a_path_keeps_it(kling_conn, bad_server):
    url, process = bad_server("proxy")
    kling_conn(host=f"{url}/kling/", extra={"max_polls_per_second": 100})

    await KlingHook(max_attempts=1).aget_task_result("kt-1")

    assert process.stdout is not None
    seen = json.loads(process.stdout.readline())
    assert seen["request_line"] == "GET /kling/v3/async/task-result?task_id=kt-1 HTTP/1.1"
    assert seen["headers"]["Authorization"] == "Bearer fake-key-123"


async def test_a_proxy_from_the_environment_gets_the_absolute_url_and_its_credentials(
    kling_conn, bad_server, monkeypatch
):
    proxy_url, proxy = bad_server("proxy")
    monkeypatch.setenv("HTTPS_PROXY", proxy_url.replace("http://", "http://proxy-user:proxy-pass@"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kling_conn(host="https://kling.invalid", extra={"max_polls_per_second": 100})

    with pytest.raises(KlingTransientError):
        # A forwarding proxy cannot answer an https request (it is a CONNECT tunnel): what matters is
        # what reached it.
        await KlingHook(max_attempts=1).aget_task_result("kt-1")

    assert proxy.stdout is not None
    seen = json.loads(proxy.stdout.readline())
    assert seen["request_line"] == "CONNECT kling.invalid:443 HTTP/1.1"
    assert seen["headers"]["Proxy-Authorization"] == httpx.BasicAuth("proxy-user", "proxy-pass")._auth_header
    # The API key is for the vendor, at the end of the tunnel: the proxy never sees it.
    assert "fake-key-123" not in json.dumps(seen)


def test_a_host_in_no_proxy_bypasses_the_environments_proxy(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "kling.example")

    assert _shared_clients._environment_proxy("https://kling.example") == (None, None)
    assert _shared_clients._environment_proxy("https://api.novita.ai") == ("http://127.0.0.1:3128", None)


@pytest.mark.parametrize(
    "base_url", ["https://api.novita.ai", "https://api.novita.ai/", "http://127.0.0.1:8080/kling", "http://h/a/b/"]
)
def test_absolute_url_joins_as_httpx_joins_a_base_url(base_url):
    expected = httpx.Client(base_url=base_url).build_request("GET", "/v3/async/task-result").url

    assert _shared_clients.absolute_url(base_url, "/v3/async/task-result") == str(expected)


async def test_a_refused_connection_is_a_connection_error(kling_conn):
    kling_conn(host=f"http://127.0.0.1:{free_port()}")  # nothing listens there

    with pytest.raises(
        KlingConnectionError, match=r"GET http://127\.0\.0\.1:\d+/v3/async/task-result failed: ConnectError"
    ):
        await KlingHook(max_attempts=1).aget_task_result("kt-1")


async def test_a_dropped_connection_is_transient_but_not_never_sent(kling_conn, bad_server):
    url, _ = bad_server("drop")
    kling_conn(host=url)

    with pytest.raises(KlingTransientError, match="RemoteProtocolError") as caught:
        await KlingHook(max_attempts=1).aget_task_result("kt-1")

    assert not isinstance(caught.value, KlingConnectionError)


async def test_a_read_timeout_is_transient_but_not_never_sent(kling_conn, bad_server):
    url, _ = bad_server("hang")
    kling_conn(host=url, extra={"timeout": 0.5})

    with pytest.raises(KlingTransientError, match="ReadTimeout") as caught:
        await KlingHook(max_attempts=1).aget_task_result("kt-1")

    assert not isinstance(caught.value, KlingConnectionError)


@pytest.mark.parametrize(
    ("aiohttp_error", "httpx_error"),
    [
        (lambda: __import__("aiohttp").ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (lambda: __import__("aiohttp").SocketTimeoutError("read"), httpx.ReadTimeout),
        (lambda: __import__("aiohttp").ServerDisconnectedError(), httpx.RemoteProtocolError),
        (lambda: __import__("aiohttp").ClientPayloadError("cut"), httpx.RemoteProtocolError),
        (lambda: __import__("aiohttp").ClientOSError(104, "reset"), httpx.ReadError),
    ],
    ids=["connect-timeout", "read-timeout", "disconnected", "payload", "reset"],
)
def test_aiohttp_errors_map_to_the_httpx_errors_httpcore_raises(aiohttp_error, httpx_error):
    request = httpx.Request("GET", "http://127.0.0.1:1/v3/async/task-result")

    mapped = _shared_clients.httpx_error(aiohttp_error(), request)

    assert type(mapped) is httpx_error
    assert mapped is not None
    assert mapped.request is request
