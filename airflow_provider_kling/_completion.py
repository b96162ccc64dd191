"""Turning a final Task Result or a trigger event into a return value or a clear error.

Shared by the operators and the sensor so that a generation ends the same way on every path (sync,
deferrable, re-attached after a retry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from airflow_provider_kling.assets import emit_video_asset_events
from airflow_provider_kling.delivery import deliver_videos
from airflow_provider_kling.exceptions import (
    KlingAuthError,
    KlingError,
    KlingNotFoundError,
    KlingRequestError,
    KlingTimeoutError,
    KlingTransientError,
)
from airflow_provider_kling.links import XCOM_VIDEO_URL, XCOM_VIDEO_URL_EXPIRES_AT, video_link
from airflow_provider_kling.models import TaskEvent, TaskResult, TaskStatus
from airflow_provider_kling.polling import failure_of, has_video

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Error classes a trigger ``error`` event may name; anything else is re-raised as a plain KlingError.
_ERROR_TYPES: dict[str, type[KlingError]] = {
    cls.__name__: cls for cls in (KlingAuthError, KlingNotFoundError, KlingRequestError, KlingTransientError)
}

#: XCom key of the Kling task id, pushed as soon as a submit returns.
XCOM_KLING_TASK_ID = "kling_task_id"


def succeeded_result(result: TaskResult) -> TaskResult:
    """Return ``result`` if the generation succeeded with a video; raise the reason otherwise.

    A content-policy refusal raises :class:`KlingContentPolicyError`, which Airflow does not retry:
    a retry would pay for the same refusal (see :func:`~airflow_provider_kling.polling.failure_of`).
    """
    task = result.task
    state = task.state
    if state is TaskStatus.SUCCEED:
        if not has_video(result):
            raise KlingError(
                f"Kling task {task.task_id} succeeded but returned no video URL: nothing to deliver",
                kling_task_id=task.task_id,
            )
        return result
    if state is TaskStatus.FAILED:
        raise failure_of(result)
    raise KlingError(
        f"the generation is not finished or has an undocumented status {task.status!r}",
        kling_task_id=task.task_id,
    )


def event_result(event: dict[str, Any] | None, *, kling_task_id: str | None = None) -> TaskResult:
    """Check a :class:`~airflow_provider_kling.triggers.kling.KlingTaskTrigger` event strictly.

    Returns the succeeded Task Result; raises the failure, timeout or error the event reports.

    A malformed event, an event for another task, or a ``success`` without a succeeded result is an
    error, never a success.
    """
    try:
        parsed = TaskEvent.model_validate(event)
    except ValidationError as err:
        raise KlingError(f"malformed trigger event {str(event)[:200]!r}: {err.error_count()} problem(s)") from None
    if kling_task_id and parsed.kling_task_id != kling_task_id:
        raise KlingError(
            f"trigger event is for task {parsed.kling_task_id!r}, expected {kling_task_id!r}",
            kling_task_id=kling_task_id,
        )
    if parsed.status in ("success", "failed"):
        if parsed.result is None:
            raise KlingError(f"{parsed.status} event without a result", kling_task_id=parsed.kling_task_id)
        return succeeded_result(parsed.result)
    if parsed.status == "timeout":
        raise KlingTimeoutError(
            f"{parsed.message}; the Kling task keeps running. A retry of this task re-attaches to it "
            "(durable=True on Airflow 3.3+), or wait for it with KlingTaskSensor",
            kling_task_id=parsed.kling_task_id,
        )
    error_class = _ERROR_TYPES.get(parsed.error_type or "", KlingError)
    raise error_class(
        parsed.message, http_status=parsed.http_status, reason=parsed.reason, kling_task_id=parsed.kling_task_id
    )


def complete(
    context: Context,
    result: TaskResult,
    *,
    model: str | None,
    output_path: str | None,
    request: Mapping[str, Any] | None,
    refresh: Callable[[], TaskResult],
    outlets: Iterable[Any] = (),
    output_conn_id: str | None = None,
) -> dict[str, Any]:
    """Finish a generation: raise if it failed, else store the videos (when asked) and describe them.

    With ``output_path`` every video is copied to storage with a sidecar (see
    :mod:`airflow_provider_kling.delivery`), written with ``output_conn_id`` when given (else the
    connection named in ``output_path``, if any), the summary gains ``stored``, and the task's outlets get
    asset events. The ``kling_video_url`` XCom (read by the "Kling video" extra link) points at the
    stored copy's web address when it has one (an object store's console, an ``http(s)`` URL), else
    at the vendor's signed URL, with its expiry in ``kling_video_url_expires_at`` (see
    :mod:`airflow_provider_kling.links`).
    """
    result = succeeded_result(result)
    summary = result.summary(model=model)
    stored_uri: str | None = None
    if output_path:
        ti = context.get("ti")
        facts = {name: getattr(ti, name, None) for name in ("dag_id", "run_id", "task_id", "map_index", "try_number")}
        stored = deliver_videos(
            result,
            output_path,
            refresh=refresh,
            model=model,
            request=request,
            context_facts={"airflow": facts},
            conn_id=output_conn_id,
        )
        summary["stored"] = [video.model_dump(mode="json") for video in stored]
        emit_video_asset_events(context, outlets, stored)
        stored_uri = stored[0].uri
    link, expires_at = video_link(result.videos[0].video_url, result.videos[0].video_url_ttl, stored_uri)
    ti = context.get("ti")
    if ti is not None:
        ti.xcom_push(key=XCOM_VIDEO_URL, value=link)
        ti.xcom_push(key=XCOM_VIDEO_URL_EXPIRES_AT, value=expires_at)
    return summary
