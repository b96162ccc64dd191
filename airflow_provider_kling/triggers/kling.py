"""KlingTaskTrigger: waits for one Kling generation on the triggerer, holding no worker slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kling import clock
from airflow_provider_kling._compat import TRIGGER_ON_KILL_SUPPORTED
from airflow_provider_kling.exceptions import KlingError, KlingTimeoutError
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.hooks.retry import DEFAULT_MAX_ATTEMPTS
from airflow_provider_kling.models import TaskEvent, TaskResult
from airflow_provider_kling.polling import (
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_PROGRESS_LOG_INTERVAL,
    Outcome,
    PollReader,
    Step,
    aligned_delay,
)


class KlingTaskTrigger(BaseTrigger):
    """Poll the Task Result API until a generation ends; yield exactly one event.

    The event's ``status`` is ``success`` or ``failed`` (with the parsed Task Result and the vendor's
    reason), ``timeout`` (``end_time`` passed) or ``error`` (a permanent API error, the failure budget
    spent, an undocumented status or a success without a video, never taken for success). What each
    poll means is decided by :class:`~airflow_provider_kling.polling.PollReader`, as in the sync wait
    and the sensor: a ``404 TASK_NOT_FOUND`` within ``not_found_grace`` of ``submitted_at`` is retried.

    Polling is natively async on one HTTP connection pool shared by every trigger of the connection in
    the triggerer process, rate-limited per connection, and eta-aware (see
    :mod:`airflow_provider_kling.polling`). Transient failures are retried with jittered exponential
    backoff, up to ``max_attempts`` consecutive failures per poll and never past ``end_time``.

    The trigger serialises primitives only. ``end_time`` and ``submitted_at`` are absolute (epoch
    seconds), so a trigger that a restarted triggerer rebuilds keeps its deadline and its grace window.
    Polling is read-only, so two copies of one trigger (triggerer HA) are harmless.

    :param kling_task_id: The vendor's task id.
    :param kling_conn_id: The ``kling`` connection.
    :param end_time: Absolute deadline, epoch seconds.
    :param poll_interval: Shortest wait between polls, seconds (to within 50 ms: waits end on a tenth of a
        second, so one wake-up of the event loop serves many triggers; see
        :func:`~airflow_provider_kling.polling.aligned_delay`).
    :param max_poll_interval: Longest wait between polls while the vendor's eta is far off.
    :param max_attempts: Consecutive failed attempts tolerated for one poll.
    :param submitted_at: When the Kling task was submitted, epoch seconds (``None``: unknown, the grace
        window then counts from the first poll).
    :param not_found_grace: Seconds after ``submitted_at`` during which ``TASK_NOT_FOUND`` is retried.
    :param progress_log_interval: Log progress at least this often while nothing changes, seconds.
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
        submitted_at: float | None = None,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        progress_log_interval: float = DEFAULT_PROGRESS_LOG_INTERVAL,
    ) -> None:
        super().__init__()
        self.kling_task_id = kling_task_id
        self.end_time = float(end_time)
        self.kling_conn_id = kling_conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = None if max_poll_interval is None else float(max_poll_interval)
        self.max_attempts = int(max_attempts)
        self.submitted_at = None if submitted_at is None else float(submitted_at)
        self.not_found_grace = float(not_found_grace)
        self.progress_log_interval = float(progress_log_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs (no secrets: the key stays in the connection)."""
        kwargs: dict[str, Any] = {
            "kling_task_id": self.kling_task_id,
            "end_time": self.end_time,
            "kling_conn_id": self.kling_conn_id,
            "poll_interval": self.poll_interval,
            "max_poll_interval": self.max_poll_interval,
            "max_attempts": self.max_attempts,
            "submitted_at": self.submitted_at,
            "not_found_grace": self.not_found_grace,
            "progress_log_interval": self.progress_log_interval,
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
        reader = PollReader(
            self.kling_task_id,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            submitted_at=self.submitted_at,
            not_found_grace=self.not_found_grace,
            progress_log_interval=self.progress_log_interval,
        )
        while True:
            if clock.now() >= self.end_time:
                return self._event("timeout", "the video was not ready before the operator's timeout")
            try:
                result = await hook.aget_task_result(self.kling_task_id, deadline=self.end_time)
            except KlingTimeoutError as err:
                return self._event("timeout", err.message)
            except KlingError as err:
                step = reader.read_error(err)
            else:
                step = reader.read(result)
                # Sleep holding the delay, not the parsed answer: thousands of sleeping triggers then keep
                # a third fewer objects alive for the garbage collector to scan (see docs/performance.md).
                del result
            if step.info:
                self.log.info(step.info)
            if step.warning:
                self.log.warning(step.warning)
            if step.outcome is not Outcome.WAIT:
                return self._final_event(step)
            now = clock.now()
            await clock.asleep(aligned_delay(now, min(step.delay, self.end_time - now)))

    def _final_event(self, step: Step) -> TaskEvent:
        if step.outcome is Outcome.DONE:
            return self._event("success", "the video is ready", step.result)
        if step.outcome in (Outcome.FAILED, Outcome.REFUSED):
            reason = step.result.task.reason if step.result is not None else None
            return self._event("failed", f"the generation failed: {reason or 'no reason given'}", step.result)
        assert step.error is not None
        if step.error.http_status is None and step.result is not None:
            # An answer that is not a result we can act on (undocumented status, no video): keep it.
            return self._event("error", step.error.message, step.result)
        return self._error_event(step.error)

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
