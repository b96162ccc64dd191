"""KlingHook: the only place that talks HTTP to the Kling (Novita) API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_kling import clock
from airflow_provider_kling._compat import AIRFLOW_VERSION, log_degradation_once, native_async_connection_lookup
from airflow_provider_kling._request_rules import prepare_request
from airflow_provider_kling.connection_form import (
    CONNECTION_FORM_FIELDS,
    connection_form_widgets,
    legacy_ui_field_behaviour,
)
from airflow_provider_kling.exceptions import (
    KlingAuthError,
    KlingConnectionError,
    KlingError,
    KlingNotFoundError,
    KlingRateLimitError,
    KlingRequestError,
    KlingTimeoutError,
    KlingTransientError,
)
from airflow_provider_kling.hooks._errors import error_from_response, error_from_transport, submit_uncertain
from airflow_provider_kling.hooks._shared_clients import SharedAsyncClient, absolute_url, shared_async_client
from airflow_provider_kling.hooks.connection import ConnectionSettings, empty_api_key_message, settings_from_connection
from airflow_provider_kling.hooks.rate_limit import sync_cluster_limiter
from airflow_provider_kling.hooks.retry import (
    DEFAULT_MAX_ATTEMPTS,
    apoll_retrying,
    poll_retrying,
    submit_retrying,
)
from airflow_provider_kling.models import KlingRequest, SubmitResponse, TaskResult
from airflow_provider_kling.polling import (
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_PROGRESS_LOG_INTERVAL,
    Outcome,
    PollReader,
)

SUBMIT_PATH = "/v3/async/{model}"
TASK_RESULT_PATH = "/v3/async/task-result"
#: The id ``test_connection`` asks for: any answer but 401/403 proves the key is accepted.
_PROBE_TASK_ID = "airflow-connection-test"


class KlingHook(BaseHook):
    """Talk to the Kling v3.0 async API through an Airflow connection of type ``kling``.

    The connection's host is the base URL (empty means ``https://api.novita.ai``; clones of the API work
    the same way), its password is the API key. Transient failures (429, 5xx, timeouts, dropped
    connections) are retried with jittered exponential backoff; a submit is retried only when it surely
    created no task (see :mod:`airflow_provider_kling.hooks.retry`).

    :param kling_conn_id: The Airflow connection to use.
    :param max_attempts: Attempts per call before a transient failure is raised.

    Example::

        hook = KlingHook()
        kling_task_id = hook.submit("kling-v3.0-std-t2v", {"prompt": "a red fox in snow"})
        result = hook.wait_for_task(kling_task_id, poll_interval=10, timeout=1800)
        print(result.videos[0].video_url)
    """

    conn_name_attr = "kling_conn_id"
    default_conn_name = "kling_default"
    conn_type = "kling"
    hook_name = "Kling AI (Novita)"

    def __init__(
        self,
        kling_conn_id: str = default_conn_name,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kling_conn_id = kling_conn_id
        self.max_attempts = max_attempts
        self._settings: ConnectionSettings | None = None
        self._client: httpx.Client | None = None
        self._result_url: tuple[SharedAsyncClient, str, str] | None = None

    # -- connection form -------------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Labels of the connection form: host is the base URL, password the API key.

        Read by Airflow before 3.2; 3.2+ reads the same data from ``get_provider_info``.
        """
        return legacy_ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields of the connection form as WTForms fields (read by Airflow before 3.2).

        Needs flask-appbuilder and WTForms, which Airflow 2 ships and Airflow 3.0/3.1 have when the FAB
        provider is installed; without them those versions show the form without these fields.
        """
        return connection_form_widgets()

    @classmethod
    def get_connection_form_fields(cls) -> dict[str, Any]:
        """The extra fields of the connection form (declarative form, Airflow 3.2+)."""
        return CONNECTION_FORM_FIELDS

    # -- settings and clients --------------------------------------------------------------------------

    @property
    def settings(self) -> ConnectionSettings:
        """The connection, read once and checked (empty key, non-HTTPS URL and bad extras are refused)."""
        if self._settings is None:
            try:
                conn = self.get_connection(self.kling_conn_id)
            except AirflowNotFoundException:
                raise _missing_connection(self.kling_conn_id) from None
            self._settings = settings_from_connection(
                self.kling_conn_id,
                host=conn.host,
                port=conn.port,
                password=conn.password,
                extra=conn.extra_dejson,
            )
        return self._settings

    def get_conn(self) -> httpx.Client:
        """The hook's HTTP client (one per hook, reused by every call; close with :meth:`close`)."""
        if self._client is None:
            settings = self.settings
            self._client = httpx.Client(
                base_url=settings.base_url, headers=settings.auth_headers, timeout=settings.timeout
            )
        return self._client

    def close(self) -> None:
        """Close the synchronous HTTP client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> KlingHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _shared(self) -> SharedAsyncClient:
        async def load() -> ConnectionSettings:
            if not native_async_connection_lookup():
                log_degradation_once(
                    "async-connection-lookup",
                    "Airflow %s: Kling connections are read in a worker thread, once per connection and "
                    "event loop (the native async connection lookup needs Airflow 3.3.2+)",
                    AIRFLOW_VERSION,
                )
            try:
                conn = await get_async_connection(self.kling_conn_id, hook=self)
            except AirflowNotFoundException:
                raise _missing_connection(self.kling_conn_id) from None
            extra = await get_async_extra_dejson(conn)
            return settings_from_connection(
                self.kling_conn_id, host=conn.host, port=conn.port, password=conn.password, extra=extra
            )

        return await shared_async_client(self.kling_conn_id, load)

    # -- the API ---------------------------------------------------------------------------------------

    def submit(self, model: str, request: KlingRequest | Mapping[str, Any]) -> str:
        """Validate and submit one generation; return the Kling task id.

        A known model's body is validated first (:func:`~airflow_provider_kling.models.build_request`),
        so bad input fails before anything is sent. A model this provider does not know yet is sent as
        given. Retried only on failures that surely created no task; a failure after the request was
        sent raises :class:`~airflow_provider_kling.exceptions.KlingSubmitUncertainError`.
        """
        payload = _payload(model, request)
        client = self.get_conn()
        sent_at = clock.utcnow().isoformat(timespec="seconds")
        try:
            for attempt in submit_retrying(max_attempts=self.max_attempts):
                with attempt:
                    response = self._send(client, "POST", SUBMIT_PATH.format(model=model), json=payload)
        except (KlingConnectionError, KlingRateLimitError):
            raise
        except KlingTransientError as err:
            raise submit_uncertain(err, model=model, sent_at=sent_at) from None
        try:
            return SubmitResponse.model_validate_json(response.content).task_id
        except ValueError:
            # The vendor answered 2xx but not with a task id: a task may exist all the same.
            raise submit_uncertain(
                KlingError(f"unexpected submit answer: {response.text[:200]!r}"), model=model, sent_at=sent_at
            ) from None

    def get_task_result(self, kling_task_id: str, *, deadline: float | None = None) -> TaskResult:
        """Fetch the Task Result of one generation (retried on transient failures).

        When the connection names a rate limit store (``rate_limit_storage_uri``), each attempt first
        takes a slot of the deployment-wide poll limit, as the triggerers' polls do.

        :param deadline: Absolute epoch seconds after which retries stop.
        """
        client = self.get_conn()
        settings = self.settings
        cluster_limiter = sync_cluster_limiter(
            settings.rate_limit_storage_uri, settings.max_polls_per_second, self.kling_conn_id
        )
        for attempt in poll_retrying(max_attempts=self.max_attempts, deadline=deadline):
            with attempt:
                if cluster_limiter is not None:
                    cluster_limiter.acquire()
                response = self._send(
                    client, "GET", TASK_RESULT_PATH, params={"task_id": kling_task_id}, task=kling_task_id
                )
                # Parsed inside the attempt: an unreadable answer (a proxy's 200 page) is retried too.
                result = _parse_result(response, kling_task_id)
        return result

    async def aget_task_result(self, kling_task_id: str, *, deadline: float | None = None) -> TaskResult:
        """Async :meth:`get_task_result`, for triggers.

        Every hook of one connection in one event loop shares one connection pool (aiohttp's: see
        :mod:`airflow_provider_kling.hooks._shared_clients`) and one poll-rate limiter (the connection
        extra's ``max_polls_per_second``, and the deployment-wide one when ``rate_limit_storage_uri`` is
        set). The connection is looked up asynchronously, once per loop, and again after an auth error
        (a rotated key).

        A poll holds one of the connection's in-flight slots only while its request is in flight, never
        while it sleeps before a retry, so healthy polls do not queue behind failing ones. The first
        attempt runs without a retry controller (building one costs more than the rest of a healthy
        poll); only a failure enters tenacity, which counts it as its first attempt.
        """
        try:
            return await self._apoll_once(kling_task_id)
        except KlingTransientError as error:
            first_failure: KlingTransientError | None = error
        async for attempt in apoll_retrying(max_attempts=self.max_attempts, deadline=deadline):
            with attempt:
                if first_failure is not None:
                    failure, first_failure = first_failure, None
                    raise failure
                result = await self._apoll_once(kling_task_id)
        return result

    async def _apoll_once(self, kling_task_id: str) -> TaskResult:
        shared = await self._shared()
        async with shared.in_flight:
            await shared.acquire()
            body = await self._asend(shared, kling_task_id)
        return _parse_result_body(body, kling_task_id)

    def wait_for_task(
        self,
        kling_task_id: str,
        *,
        poll_interval: float = 10.0,
        timeout: float = 3600.0,
        max_poll_interval: float | None = None,
        submitted_at: float | None = None,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        progress_log_interval: float = DEFAULT_PROGRESS_LOG_INTERVAL,
    ) -> TaskResult:
        """Block until the generation finishes; return its final Task Result (succeeded or failed).

        For the synchronous path (``deferrable=False``); deferrable operators use
        :class:`~airflow_provider_kling.triggers.kling.KlingTaskTrigger` instead. Each poll is read by
        :class:`~airflow_provider_kling.polling.PollReader`, as the trigger's and the sensor's are.

        :param submitted_at: When the task was submitted (epoch seconds): ``404 TASK_NOT_FOUND`` is
            retried until ``not_found_grace`` seconds after it (after the first poll when ``None``).
        :param progress_log_interval: Log progress at least this often while nothing changes.
        :raises KlingTimeoutError: not finished within ``timeout`` seconds (the Kling task keeps running).
        :raises KlingError: an undocumented status, a success without a video, a task still unknown
            after the grace window (never taken for success).
        """
        deadline = clock.now() + timeout
        reader = PollReader(
            kling_task_id,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            submitted_at=submitted_at,
            not_found_grace=not_found_grace,
            progress_log_interval=progress_log_interval,
        )
        last_status = "none yet"
        while True:
            try:
                result = self.get_task_result(kling_task_id, deadline=deadline)
            except KlingTimeoutError:
                raise
            except KlingError as err:
                step = reader.read_error(err)
            else:
                last_status = result.task.status
                step = reader.read(result)
            if step.info:
                self.log.info(step.info)
            if step.warning:
                self.log.warning(step.warning)
            if step.outcome is Outcome.ERROR:
                assert step.error is not None
                raise step.error
            if step.outcome.is_final:
                assert step.result is not None
                return step.result
            if step.reconnect:
                # A rotated key: read the connection again, with a new client, before the next poll.
                self.close()
                self._settings = None
            if clock.now() + step.delay >= deadline:
                raise KlingTimeoutError(
                    f"the video was not ready within {timeout:.0f} s (last status {last_status}); the "
                    "Kling task keeps running: wait for it with KlingTaskSensor",
                    kling_task_id=kling_task_id,
                )
            clock.sleep(step.delay)

    def test_connection(self) -> tuple[bool, str]:
        """Check the base URL and API key with one harmless Task Result call (nothing is billed).

        One attempt, no retries: a person is waiting on the Test button. The messages do not name the
        connection id, because Airflow's UI tests a connection under a random, throwaway one.
        """
        try:
            conn = self.get_connection(self.kling_conn_id)
        except AirflowNotFoundException:
            return False, str(_missing_connection(self.kling_conn_id))
        if not (conn.password or "").strip():
            return False, empty_api_key_message(None)
        try:
            base_url = self.settings.base_url
            response = self._send(self.get_conn(), "GET", TASK_RESULT_PATH, params={"task_id": _PROBE_TASK_ID})
        except KlingError as err:
            return self._probe_refused(err)
        try:
            _parse_result(response, _PROBE_TASK_ID)
        except KlingError:
            kind = response.headers.get("content-type") or "no content type"
            return False, (
                f"{base_url} does not answer like the Kling API: {response.request.method} {TASK_RESULT_PATH} "
                f"answered HTTP {response.status_code} ({kind}) with something that is not a Task Result"
            )
        return True, f"Connected to {base_url}: the API key is accepted."

    def _probe_refused(self, err: KlingError) -> tuple[bool, str]:
        """Read the error answer to the connection test's probe (a made-up task id)."""
        if err.http_status is not None and not err.reason:
            # An HTTP answer without the vendor's JSON error, whatever its status: a proxy's page, a login
            # wall or another service at that host. Its status says nothing about the API key.
            return False, f"{self.settings.base_url} does not answer like the Kling API: {err}"
        if isinstance(err, KlingAuthError):
            return False, f"The API key was refused: {err}"
        if isinstance(err, (KlingNotFoundError, KlingRequestError)):
            # The vendor's own "no such task" (or "bad task id") answer: the key was accepted.
            return True, f"Connected to {self.settings.base_url}: the API key is accepted."
        return False, str(err)

    # -- HTTP ------------------------------------------------------------------------------------------

    def _send(
        self, client: httpx.Client, method: str, path: str, *, task: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, kling_task_id=task) from None
        if response.is_error:
            raise error_from_response(response, kling_task_id=task)
        return response

    async def _asend(self, shared: SharedAsyncClient, kling_task_id: str) -> bytes:
        if shared.invalidated or shared.transport.is_closed:
            # Another hook's poll was refused (auth error) while this one waited for a slot: retry, and
            # the next attempt reads the connection again.
            raise KlingTransientError(
                "the shared HTTP client was reset after an auth error; retrying with the connection re-read",
                kling_task_id=kling_task_id,
            )
        try:
            return await shared.transport.get(self._task_result_url(shared, kling_task_id))
        except httpx.HTTPStatusError as answer:
            error = error_from_response(answer.response, kling_task_id=kling_task_id)
            if isinstance(error, KlingAuthError):
                shared.invalidate()
            raise error from None
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, kling_task_id=kling_task_id) from None

    def _task_result_url(self, shared: SharedAsyncClient, kling_task_id: str) -> str:
        """The Task Result URL of a task, built once per hook and task (a trigger polls one task).

        The part before the query is joined once per shared entry: a hook made for one poll (a sensor's
        poke) pays one string format, not a URL parse.
        """
        cached = self._result_url
        if cached is None or cached[0] is not shared or cached[1] != kling_task_id:
            prefix = shared.result_url_prefix
            if prefix is None:
                prefix = shared.result_url_prefix = absolute_url(shared.settings.base_url, TASK_RESULT_PATH)
            cached = self._result_url = (shared, kling_task_id, f"{prefix}?{urlencode({'task_id': kling_task_id})}")
        return cached[2]


def _missing_connection(conn_id: str) -> KlingAuthError:
    return KlingAuthError(
        f"connection {conn_id!r} is not defined: create a connection of type kling with the base URL as host "
        "and your Novita API key as password (or set kling_conn_id to an existing one)"
    )


def _payload(model: str, request: KlingRequest | Mapping[str, Any]) -> dict[str, Any]:
    prepared = prepare_request(model, request)
    return prepared.to_payload() if isinstance(prepared, KlingRequest) else prepared


def _parse_result(response: httpx.Response, kling_task_id: str) -> TaskResult:
    return _parse_result_body(response.content, kling_task_id)


def _parse_result_body(body: bytes, kling_task_id: str) -> TaskResult:
    try:
        # One pass from bytes to the model: no intermediate dict (pydantic's JSON parser).
        return TaskResult.model_validate_json(body)
    except ValueError as err:
        raise KlingTransientError(
            f"unreadable Task Result answer: {str(err).splitlines()[0][:200]}", kling_task_id=kling_task_id
        ) from None
