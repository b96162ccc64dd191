"""Turning a final Task Result or a trigger event into a return value or a clear error.

Shared by the operators and the sensor so that a generation ends the same way on every path (sync,
deferrable, re-attached after a retry).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from airflow_provider_kling.exceptions import (
    KlingContentPolicyError,
    KlingError,
    KlingTaskFailedError,
    KlingTimeoutError,
    is_content_policy_reason,
)
from airflow_provider_kling.models import TaskEvent, TaskResult, TaskStatus

#: XCom key of the Kling task id, pushed as soon as a submit returns.
XCOM_KLING_TASK_ID = "kling_task_id"


def result_or_raise(result: TaskResult, *, model: str | None = None) -> dict[str, Any]:
    """Return the result summary of a succeeded generation; raise for anything else.

    A content-policy refusal raises :class:`KlingContentPolicyError`, which Airflow does not retry:
    a retry would pay for the same refusal.
    """
    task = result.task
    state = task.state
    if state is TaskStatus.SUCCEED:
        if not result.videos:
            raise KlingError("the generation succeeded but returned no video", kling_task_id=task.task_id)
        return result.summary(model=model)
    if state is TaskStatus.FAILED:
        reason = task.reason or "no reason given by the vendor"
        if is_content_policy_reason(reason):
            raise KlingContentPolicyError(
                f"Kling refused the content: {reason}. Not retried: change the prompt or image",
                reason=reason,
                kling_task_id=task.task_id,
            )
        raise KlingTaskFailedError(
            f"Kling generation failed: {reason}", reason=reason, kling_task_id=task.task_id
        )
    raise KlingError(
        f"the generation is not finished or has an undocumented status {task.status!r}",
        kling_task_id=task.task_id,
    )


def result_from_event(
    event: dict[str, Any] | None, *, model: str | None = None, kling_task_id: str | None = None
) -> dict[str, Any]:
    """Check a :class:`~airflow_provider_kling.triggers.kling.KlingTaskTrigger` event strictly and finish.

    A malformed event, an event for another task, or a ``success`` without a succeeded result is an
    error, never a success.
    """
    try:
        parsed = TaskEvent.model_validate(event)
    except ValidationError as err:
        raise KlingError(
            f"malformed trigger event {str(event)[:200]!r}: {err.error_count()} problem(s)"
        ) from None
    if kling_task_id and parsed.kling_task_id != kling_task_id:
        raise KlingError(
            f"trigger event is for task {parsed.kling_task_id!r}, expected {kling_task_id!r}",
            kling_task_id=kling_task_id,
        )
    if parsed.status in ("success", "failed"):
        if parsed.result is None:
            raise KlingError(f"{parsed.status} event without a result", kling_task_id=parsed.kling_task_id)
        return result_or_raise(parsed.result, model=model)
    if parsed.status == "timeout":
        raise KlingTimeoutError(
            f"{parsed.message}; the Kling task keeps running. A retry of this task re-attaches to it "
            "(durable=True on Airflow 3.3+), or wait for it with KlingTaskSensor",
            kling_task_id=parsed.kling_task_id,
        )
    raise KlingError(parsed.message, kling_task_id=parsed.kling_task_id)
