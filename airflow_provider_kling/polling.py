"""How often to poll, and how a poll is reported: shared by the trigger and the synchronous wait.

The schedule is eta-aware: while the vendor says a video is far from done the poller backs off (up to
``max_poll_interval``), and near the end it polls every ``poll_interval``. A render of several minutes
then costs a handful of polls instead of one every few seconds, at no cost in detection latency.
"""

from __future__ import annotations

from airflow_provider_kling.models import TaskInfo

#: Poll after this fraction of the vendor's eta, so a slightly optimistic eta is not overshot.
ETA_FRACTION = 0.5
#: ``max_poll_interval`` when not given: this many times ``poll_interval``.
DEFAULT_BACKOFF_FACTOR = 6


def default_max_poll_interval(poll_interval: float) -> float:
    """The longest wait between polls when the caller did not choose one."""
    return poll_interval * DEFAULT_BACKOFF_FACTOR


def next_poll_delay(task: TaskInfo, poll_interval: float, max_poll_interval: float | None = None) -> float:
    """Seconds to wait before the next poll, given the last status.

    Example::

        next_poll_delay(TaskInfo(status="TASK_STATUS_PROCESSING", eta=120), 10, 60)  # 60.0
        next_poll_delay(TaskInfo(status="TASK_STATUS_PROCESSING", eta=8), 10, 60)    # 10.0
    """
    ceiling = max(poll_interval, max_poll_interval or default_max_poll_interval(poll_interval))
    if task.eta is None or task.eta <= 0:
        return poll_interval
    return min(ceiling, max(poll_interval, task.eta * ETA_FRACTION))


def describe_progress(kling_task_id: str, task: TaskInfo) -> str:
    """One log line for a poll: status, progress and eta (what a user watches in the task log)."""
    progress = "?" if task.progress_percent is None else f"{task.progress_percent}%"
    eta = "?" if task.eta is None else f"{task.eta}s"
    return f"Kling task {kling_task_id}: status={task.status or '?'} progress={progress} eta={eta}"
