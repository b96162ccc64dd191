"""KlingTaskSensor: wait for a generation submitted earlier (``wait_for_completion=False``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_kling._completion import complete, event_result
from airflow_provider_kling.delivery import check_conn_id, check_output_path, normalise_output_path
from airflow_provider_kling.exceptions import KlingError, KlingValidationError
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.lineage import KlingLineageMixin
from airflow_provider_kling.links import XCOM_VIDEO_URL, KlingVideoLink
from airflow_provider_kling.models import TaskResult, TaskStatus
from airflow_provider_kling.operators.kling import DEFER_TIMEOUT_MARGIN
from airflow_provider_kling.polling import describe_progress
from airflow_provider_kling.triggers.kling import KlingTaskTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class KlingTaskSensor(KlingLineageMixin, BaseSensorOperator):
    """Wait until a Kling generation finishes; return the same result dict as the operators.

    Deferrable by default: the wait runs on the triggerer. A failed generation fails the sensor with
    the vendor's reason (a content-policy refusal without retry). ``timeout`` is the sensor's usual
    timeout in seconds.

    :param kling_task_id: The Kling task id (templated), typically pulled from the submitting task.
    :param kling_conn_id: The ``kling`` connection (templated).
    :param deferrable: Wait on the triggerer (default) instead of poking from a worker.
    :param poll_interval: Seconds between polls (the sensor's ``poke_interval``).
    :param max_poll_interval: Longest wait between polls while the video is far from done.
    :param output_path: Copy the video here once ready, as the operators do (see docs/delivery.md).
    :param output_conn_id: The Airflow connection to write ``output_path`` with (templated), as the
        operators take it.

    Example::

        wait = KlingTaskSensor(
            task_id="wait_for_video",
            kling_task_id="{{ ti.xcom_pull(task_ids='submit', key='kling_task_id') }}",
        )
    """

    template_fields: Sequence[str] = ("kling_task_id", "kling_conn_id", "output_path", "output_conn_id")
    operator_extra_links = (KlingVideoLink(),)

    def __init__(
        self,
        *,
        kling_task_id: str,
        kling_conn_id: str = KlingHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        max_poll_interval: float | None = None,
        output_path: str | None = None,
        output_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if float(poll_interval) <= 0:
            raise KlingValidationError(f"poll_interval={poll_interval!r}: must be more than 0 seconds")
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.kling_task_id = kling_task_id
        self.kling_conn_id = kling_conn_id
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max_poll_interval
        self.output_path = output_path
        self.output_conn_id = output_conn_id
        if output_conn_id is not None and output_path is None:
            raise KlingValidationError("output_conn_id needs output_path: it is the connection to write the video with")
        if output_path is not None and not _templated(output_path):
            literal_conn_id = None if output_conn_id is None or _templated(output_conn_id) else output_conn_id
            check_conn_id(normalise_output_path(output_path), literal_conn_id)

    @cached_property
    def hook(self) -> KlingHook:
        """The hook for ``kling_conn_id``."""
        return KlingHook(self.kling_conn_id)

    def execute(self, context: Context) -> Any:
        """Check once; if the video is not ready, defer (or poke, when not deferrable)."""
        # An XCom pull that found nothing renders as "None".
        if str(self.kling_task_id or "").strip() in ("", "None"):
            raise KlingError("kling_task_id is empty: did the submitting task push it to XCom?")
        if self.output_path:
            self.output_path = check_output_path(self.output_path, self.output_conn_id)
        if not self.deferrable:
            return super().execute(context)
        done = self.poke(context)
        if isinstance(done, PokeReturnValue):
            return done.xcom_value
        timeout = float(self.timeout)
        context["ti"].xcom_push(key=XCOM_VIDEO_URL, value="")  # see KlingSubmitOperator.submit_job
        self.defer(
            trigger=KlingTaskTrigger(
                kling_task_id=self.kling_task_id,
                end_time=time.time() + timeout,
                kling_conn_id=self.kling_conn_id,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
            ),
            method_name="execute_complete",
            kwargs={"kling_task_id": self.kling_task_id},
            timeout=timedelta(seconds=timeout) + DEFER_TIMEOUT_MARGIN,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One poll: not done while queued or processing; the result (or the failure) once finished."""
        result = self.hook.get_task_result(self.kling_task_id)
        self.log.info(describe_progress(self.kling_task_id, result.task))
        if result.task.state.is_in_flight:
            return False
        if result.task.state is TaskStatus.UNKNOWN:
            raise KlingError(f"undocumented task status {result.task.status!r}", kling_task_id=self.kling_task_id)
        return PokeReturnValue(is_done=True, xcom_value=self._complete(context, result))

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, kling_task_id: str | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger fired: return the result (stored, if asked) or raise why it failed."""
        return self._complete(context, event_result(event, kling_task_id=kling_task_id))

    def _complete(self, context: Context, result: TaskResult) -> dict[str, Any]:
        kling_task_id = result.task.task_id
        return complete(
            context,
            result,
            model=None,
            output_path=self.output_path,
            output_conn_id=self.output_conn_id,
            request=None,
            refresh=lambda: self.hook.get_task_result(kling_task_id),
            outlets=self.outlets,
        )


def _templated(value: str) -> bool:
    """Whether ``value`` is a Jinja template, rendered only when the task runs."""
    return "{{" in value or "{%" in value
