"""Task Result and error bodies, parsed tolerantly.

The vendor sends numbers as strings (``"seed": "158881667"``, ``"video_url_ttl": "3600"``), empty strings
for unknown times, ``extra: {}`` and extra keys on video items. All of that parses; unknown keys are kept
(``extra="allow"``) so nothing the vendor adds is lost. What is *not* tolerated is an unknown task status:
it parses, but :attr:`TaskInfo.state` says ``UNKNOWN`` and callers treat it as an error, never a success.
"""

from __future__ import annotations

import enum
import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _loose_int(value: Any) -> int | None:
    """``"42"``, ``"42.0"`` and ``42.7`` read as 42; ``""`` and anything unreadable as ``None``.

    These fields are informational (eta, progress, seed, timings): a quirk in one must never make a
    poll of a finished video fail.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


#: An integer the vendor may send as a string, or as ``""`` meaning "not known yet".
LooseInt = Annotated[int | None, BeforeValidator(_loose_int)]


class TaskStatus(str, enum.Enum):
    """The vendor's task states, plus ``UNKNOWN`` for anything undocumented."""

    QUEUED = "TASK_STATUS_QUEUED"
    PROCESSING = "TASK_STATUS_PROCESSING"
    SUCCEED = "TASK_STATUS_SUCCEED"
    FAILED = "TASK_STATUS_FAILED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, raw: str) -> TaskStatus:
        """Map a raw status string to a member; undocumented values map to ``UNKNOWN``."""
        try:
            return cls(raw)
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_in_flight(self) -> bool:
        """Queued or processing: the video is still being made."""
        return self in (TaskStatus.QUEUED, TaskStatus.PROCESSING)

    @property
    def is_terminal(self) -> bool:
        """Succeeded or failed: polling can stop."""
        return self in (TaskStatus.SUCCEED, TaskStatus.FAILED)


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # ``"extra": null`` or ``"videos": null`` means "nothing": use the field's default. Unknown keys
        # are kept as sent, and a required field sent as null is still reported missing.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None or key not in cls.model_fields}
        return data


class TaskInfo(_Tolerant):
    """The ``task`` object of a Task Result."""

    task_id: str = ""
    task_type: str | None = None
    status: str = ""
    reason: str | None = None
    eta: LooseInt = None
    progress_percent: LooseInt = None

    @property
    def state(self) -> TaskStatus:
        """The status as a :class:`TaskStatus` (``UNKNOWN`` for anything undocumented)."""
        return TaskStatus.parse(self.status)


class DebugInfo(_Tolerant):
    """Vendor timings, epoch milliseconds (sent as strings, possibly empty)."""

    request_info: str | None = None
    submit_time_ms: LooseInt = None
    execute_time_ms: LooseInt = None
    complete_time_ms: LooseInt = None


class ResultExtra(_Tolerant):
    """The ``extra`` object of a Task Result; may be empty."""

    seed: LooseInt = None
    enable_nsfw_detection: bool | None = None
    debug_info: DebugInfo = Field(default_factory=DebugInfo)


class Video(_Tolerant):
    """One generated video: a pre-signed URL that expires after ``video_url_ttl`` seconds."""

    video_url: str
    video_url_ttl: LooseInt = None
    video_type: str | None = None


class TaskResult(_Tolerant):
    """A Task Result answer (``GET /v3/async/task-result``).

    Example::

        result = hook.get_task_result(kling_task_id)
        if result.task.state is TaskStatus.SUCCEED:
            print(result.videos[0].video_url)
    """

    task: TaskInfo
    extra: ResultExtra = Field(default_factory=ResultExtra)
    videos: list[Video] = Field(default_factory=list)
    images: list[Any] = Field(default_factory=list)
    audios: list[Any] = Field(default_factory=list)

    def summary(self, *, model: str | None = None) -> dict[str, Any]:
        """The small JSON-serialisable dict an operator returns (and pushes to XCom).

        Holds ``kling_task_id``, ``model``, ``status``, ``reason``, ``videos`` (url, ttl, type),
        ``seed`` and the vendor timings; never a raw response.
        """
        timings = self.extra.debug_info
        return {
            "kling_task_id": self.task.task_id,
            "model": model,
            "status": self.task.status,
            "reason": self.task.reason or None,
            "videos": [
                {"url": video.video_url, "ttl": video.video_url_ttl, "type": video.video_type} for video in self.videos
            ],
            "seed": self.extra.seed,
            "submit_time_ms": timings.submit_time_ms,
            "execute_time_ms": timings.execute_time_ms,
            "complete_time_ms": timings.complete_time_ms,
        }


class SubmitResponse(_Tolerant):
    """The answer to a submit: the Kling task id."""

    task_id: Annotated[str, Field(min_length=1)]


class ApiError(_Tolerant):
    """A vendor error body, ``{code, reason, message, metadata}``.

    Also accepts the ``{"error": {"message", "code"}}`` form some Novita endpoints use; see
    :meth:`from_body`.
    """

    code: int | str | None = None
    reason: str | None = None
    message: str | None = None
    metadata: dict[str, Any] | None = None

    @classmethod
    def from_body(cls, body: Any) -> ApiError | None:
        """Parse a decoded JSON body in either of the vendor's two shapes; ``None`` if neither."""
        if not isinstance(body, dict):
            return None
        nested = body.get("error")
        if isinstance(nested, dict):
            body = {
                "code": nested.get("code"),
                "reason": nested.get("reason") or nested.get("type"),
                "message": nested.get("message"),
            }
        elif isinstance(nested, str) and "message" not in body:
            body = {**body, "message": nested}
        if not any(body.get(key) for key in ("reason", "message")):
            return None
        return cls.model_validate(body)
