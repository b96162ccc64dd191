"""Run a sandbox as a subprocess from tests: :class:`SandboxProcess`.

Example::

    from airflow_provider_kling.sandbox import SandboxProcess

    with SandboxProcess(generation_seconds=1, api_key="sandbox-key") as sandbox:
        os.environ["AIRFLOW_CONN_KLING_DEFAULT"] = sandbox.airflow_connection("sandbox-key")
        ...  # run a DAG, then look behind the curtain:
        assert len(sandbox.journal(kind="submit")) == 1
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from airflow_provider_kling.sandbox.settings import ENV_PREFIX, RUNTIME_FIELDS, SandboxSettings


class SandboxStartError(RuntimeError):
    """The sandbox process exited or did not answer ``/sandbox/health`` in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def peak_in_flight(tasks: Iterable[Mapping[str, Any]]) -> int:
    """The largest number of tasks generating at the same moment, from ``GET /sandbox/tasks`` rows.

    A task is in flight from ``created_at`` until ``completes_at`` (exclusive), so one that ends exactly
    when another starts does not overlap it.
    """
    events = []
    for task in tasks:
        events.append((float(task["created_at"]), 1))
        events.append((float(task["completes_at"]), -1))
    peak = current = 0
    # At equal times ends (-1) sort before starts (+1).
    for _, delta in sorted(events):
        current += delta
        peak = max(peak, current)
    return peak


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class SandboxProcess:
    """A sandbox server in a child process on ``127.0.0.1``; a context manager.

    :param port: the port to listen on; default: a free one, kept across :meth:`restart`.
    :param env: extra environment for the child (on top of this process's environment).
    :param startup_timeout: seconds to wait for ``/sandbox/health`` to answer.
    :param grace_period: seconds between SIGTERM and SIGKILL in :meth:`stop`.
    :param log_path: where the child's output goes; default: a temporary file (see :attr:`log_path`),
        deleted when the ``with`` block ends without an exception.
    :param settings: any :class:`~.settings.SandboxSettings` field, e.g. ``generation_seconds=2``,
        ``api_key="sandbox-key"``, ``state_file=tmp_path / "sandbox.db"``; passed as ``KLING_SANDBOX_*``.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        grace_period: float = 5.0,
        log_path: Path | str | None = None,
        **settings: Any,
    ) -> None:
        unknown = sorted(set(settings) - set(SandboxSettings.model_fields))
        if unknown:
            raise TypeError(f"unknown sandbox settings: {', '.join(unknown)}")
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.grace_period = grace_period
        self._settings = settings
        self._extra_env = dict(env or {})
        self._overrides: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._owns_log = log_path is None
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="kling-sandbox-", suffix=".log")
            os.close(handle)
            log_path = name
        self.log_path = Path(log_path)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8089`` (the connection's host)."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id, or ``None`` when not running."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def environment(self) -> dict[str, str]:
        """The environment the child is started with."""
        env = dict(os.environ)
        for name, value in self._settings.items():
            if value is not None:
                env[ENV_PREFIX + name.upper()] = _env_value(value)
        env.update(self._extra_env)
        return env

    def start(self) -> SandboxProcess:
        """Start the child and wait until it answers; raises :class:`SandboxStartError` otherwise."""
        if self.running:
            return self
        command = [
            sys.executable,
            "-m",
            "airflow_provider_kling.sandbox",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_healthy()
        if self._overrides:
            self._request("POST", "/sandbox/config", json=self._overrides)
        return self

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SandboxStartError(f"sandbox exited with code {self._process.returncode}:\n{self.log_tail()}")
            try:
                answer = httpx.get(f"{self.url}/sandbox/health", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            # Someone else may own the port: only our child's answer counts.
            if answer.status_code == 200 and answer.json().get("pid") == self._process.pid:
                return
            time.sleep(0.05)
        self.stop()
        raise SandboxStartError(
            f"sandbox did not answer {self.url}/sandbox/health within {self.startup_timeout:g}s:\n{self.log_tail()}"
        )

    def stop(self) -> int | None:
        """Stop the child by its PID: SIGTERM, then SIGKILL after the grace period. Returns its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(self.grace_period)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def restart(self) -> SandboxProcess:
        """Stop and start again on the same port; settings changed by :meth:`configure` are re-applied.

        Tasks and the journal survive only with a ``state_file``.
        """
        self.stop()
        return self.start()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        # A temporary log is only worth keeping when something went wrong.
        if self._owns_log and exc_type is None:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the child printed."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(method, f"{self.url}{path}", timeout=10.0, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def health(self) -> dict[str, Any]:
        """``GET /sandbox/health``."""
        result: dict[str, Any] = self._request("GET", "/sandbox/health")
        return result

    def config(self) -> dict[str, Any]:
        """The current scenario (``GET /sandbox/config``)."""
        result: dict[str, Any] = self._request("GET", "/sandbox/config")
        return result

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change runtime settings (``POST /sandbox/config``), e.g. ``configure(rate_429=0.5, seed=1)``."""
        unknown = sorted(set(settings) - RUNTIME_FIELDS)
        if unknown:
            raise TypeError(f"not runtime settings: {', '.join(unknown)}")
        result: dict[str, Any] = self._request("POST", "/sandbox/config", json=settings)
        self._overrides.update(settings)
        return result

    def reset_config(self) -> dict[str, Any]:
        """Back to the settings the process was started with (``DELETE /sandbox/config``)."""
        self._overrides.clear()
        result: dict[str, Any] = self._request("DELETE", "/sandbox/config")
        return result

    def journal(
        self, *, task_id: str | None = None, method: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Requests the sandbox saw (``GET /sandbox/journal``); ``kind`` is submit, poll or media."""
        params = {k: v for k, v in {"task_id": task_id, "method": method, "kind": kind}.items() if v}
        result: list[dict[str, Any]] = self._request("GET", "/sandbox/journal", params=params)
        return result

    def clear_journal(self) -> None:
        """``DELETE /sandbox/journal``."""
        self._request("DELETE", "/sandbox/journal")

    def tasks(self) -> list[dict[str, Any]]:
        """Every task with its timestamps and status (``GET /sandbox/tasks``)."""
        result: list[dict[str, Any]] = self._request("GET", "/sandbox/tasks")
        return result

    def peak_in_flight(self) -> int:
        """The most tasks that were generating at once, over every task so far."""
        return peak_in_flight(self.tasks())

    def airflow_connection(self, api_key: str = "sandbox-key", conn_type: str = "kling") -> str:
        """A JSON value for ``AIRFLOW_CONN_KLING_DEFAULT`` pointing at this sandbox."""
        return json.dumps({"conn_type": conn_type, "host": self.url, "password": api_key})
