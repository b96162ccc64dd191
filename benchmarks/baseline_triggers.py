"""The baseline triggers the benchmarks measure ``KlingTaskTrigger`` against: the usual provider patterns.

They live here, not in the package: they exist only to be measured. Both poll the same Task Result
endpoint with the same schedule (:func:`~airflow_provider_kling.polling.next_poll_delay`), parse the same
model, log the same line per poll and yield one event, so what differs is the HTTP plumbing alone:

* :class:`ToThreadTaskTrigger`: a blocking ``httpx.Client`` call per poll in ``asyncio.to_thread``, the
  pattern of most providers. It gets the kindest form of that pattern: one client shared by every
  trigger of the process (a hook per trigger would add a client per trigger on top).
* :class:`ClientPerPollTaskTrigger`: the other common pattern, a new ``httpx.AsyncClient`` per poll.

The connection is read once per process from ``AIRFLOW_CONN_<ID>`` (JSON, as the benchmarks export it),
kinder to the baselines than a lookup per trigger. A real triggerer imports them by class path when the
repository root is on its ``PYTHONPATH`` (``benchmarks.baseline_triggers.ToThreadTaskTrigger``), and an
in-process benchmark imports them after its Airflow environment is set up (this module imports Airflow).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kling.models import TaskResult, TaskStatus
from airflow_provider_kling.polling import describe_progress, next_poll_delay

TASK_RESULT_PATH = "/v3/async/task-result"

_settings: dict[str, dict[str, Any]] = {}
_sync_clients: dict[str, httpx.Client] = {}
_lock = threading.Lock()


def _connection(conn_id: str) -> dict[str, Any]:
    """Base URL and headers of ``conn_id``, read once per process from its environment variable."""
    with _lock:
        if conn_id not in _settings:
            fields = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
            host = str(fields["host"])
            if fields.get("port") and host.count(":") < 2:
                host = f"{host}:{fields['port']}"
            _settings[conn_id] = {
                "base_url": host,
                "headers": {"Authorization": f"Bearer {fields['password']}", "Content-Type": "application/json"},
            }
        return _settings[conn_id]


def _shared_sync_client(conn_id: str) -> httpx.Client:
    """One blocking client per connection and process, shared by every trigger (and thread)."""
    conn = _connection(conn_id)
    with _lock:
        if conn_id not in _sync_clients:
            _sync_clients[conn_id] = httpx.Client(base_url=conn["base_url"], headers=conn["headers"], timeout=30)
        return _sync_clients[conn_id]


class _BaselineTrigger(BaseTrigger):
    """Same arguments, schedule, parsing, logging and single event as ``KlingTaskTrigger``.

    Accepts (and ignores) ``max_attempts`` and the not-found grace and progress-log settings, so it can
    be built from ``KlingTaskTrigger``'s kwargs: a baseline polls a task that exists and logs every poll.
    """

    def __init__(
        self,
        *,
        kling_task_id: str,
        end_time: float,
        poll_interval: float,
        kling_conn_id: str = "kling_default",
        max_poll_interval: float | None = None,
        max_attempts: int | None = None,
        submitted_at: float | None = None,
        not_found_grace: float | None = None,
        progress_log_interval: float | None = None,
    ) -> None:
        super().__init__()
        self.kling_task_id = kling_task_id
        self.end_time = float(end_time)
        self.poll_interval = float(poll_interval)
        self.kling_conn_id = kling_conn_id
        self.max_poll_interval = None if max_poll_interval is None else float(max_poll_interval)
        self.max_attempts = max_attempts

    #: What :meth:`serialize` keeps (the ignored kwargs are not among them).
    _SERIALIZED = ("kling_task_id", "end_time", "poll_interval", "kling_conn_id", "max_poll_interval")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs (``max_poll_interval`` only when set)."""
        kwargs = {name: getattr(self, name) for name in self._SERIALIZED}
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            name: value for name, value in kwargs.items() if value is not None
        }

    async def fetch(self) -> httpx.Response:
        """One Task Result request (the part each baseline does its own way)."""
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the generation ends or ``end_time`` passes; yield one event."""
        while True:
            if time.time() >= self.end_time:
                yield TriggerEvent({"status": "timeout", "kling_task_id": self.kling_task_id})
                return
            try:
                response = await self.fetch()
                response.raise_for_status()
            except httpx.HTTPError as err:
                yield TriggerEvent({"status": "error", "kling_task_id": self.kling_task_id, "message": str(err)})
                return
            result = TaskResult.model_validate(response.json())
            self.log.info(describe_progress(self.kling_task_id, result.task))
            state = result.task.state
            if state in (TaskStatus.SUCCEED, TaskStatus.FAILED):
                status = "success" if state is TaskStatus.SUCCEED else "failed"
                payload = {"status": status, "kling_task_id": self.kling_task_id}
                yield TriggerEvent(payload | {"result": result.model_dump(mode="json")})
                return
            delay = next_poll_delay(result.task, self.poll_interval, self.max_poll_interval)
            await asyncio.sleep(max(0.0, min(delay, self.end_time - time.time())))


class ToThreadTaskTrigger(_BaselineTrigger):
    """A blocking ``httpx.Client`` call per poll, run in ``asyncio.to_thread`` (the default pool)."""

    async def fetch(self) -> httpx.Response:
        """``client.get`` in a thread of asyncio's default pool."""
        client = _shared_sync_client(self.kling_conn_id)
        return await asyncio.to_thread(client.get, TASK_RESULT_PATH, params={"task_id": self.kling_task_id})


class ClientPerPollTaskTrigger(_BaselineTrigger):
    """A new ``httpx.AsyncClient`` (new connection pool, new TLS context) for every poll."""

    async def fetch(self) -> httpx.Response:
        """A fresh client for one request."""
        conn = _connection(self.kling_conn_id)
        async with httpx.AsyncClient(base_url=conn["base_url"], headers=conn["headers"], timeout=30) as client:
            return await client.get(TASK_RESULT_PATH, params={"task_id": self.kling_task_id})


#: The benchmarks' names for the baselines.
BASELINES: dict[str, type[_BaselineTrigger]] = {
    "to-thread": ToThreadTaskTrigger,
    "client-per-poll": ClientPerPollTaskTrigger,
}
