"""The one event a :class:`~airflow_provider_kling.triggers.kling.KlingTaskTrigger` yields.

Both sides use this model: the trigger builds it, the operator or sensor validates what it receives, so a
malformed event fails loudly instead of passing for a success.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from airflow_provider_kling.models.results import TaskResult

EventStatus = Literal["success", "failed", "timeout", "error"]


class TaskEvent(BaseModel):
    """``success`` and ``failed`` carry the parsed Task Result; ``timeout`` and ``error`` a message.

    An ``error`` also names the provider exception class that caused it (``error_type``) with its HTTP
    status and vendor reason, so the operator re-raises the same kind of error the triggerer saw.
    """

    model_config = ConfigDict(extra="forbid")

    status: EventStatus
    kling_task_id: str
    message: str
    result: TaskResult | None = None
    error_type: str | None = None
    http_status: int | None = None
    reason: str | None = None

    def to_payload(self) -> dict[str, Any]:
        """The JSON-serialisable payload of the ``TriggerEvent`` (no raw response, no secrets)."""
        return self.model_dump(mode="json", exclude_none=True)
