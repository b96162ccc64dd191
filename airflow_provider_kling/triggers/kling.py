"""KlingTaskTrigger: waits for one Kling generation on the triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kling._compat import TRIGGER_ON_KILL_SUPPORTED
from airflow_provider_kling.exceptions import KlingError, KlingTimeoutError
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.hooks.retry import DEFAULT_MAX_ATTEMPTS
from airflow_provider_kling.models import TaskEvent, TaskResult, TaskStatus
from airflow_provider_kling.polling import describe_progress, next_poll_delay


class KlingTaskTrigger(BaseTrigger):
    """Poll the Task Result API until a generation ends; yield exactly one event.

    The event's ``status`` is ``success`` or ``failed`` (with the parsed Task Result and the vendor's
    reason), ``timeout`` (``end_time`` passed) or ``error`` (a permanent API error, the failure budget
    spent, or an undocumented status, which is never taken for success).

    Polling is natively async on one HTTP connection pool shared by every trigger of the connection in
    the triggerer process, rate-limited per connection, and eta-aware (see
    :mod:`airflow_provider_kling.polling`). Transient failures are retried with jittered exponential
    backoff, up to ``max_attempts`` consecutive failures per poll and never past ``end_time``.

    The trigger serialises primitives only. ``end_time`` is absolute (epoch seconds), so a trigger that
    a restarted triggerer rebuilds keeps its original deadline. Polling is read-only, so two copies of
    one trigger (triggerer HA) are harmless.

    :param kling_task_id: The vendor's task id.
    :param kling_conn_id: The ``kling`` connection.
    :param end_time: Absolute deadline, epoch seconds.
    :param poll_interval: Shortest wait between polls, seconds.
    :param max_poll_interval: Longest wait between polls while the vendor's eta is far off.
    :param max_attempts: Consecutive failed attempts tolerated for one poll.
    """

    def __init__(
        self,
        *,
        kling_task_id: str,
        end_time: float,
        kling_conn_id: str = KlingHook.default_conn_name,
        poll_interval: float = 10.0,
        max_poll_interval: float | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        super().__init__()
        self.kling_task_id = kling_task_id
        self.end_time = float(end_time)
        self.kling_conn_id = kling_conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = None if max_poll_interval is None else float(max_poll_interval)
        self.max_attempts = int(max_attempts)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs (no secrets: the key stays in the connection)."""
        kwargs: dict[str, Any] = {
            "kling_task_id": self.kling_task_id,
            "end_time": self.end_time,
            "kling_conn_id": self.kling_conn_id,
            "poll_interval": self.poll_interval,
            "max_poll_interval": self.max_poll_interval,
            "max_attempts": self.max_attempts,
        }
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            key: value for key, value in kwargs.items() if value is not None
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the generation ends or ``end_time`` passes; yield one event."""
        try:
            event = await self._wait()
        except asyncio.CancelledError:
            if not TRIGGER_ON_KILL_SUPPORTED:
                # Before Airflow 3.3 a killed task only cancels its trigger (on_kill is never called), and
                # a cancellation does not say why: say what it may mean for the bill, once, and go.
                self.log.info(
                    "Trigger for Kling task %s cancelled (the task was killed or timed out, or the trigger "
                    "moved to another triggerer). Kling has no cancel endpoint: the generation may keep "
                    "rendering (and is billed); KlingTaskSensor(kling_task_id=%r) can wait for it later.",
                    self.kling_task_id,
                    self.kling_task_id,
                )
            raise
        yield TriggerEvent(event.to_payload())

    async def _wait(self) -> TaskEvent:
        hook = KlingHook(self.kling_conn_id, max_attempts=self.max_attempts)
        while True:
            if time.time() >= self.end_time:
                return self._event("timeout", "the video was not ready before the operator's timeout")
            try:
                result = await hook.aget_task_result(self.kling_task_id, deadline=self.end_time)
            except KlingTimeoutError as err:
                return self._event("timeout", err.message)
            except KlingError as err:
                return self._error_event(err)
            self.log.info(describe_progress(self.kling_task_id, result.task))
            state = result.task.state
            if state is TaskStatus.SUCCEED:
                return self._event("success", "the video is ready", result)
            if state is TaskStatus.FAILED:
                reason = result.task.reason or "no reason given"
                return self._event("failed", f"the generation failed: {reason}", result)
            if state is TaskStatus.UNKNOWN:
                return self._event("error", f"undocumented task status {result.task.status!r}", result)
            delay = next_poll_delay(result.task, self.poll_interval, self.max_poll_interval)
            # Sleep holding the delay, not the parsed answer: thousands of sleeping triggers then keep a
            # third fewer objects alive for the garbage collector to scan (see docs/performance.md).
            del result
            await asyncio.sleep(max(0.0, min(delay, self.end_time - time.time())))

    def _event(self, status: str, message: str, result: TaskResult | None = None) -> TaskEvent:
        return TaskEvent.model_validate(
            {"status": status, "kling_task_id": self.kling_task_id, "message": message, "result": result}
        )

    def _error_event(self, error: KlingError) -> TaskEvent:
        return TaskEvent(
            status="error",
            kling_task_id=self.kling_task_id,
            message=error.message,
            error_type=type(error).__name__,
            http_status=error.http_status,
            reason=error.reason,
        )

    async def on_kill(self) -> None:
        """Called by Airflow 3.3+ when the deferred task is killed: the vendor has no cancel endpoint.

        Older versions never call it; :meth:`run` logs the cancellation instead.
        """
        self.log.warning(
            "The Airflow task was killed, but Kling has no cancel endpoint: task %s keeps rendering (and is "
            "billed). Wait for it later with KlingTaskSensor(kling_task_id=%r).",
            self.kling_task_id,
            self.kling_task_id,
        )
