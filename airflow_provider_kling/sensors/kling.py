"""KlingTaskSensor: wait for a generation submitted earlier (``wait_for_completion=False``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_kling import clock
from airflow_provider_kling._completion import complete, event_result
from airflow_provider_kling._task_support import check_output_target, defer_to_trigger, resolve_deferrable
from airflow_provider_kling.delivery import check_output_path
from airflow_provider_kling.exceptions import KlingError, KlingTimeoutError, KlingValidationError
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.lineage import KlingLineageMixin
from airflow_provider_kling.links import XCOM_VIDEO_URL, KlingVideoLink
from airflow_provider_kling.models import TaskResult
from airflow_provider_kling.polling import (
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_PROGRESS_LOG_INTERVAL,
    Outcome,
    PollReader,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class KlingTaskSensor(KlingLineageMixin, BaseSensorOperator):
    """Wait until a Kling generation finishes; return the same result dict as the operators.

    Deferrable by default (or as an administrator's explicit ``[operators] default_deferrable`` says):
    the wait runs on the triggerer. A failed generation fails the sensor with the vendor's reason (a
    content-policy refusal without retry). ``timeout`` is the sensor's usual timeout in seconds, never
    past what is left of ``execution_timeout`` once deferred.

    Each poll is read as the operators' are (:class:`~airflow_provider_kling.polling.PollReader`). The
    age of the id is unknown here, so the not-found grace window counts from the sensor's first poll.

    :param kling_task_id: The Kling task id (templated), typically pulled from the submitting task.
    :param kling_conn_id: The ``kling`` connection (templated).
    :param deferrable: Wait on the triggerer instead of poking from a worker (default: ``[operators]
        default_deferrable`` when an administrator set it, else ``True``).
    :param poll_interval: Seconds between polls (the sensor's ``poke_interval``).
    :param max_poll_interval: Longest wait between polls while the video is far from done.
    :param output_path: Copy the video here once ready, as the operators do (see docs/delivery.md).
    :param output_conn_id: The Airflow connection to write ``output_path`` with (templated), as the
        operators take it.
    :param not_found_grace: Seconds from the first poll during which ``404 TASK_NOT_FOUND`` is retried.
    :param progress_log_interval: Log progress at least this often while nothing changes, seconds.

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
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        max_poll_interval: float | None = None,
        output_path: str | None = None,
        output_conn_id: str | None = None,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        progress_log_interval: float = DEFAULT_PROGRESS_LOG_INTERVAL,
        **kwargs: Any,
    ) -> None:
        if float(poll_interval) <= 0:
            raise KlingValidationError(f"poll_interval={poll_interval!r}: must be more than 0 seconds")
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.kling_task_id = kling_task_id
        self.kling_conn_id = kling_conn_id
        self.deferrable = resolve_deferrable(deferrable)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max_poll_interval
        self.output_path = output_path
        self.output_conn_id = output_conn_id
        self.not_found_grace = float(not_found_grace)
        self.progress_log_interval = float(progress_log_interval)
        check_output_target(output_path, output_conn_id)
        self._reader: PollReader | None = None

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
        context["ti"].xcom_push(key=XCOM_VIDEO_URL, value="")  # see KlingSubmitOperator.submit_job
        defer_to_trigger(
            self,
            context,
            kling_task_id=self.kling_task_id,
            kling_conn_id=self.kling_conn_id,
            timeout_seconds=float(self.timeout),
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            # The grace window goes on from this sensor's first poll, not from the deferral.
            submitted_at=self._poll_reader(context).window_start,
            not_found_grace=self.not_found_grace,
            progress_log_interval=self.progress_log_interval,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One poll: not done while queued or processing; the result (or the failure) once finished."""
        reader = self._poll_reader(context)
        try:
            result = self.hook.get_task_result(self.kling_task_id)
        except KlingTimeoutError:
            raise
        except KlingError as err:
            step = reader.read_error(err)
        else:
            step = reader.read(result)
        if step.info:
            self.log.info(step.info)
        if step.warning:
            self.log.warning(step.warning)
        if step.reconnect:
            self.hook.close()
            self.__dict__.pop("hook", None)  # a rotated key: the next poke reads the connection again
        if step.outcome is Outcome.WAIT:
            return False
        if step.outcome is Outcome.DONE:
            assert step.result is not None
            return PokeReturnValue(is_done=True, xcom_value=self._complete(context, step.result))
        assert step.error is not None
        raise step.error

    def _poll_reader(self, context: Context) -> PollReader:
        """This try's reader; in reschedule mode each poke is a new instance, so the grace window counts
        from the try's start rather than from each poke."""
        if self._reader is None:
            started = getattr(context.get("ti"), "start_date", None)
            self._reader = PollReader(
                self.kling_task_id,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                submitted_at=started.timestamp() if started is not None else clock.now(),
                not_found_grace=self.not_found_grace,
                progress_log_interval=self.progress_log_interval,
                counted_from="the sensor started",
            )
        return self._reader

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
