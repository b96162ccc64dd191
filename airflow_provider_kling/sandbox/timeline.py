"""A task's status at a given moment, and the Task Result body the vendor would send for it.

Nothing runs in the background: status, progress and ETA are computed from the task's planned
timestamps and the clock on each call, so ten thousand tasks cost only their records.
"""

from __future__ import annotations

import math
from typing import Any

from airflow_provider_kling.models import TaskStatus
from airflow_provider_kling.sandbox.store import TaskRecord

_TASK_TYPES = {"t2v": "KLING_V3_T2V", "i2v": "KLING_V3_I2V", "motion-control": "KLING_V3_MOTION_CONTROL"}


def task_type(model: str) -> str:
    """The ``task.task_type`` reported for a model, e.g. ``KLING_V3_T2V`` for ``kling-v3.0-pro-t2v``."""
    for suffix, name in _TASK_TYPES.items():
        if model.endswith(suffix):
            return name
    return "KLING_V3"


def status_at(task: TaskRecord, now: float) -> tuple[TaskStatus, int, int]:
    """``(status, progress_percent, eta_seconds)`` of ``task`` at ``now``."""
    if now >= task.completes_at:
        return (TaskStatus.SUCCEED, 100, 0) if task.succeeds else (TaskStatus.FAILED, 0, 0)
    eta = max(1, math.ceil(task.completes_at - now))
    if now < task.started_at:
        return TaskStatus.QUEUED, 0, eta
    share = (now - task.started_at) / (task.completes_at - task.started_at)
    return TaskStatus.PROCESSING, min(99, max(1, int(share * 100))), eta


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def result_body(task: TaskRecord, now: float, video_url: str | None, ttl: int) -> dict[str, Any]:
    """The Task Result JSON for ``task`` at ``now``, with the vendor's string-typed quirks.

    ``video_url`` is only used once the task has succeeded; before that ``videos`` is empty.
    """
    status, progress, eta = status_at(task, now)
    terminal = status.is_terminal
    # A prompt refused by moderation never reaches a renderer: no execute time, no seed.
    executed = now >= task.started_at and (task.succeeds or task.started_at < task.completes_at)
    extra: dict[str, Any] = {}
    if not task.empty_extra:
        extra = {
            "seed": str(task.seed) if executed else "",
            "enable_nsfw_detection": False,
            "debug_info": {
                "request_info": "",
                "submit_time_ms": _ms(task.created_at),
                "execute_time_ms": _ms(task.started_at) if executed else "",
                "complete_time_ms": _ms(task.completes_at) if terminal else "",
            },
        }
    videos: list[dict[str, Any]] = []
    if status is TaskStatus.SUCCEED and video_url is not None:
        videos.append(
            {
                "video_url": video_url,
                "video_url_ttl": str(ttl),
                "video_type": "mp4",
                "nsfw_detection_result": None,
            }
        )
    return {
        "task": {
            "task_id": task.task_id,
            "task_type": task_type(task.model),
            "status": status.value,
            "reason": task.reason if terminal else "",
            "eta": eta,
            "progress_percent": progress,
        },
        "extra": extra,
        "videos": videos,
        "images": [],
        "audios": [],
    }
