"""Operators that submit a Kling v3.0 generation and (by default) wait for it on the triggerer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pendulum
from airflow.providers.common.compat.sdk import BaseOperator, ResumableJobMixin

from airflow_provider_kling import clock
from airflow_provider_kling._compat import AIRFLOW_VERSION, DURABLE_EXECUTION_SUPPORTED
from airflow_provider_kling._completion import XCOM_KLING_TASK_ID, complete, event_result
from airflow_provider_kling._request_rules import prepare_request
from airflow_provider_kling._task_support import (
    WaitOptions,
    check_output_target,
    defer_to_trigger,
    is_unresolved,
    resolve_deferrable,
)
from airflow_provider_kling.delivery import check_output_path
from airflow_provider_kling.exceptions import KlingError, KlingNotFoundError, KlingValidationError
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.lineage import KlingLineageMixin
from airflow_provider_kling.links import XCOM_VIDEO_URL, KlingVideoLink
from airflow_provider_kling.models import (
    REQUEST_MODELS,
    ImageToVideoRequest,
    KlingRequest,
    MotionControlRequest,
    ProTextToVideoRequest,
    TaskResult,
    TaskStatus,
    TextToVideoRequest,
)
from airflow_provider_kling.models.images import encode_local_image, is_local_image
from airflow_provider_kling.models.requests import check_resolved_fields
from airflow_provider_kling.polling import (
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_PROGRESS_LOG_INTERVAL,
    format_epoch,
    is_task_not_found,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Status reported by ``wait_for_completion=False`` (the vendor has not been asked yet).
SUBMITTED = "SUBMITTED"
#: Task state store key of the submitted request's fingerprint: a retry re-attaches only to a
#: generation of the same request (clearing a task after editing its prompt submits the new prompt).
STATE_REQUEST_FINGERPRINT = "kling_request_sha256"
#: Pseudo-status of a stored generation whose request differs from the current one.
REQUEST_CHANGED = "REQUEST_CHANGED"
#: Task state store key of the submission: ``{"kling_task_id": ..., "submitted_at": ISO 8601 UTC}``, so a
#: retry that re-attaches keeps the not-found grace window of the original submit.
STATE_SUBMISSION = "kling_submission"
#: Pseudo-status of a stored generation the vendor does not show yet, within the grace window: re-attach.
NOT_VISIBLE_YET = "NOT_VISIBLE_YET"
_IMAGE_FIELDS = ("image", "end_image")
#: Longest map index label (``map_index_label``), in characters: about what the grid shows unclipped.
MAP_INDEX_LABEL_LENGTH = 40
#: The ``map_index_template`` of a mapped generation unless the DAG gives its own: the short prompt.
#: Airflow renders it with the task's context once the templates are rendered, and again when the
#: task ends; an unmapped task keeps no label (it has no map index to name).
DEFAULT_MAP_INDEX_TEMPLATE = "{{ task.map_index_label if ti.map_index is not none and ti.map_index >= 0 else '' }}"


class KlingSubmitOperator(KlingLineageMixin, ResumableJobMixin, BaseOperator):
    """Submit one Kling generation, push its ``kling_task_id`` to XCom at once, then wait for the video.

    The typed operators below are what most DAGs use; this base also takes any model with a raw
    ``payload``, including one released after this provider (sent as given, unvalidated).

    **Waiting.** With ``deferrable=True`` (the default) the task defers to
    :class:`~airflow_provider_kling.triggers.kling.KlingTaskTrigger` and frees its worker slot while the
    video renders; with ``deferrable=False`` it polls from the worker. Left unset, ``deferrable``
    follows an administrator's explicit ``[operators] default_deferrable`` (a deployment without a
    triggerer sets it to false), and is ``True`` otherwise: Airflow's shipped ``false`` does not count.
    ``execution_timeout`` bounds the whole task, deferral included. ``wait_for_completion=False``
    returns right after the submit (wait later with
    :class:`~airflow_provider_kling.sensors.kling.KlingTaskSensor`).

    **No double billing.** With ``durable=True`` (default; Airflow 3.3+) the Kling task id is saved in
    the task state store right after the submit. A later try of the same task instance (worker crash,
    timeout, triggerer failure) re-attaches to that generation if it is queued, processing or succeeded,
    and submits again only if it failed.

    **Return value** (and XCom ``return_value``): ``kling_task_id``, ``model``, ``status``, ``reason``,
    ``videos`` (``url``, ``ttl``, ``type``), ``seed`` and the vendor timings.

    :param model: Kling endpoint, e.g. ``kling-v3.0-pro-t2v`` (templated).
    :param payload: Request body (templated). Validated for known models.
    :param kling_conn_id: The ``kling`` connection (templated).
    :param deferrable: Wait on the triggerer instead of the worker (default: ``[operators]
        default_deferrable`` when an administrator set it, else ``True``).
    :param wait_for_completion: Wait for the video (default) or return after the submit.
    :param poll_interval: Shortest wait between two polls, seconds.
    :param max_poll_interval: Longest wait between polls while the video is far from done (default
        six times ``poll_interval``).
    :param timeout: How long to wait for the video (``timedelta`` or seconds; default one hour), never
        past what is left of ``execution_timeout``. The Kling task keeps running after a timeout; a retry
        re-attaches to it.
    :param not_found_grace: How long after the submit a ``404 TASK_NOT_FOUND`` means "not visible yet"
        and is retried (``timedelta`` or seconds; default two minutes), see docs/reliability.md.
    :param progress_log_interval: Log status and progress when they change, and at least this often
        (seconds; default five minutes) while they do not.
    :param durable: Re-attach on retries instead of paying again (Airflow 3.3+; older versions log one
        warning per try and submit anew, see docs/compatibility.md).
    :param output_path: Copy the video here once it is ready (templated ``ObjectStoragePath`` URI such as
        ``file:///data/{{ ds }}/{{ ti.map_index }}.mp4`` or ``s3://bucket/videos/``; a trailing ``/``
        names a folder). A JSON sidecar is written beside it, the return value gains ``stored``, and
        the task's ``outlets`` get asset events. See docs/delivery.md.
    :param output_conn_id: The Airflow connection to write ``output_path`` with (templated), e.g. an
        ``aws`` connection for ``s3://``. Default: the one named in the URI (``s3://my_conn@bucket/...``),
        else the storage's default credentials.
    :param map_index_template: What a mapped generation is called in the grid instead of its map index
        (Airflow's own parameter). Default: the start of its prompt (:attr:`map_index_label`); give
        your own template (e.g. ``"{{ task.aspect_ratio }} {{ task.prompt | truncate(30) }}"``), or
        ``""`` to keep the numbers.

    Example::

        KlingSubmitOperator(
            task_id="future_model",
            model="kling-v3.1-std-t2v",
            payload={"prompt": "{{ params.prompt }}", "duration": 5},
        )
    """

    template_fields: Sequence[str] = ("model", "payload", "kling_conn_id", "output_path", "output_conn_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"payload": "json"}
    operator_extra_links = (KlingVideoLink(),)
    ui_color = "#e8f0fe"
    external_id_key = XCOM_KLING_TASK_ID

    #: The request bodies a typed subclass sends; they give its ``request_fields``, ``allowed_models``
    #: and template fields (see ``__init_subclass__``).
    request_models: ClassVar[tuple[type[KlingRequest], ...]] = ()
    #: Request fields the typed subclasses take as keyword arguments.
    request_fields: ClassVar[tuple[str, ...]] = ()
    #: Endpoints a typed subclass accepts (empty: any).
    allowed_models: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Derive a typed subclass's fields, endpoints and template fields from its ``request_models``.

        The pydantic models say what each endpoint takes, so the operator's keyword arguments cannot
        drift from them. A subclass that names no request models of its own keeps what it inherits.
        """
        super().__init_subclass__(**kwargs)
        if "request_models" not in cls.__dict__:
            return
        cls.request_fields = tuple(dict.fromkeys(name for model in cls.request_models for name in model.model_fields))
        cls.allowed_models = tuple(endpoint for model in cls.request_models for endpoint in model.endpoints)
        if "template_fields" not in cls.__dict__:
            cls.template_fields = (*KlingSubmitOperator.template_fields, *cls.request_fields)

    def __init__(
        self,
        *,
        model: str,
        payload: Mapping[str, Any] | None = None,
        kling_conn_id: str = KlingHook.default_conn_name,
        deferrable: bool | None = None,
        wait_for_completion: bool = True,
        poll_interval: float = 10.0,
        max_poll_interval: float | None = None,
        timeout: timedelta | float = timedelta(hours=1),
        durable: bool = True,
        output_path: str | None = None,
        output_conn_id: str | None = None,
        not_found_grace: timedelta | float = timedelta(seconds=DEFAULT_NOT_FOUND_GRACE),
        progress_log_interval: float = DEFAULT_PROGRESS_LOG_INTERVAL,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("map_index_template") is None:
            # None, not absent: `.partial()` passes Airflow's default (None) on to every mapped copy.
            kwargs["map_index_template"] = DEFAULT_MAP_INDEX_TEMPLATE
        if DURABLE_EXECUTION_SUPPORTED:
            super().__init__(durable=durable, **kwargs)
        else:
            # The compat stand-in for ResumableJobMixin turns any `durable` into a Python warning at every
            # DAG parse: leave it out, and say it once per try in the task log instead (see execute).
            super().__init__(**kwargs)
        self._durable_requested = durable
        self.output_path = output_path
        self.output_conn_id = output_conn_id
        check_output_target(output_path, output_conn_id)
        if output_path is not None and not wait_for_completion:
            raise KlingValidationError(
                "output_path needs wait_for_completion=True; to copy a video submitted earlier, give "
                "output_path to KlingTaskSensor"
            )
        self.model = model
        self.payload = dict(payload or {})
        self.kling_conn_id = kling_conn_id
        self.deferrable = resolve_deferrable(deferrable)
        self.wait_for_completion = wait_for_completion
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max_poll_interval
        self.timeout = timeout
        self.not_found_grace = _seconds(not_found_grace)
        self.progress_log_interval = float(progress_log_interval)
        if self.not_found_grace < 0:
            raise KlingValidationError(f"not_found_grace={not_found_grace!r}: must be 0 seconds or more")
        if self.progress_log_interval <= 0:
            raise KlingValidationError(f"progress_log_interval={progress_log_interval!r}: must be more than 0 seconds")
        if self.poll_interval <= 0:
            raise KlingValidationError(f"poll_interval={poll_interval!r}: must be more than 0 seconds")
        if self.timeout_seconds <= 0:
            raise KlingValidationError(f"timeout={timeout!r}: must be more than 0 seconds")
        self._final_result: TaskResult | None = None
        self._summary: dict[str, Any] | None = None
        self._submitted_id: str | None = None
        self._submitted_at: float | None = None
        if not self.request_fields:
            self._check_literal_request()

    # -- the request -----------------------------------------------------------------------------------

    def _take_request_fields(self, arguments: Mapping[str, Any]) -> None:
        """Keep each of :attr:`request_fields` from a typed subclass's ``__init__`` arguments, then check them.

        The subclasses spell their arguments out (for users, and for Airflow's check of unknown
        arguments) and hand over ``locals()``: the field list itself lives once, in ``request_fields``.
        """
        for name in self.request_fields:
            value = arguments[name]
            setattr(self, name, _local_path_as_uri(value) if name in _IMAGE_FIELDS else value)
        self._check_literal_request()

    def request_values(self) -> dict[str, Any]:
        """The request body as given (templates rendered once running), ``None`` fields left out."""
        values = dict(self.payload)
        for name in self.request_fields:
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        return values

    @property
    def map_index_label(self) -> str:
        """The start of the (rendered) prompt on one line, at most :data:`MAP_INDEX_LABEL_LENGTH` characters.

        The first shot's prompt when only ``multi_prompt`` is given; empty without any prompt (the grid
        then shows the map index).
        """
        values = self.request_values()
        prompt = values.get("prompt")
        shots = values.get("multi_prompt")
        if not prompt and isinstance(shots, list) and shots and isinstance(shots[0], Mapping):
            prompt = shots[0].get("prompt")
        return short_label(str(prompt or ""), MAP_INDEX_LABEL_LENGTH)

    def build_request(self) -> KlingRequest | dict[str, Any]:
        """Validate the (rendered) request: a typed request for known models, the raw dict otherwise.

        Local images (``pathlib.Path``, bytes or ``file://``) are checked and encoded here, so every
        rule is enforced before anything is sent.
        """
        self._check_model(self.model)
        values = self.request_values()
        for name in _IMAGE_FIELDS:
            if is_local_image(values.get(name)):
                try:
                    values[name] = encode_local_image(values[name])
                except ValueError as err:
                    raise KlingValidationError(f"{name}: {err}") from None
        return prepare_request(self.model, values, log=self.log)

    def _check_model(self, model: str) -> None:
        if self.allowed_models and model not in self.allowed_models:
            raise KlingValidationError(
                f"model={model!r}: {type(self).__name__} takes one of {', '.join(self.allowed_models)}"
            )

    def _check_literal_request(self) -> None:
        """At DAG parse time, reject whatever is already known to be wrong (templated fields wait)."""
        if is_unresolved(self.model):
            return
        self._check_model(self.model)
        if self.model not in REQUEST_MODELS:
            return
        values = self.request_values()
        pending = {name for name, value in values.items() if is_unresolved(value) or is_local_image(value)}
        check_resolved_fields(self.model, values, pending)

    # -- Airflow entry points --------------------------------------------------------------------------

    @cached_property
    def hook(self) -> KlingHook:
        """The hook for ``kling_conn_id``."""
        return KlingHook(self.kling_conn_id)

    @property
    def timeout_seconds(self) -> float:
        """``timeout`` in seconds."""
        return _seconds(self.timeout)

    def execute(self, context: Context) -> Any:
        """Validate, then submit (or re-attach to the generation an earlier try submitted) and wait."""
        self._request = self.build_request()
        if self.output_path:
            # Fail before paying, not after.
            self.output_path = check_output_path(self.output_path, self.output_conn_id)
        if self._durable_requested and not DURABLE_EXECUTION_SUPPORTED:
            # Here, not in __init__: once per try, in the task log, and never at DAG parse time. A
            # deferred task resumes in execute_complete, so a deferral does not repeat it.
            self.log.warning(
                "durable=True needs Airflow 3.3+ (task state store); on Airflow %s a retry of this task "
                "submits (and pays for) a new generation. Pass durable=False to silence this warning",
                AIRFLOW_VERSION,
            )
        return self.execute_resumable(context)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, kling_task_id: str | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger fired: return the result (stored, if asked) or raise why it failed."""
        return self._complete(context, event_result(event, kling_task_id=kling_task_id))

    # -- ResumableJobMixin -----------------------------------------------------------------------------

    def submit_job(self, context: Context) -> str:
        """Submit the validated request; push ``kling_task_id`` to XCom before any wait."""
        kling_task_id = self.hook.submit(self.model, self._request)
        self._submitted_id = kling_task_id
        submitted = clock.utcnow()
        self._submitted_at = submitted.timestamp()
        context["ti"].xcom_push(key=XCOM_KLING_TASK_ID, value=kling_task_id)
        # Airflow resolves extra links whenever the task stops, deferral included; an empty link until
        # the video exists keeps it from logging a missing-XCom error on every deferral.
        context["ti"].xcom_push(key=XCOM_VIDEO_URL, value="")
        store = context.get("task_state_store")
        if self.durable and store is not None:
            store.set(STATE_REQUEST_FINGERPRINT, self._fingerprint())
            store.set(STATE_SUBMISSION, {"kling_task_id": kling_task_id, "submitted_at": submitted.isoformat()})
        self.log.info("Submitted %s generation: kling_task_id=%s", self.model, kling_task_id)
        return kling_task_id

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """Status of the generation an earlier try submitted (a task the vendor forgot counts as failed).

        Within the not-found grace window of its submit (stored with the id), a task the vendor does not
        show yet is re-attached to, not submitted again: it may just not be visible yet.

        An undocumented status raises instead of counting as failed: that generation may still be
        rendering (and billed), so submitting again could pay twice.
        """
        store = context.get("task_state_store")
        stored_fingerprint = store.get(STATE_REQUEST_FINGERPRINT) if store is not None else None
        if stored_fingerprint and stored_fingerprint != self._fingerprint():
            self.log.warning(
                "The request changed since Kling task %s was submitted (e.g. the task was cleared after an "
                "edit): submitting the new request",
                external_id,
            )
            return REQUEST_CHANGED
        self._submitted_at = _stored_submit_time(store, str(external_id))
        try:
            result = self.hook.get_task_result(str(external_id))
        except KlingNotFoundError as err:
            if (
                is_task_not_found(err)
                and self._submitted_at is not None
                and clock.now() < self._submitted_at + self.not_found_grace
            ):
                self.log.warning(
                    "Kling task %s from an earlier try is not visible yet; it was submitted at %s, within the "
                    "%.0f s grace window: re-attaching instead of paying again",
                    external_id,
                    format_epoch(self._submitted_at),
                    self.not_found_grace,
                )
                return NOT_VISIBLE_YET
            self.log.warning("Kling task %s from an earlier try is unknown to the vendor", external_id)
            return "TASK_NOT_FOUND"
        if result.task.state is TaskStatus.UNKNOWN:
            raise KlingError(
                f"the generation an earlier try submitted has an undocumented status {result.task.status!r}; "
                "not submitting again, as it may still be rendering. Wait for it with KlingTaskSensor, or "
                "clear this task's state to submit a new one",
                kling_task_id=str(external_id),
            )
        self._final_result = result if result.task.state.is_terminal else None
        return result.task.status

    def _fingerprint(self) -> str:
        request = self._request if isinstance(self._request, dict) else self._request.to_payload()
        canonical = json.dumps({"model": self.model, "request": request}, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def is_job_active(self, status: str) -> bool:
        """Queued or processing (or not visible yet, within the grace window): re-attach."""
        return status == NOT_VISIBLE_YET or TaskStatus.parse(status).is_in_flight

    def is_job_succeeded(self, status: str) -> bool:
        """Succeeded: return its result without paying again."""
        return TaskStatus.parse(status) is TaskStatus.SUCCEED

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        """Wait for the generation: defer to the trigger, or poll here when not deferrable.

        Returns the result dict: the mixin returns this method's value when it re-attaches.
        """
        kling_task_id = str(external_id)
        self._push_if_reattached(kling_task_id, context)
        if not self.wait_for_completion:
            return self._submitted(kling_task_id)
        if self.deferrable:
            defer_to_trigger(
                self,
                context,
                kling_task_id=kling_task_id,
                kling_conn_id=self.kling_conn_id,
                timeout_seconds=self.timeout_seconds,
                **self._wait_options(),
            )
        self._final_result = self.hook.wait_for_task(
            kling_task_id, timeout=self.timeout_seconds, **self._wait_options()
        )
        return self._complete(context, self._final_result)

    def _wait_options(self) -> WaitOptions:
        """How to wait for the video: the same on the triggerer as on the worker."""
        return WaitOptions(
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            submitted_at=self._submitted_at,
            not_found_grace=self.not_found_grace,
            progress_log_interval=self.progress_log_interval,
        )

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        """The return value: the result summary (or the bare id without ``wait_for_completion``)."""
        self._push_if_reattached(str(external_id), context)
        if not self.wait_for_completion:
            return self._submitted(str(external_id))
        if self._summary is not None:  # already completed by poll_until_complete
            return self._summary
        return self._complete(context, self._final_result or self.hook.get_task_result(str(external_id)))

    def _complete(self, context: Context, result: TaskResult) -> dict[str, Any]:
        kling_task_id = result.task.task_id
        self._summary = complete(
            context,
            result,
            model=self.model,
            output_path=self.output_path,
            output_conn_id=self.output_conn_id,
            request=self.request_values(),
            refresh=lambda: self.hook.get_task_result(kling_task_id),
            outlets=self.outlets,
        )
        return self._summary

    def _push_if_reattached(self, kling_task_id: str, context: Context) -> None:
        """Push the id of a generation an earlier try submitted: this try's XCom starts empty."""
        if self._submitted_id != kling_task_id:
            self.log.info("Re-attached to Kling task %s submitted by an earlier try", kling_task_id)
            context["ti"].xcom_push(key=XCOM_KLING_TASK_ID, value=kling_task_id)
            context["ti"].xcom_push(key=XCOM_VIDEO_URL, value="")

    def _submitted(self, kling_task_id: str) -> dict[str, Any]:
        return {"kling_task_id": kling_task_id, "model": self.model, "status": SUBMITTED}


class KlingTextToVideoOperator(KlingSubmitOperator):
    """Generate a video from a text prompt (``kling-v3.0-{std,pro,4k}-t2v``).

    :param prompt: What to show (templated; at most 2500 characters).
    :param model: ``kling-v3.0-std-t2v`` (default), ``kling-v3.0-pro-t2v`` or ``kling-v3.0-4k-t2v``.
    :param negative_prompt: What to avoid (templated).
    :param duration: Seconds, 3 to 15 (vendor default 5).
    :param aspect_ratio: ``16:9`` (vendor default), ``9:16`` or ``1:1``.
    :param sound: Generate synchronised audio.
    :param cfg_scale: 0 to 1: how closely to follow the prompt (vendor default 0.5).
    :param multi_prompt: Pro only: shots as ``[{"prompt": ..., "duration": ...}]``.

    Every other parameter is :class:`KlingSubmitOperator`'s.

    Example::

        teaser = KlingTextToVideoOperator(
            task_id="teaser",
            model="kling-v3.0-4k-t2v",
            prompt="{{ params.prompt }}",
            negative_prompt="text, watermark",
            cfg_scale=0.7,
            aspect_ratio="9:16",
        )
    """

    request_models: ClassVar[tuple[type[KlingRequest], ...]] = (TextToVideoRequest, ProTextToVideoRequest)

    def __init__(
        self,
        *,
        prompt: str,
        model: str = "kling-v3.0-std-t2v",
        negative_prompt: str | None = None,
        duration: int | str | None = None,
        aspect_ratio: str | None = None,
        sound: bool | None = None,
        cfg_scale: float | str | None = None,
        multi_prompt: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self._take_request_fields(locals())


class KlingImageToVideoOperator(KlingSubmitOperator):
    """Animate an image (the first frame) into a video (``kling-v3.0-{std,pro,4k}-i2v``).

    :param image: First frame: an http(s) URL (documented), or a local ``pathlib.Path``, ``file://`` URI
        or bytes (checked here, sent as base64, which the vendor has not confirmed for this endpoint).
    :param prompt: What happens (templated; at most 2500 characters).
    :param model: ``kling-v3.0-std-i2v`` (default), ``kling-v3.0-pro-i2v`` or ``kling-v3.0-4k-i2v``.
    :param end_image: Last frame, same forms as ``image``; not with ``multi_prompt``.
    :param multi_prompt: Shots as ``[{"prompt": ..., "duration": ...}]``; not with ``end_image``.
    :param negative_prompt: What to avoid. ``duration``, ``sound``, ``cfg_scale``: as for text to video.

    Example::

        KlingImageToVideoOperator(
            task_id="animate",
            image="https://example.com/product.png",
            prompt="the camera circles the product",
            multi_prompt=[{"prompt": "close-up", "duration": 3}, {"prompt": "wide shot", "duration": 4}],
        )
    """

    request_models: ClassVar[tuple[type[KlingRequest], ...]] = (ImageToVideoRequest,)

    def __init__(
        self,
        *,
        image: str | Path | bytes,
        prompt: str,
        model: str = "kling-v3.0-std-i2v",
        end_image: str | Path | bytes | None = None,
        multi_prompt: list[Any] | None = None,
        negative_prompt: str | None = None,
        duration: int | str | None = None,
        sound: bool | None = None,
        cfg_scale: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self._take_request_fields(locals())


class KlingMotionControlOperator(KlingSubmitOperator):
    """Make the character in ``image`` move like the one in ``video`` (``kling-v3.0-motion-control``).

    :param image: The character: an http(s) URL, base64, or a local ``Path``/``file://``/bytes.
    :param video: Reference motion: an http(s) URL of an .mp4 or .mov, at most 10 MB, 3 to 30 s.
    :param model_name: ``kling-v3-0-std`` (vendor default) or ``kling-v3-0-pro``.
    :param character_orientation: ``image`` or ``video``: whose orientation to keep.
    :param prompt: Optional guidance; ``negative_prompt`` what to avoid.
    :param keep_original_sound: Keep the reference video's audio.

    Example::

        KlingMotionControlOperator(
            task_id="dance",
            image="https://example.com/mascot.png",
            video="https://example.com/dance.mp4",
            character_orientation="video",
        )
    """

    request_models: ClassVar[tuple[type[KlingRequest], ...]] = (MotionControlRequest,)

    def __init__(
        self,
        *,
        image: str | Path | bytes,
        video: str,
        model_name: str | None = None,
        character_orientation: str | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        keep_original_sound: bool | None = None,
        model: str = "kling-v3.0-motion-control",
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self._take_request_fields(locals())


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _stored_submit_time(store: Any, kling_task_id: str) -> float | None:
    """The submit time stored with ``kling_task_id`` (epoch seconds), if this is the id it was stored with."""
    stored = store.get(STATE_SUBMISSION) if store is not None else None
    if not isinstance(stored, Mapping) or stored.get("kling_task_id") != kling_task_id:
        return None
    try:
        return pendulum.parse(str(stored["submitted_at"])).timestamp()  # type: ignore[union-attr]
    except (KeyError, ValueError, AttributeError):
        return None


def _local_path_as_uri(value: Any) -> Any:
    """A ``pathlib.Path`` becomes a ``file://`` string: Airflow's templating calls ``.resolve(context)``
    on any object that has a ``resolve`` method (as ``Path`` does), and a string serialises cleanly."""
    return f"file://{value.absolute()}" if isinstance(value, Path) else value


def short_label(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters (``…`` marks a cut)."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut and line[limit - 1] != " ":
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:") + "…"
