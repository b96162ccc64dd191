"""Turn HTTP answers and transport failures into the provider's exception types.

Kept apart from the hook so the sync and async paths classify failures in exactly one way.
"""

from __future__ import annotations

import html
import re
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from airflow_provider_kling import clock
from airflow_provider_kling.exceptions import (
    KlingAuthError,
    KlingConnectionError,
    KlingContentPolicyError,
    KlingError,
    KlingNotFoundError,
    KlingRateLimitError,
    KlingRequestError,
    KlingSubmitUncertainError,
    KlingTransientError,
    is_content_policy_reason,
)
from airflow_provider_kling.models import ApiError

_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")
#: Transport failures that happen before the request is written: nothing reached the vendor.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def error_from_response(response: httpx.Response, *, kling_task_id: str | None = None) -> KlingError:
    """Classify a non-2xx answer; the error carries status, vendor reason and message."""
    status = response.status_code
    reason, message = _reason_and_message(response)
    what = f"{response.request.method} {response.request.url.path} answered HTTP {status}"
    text = f"{what}: {message}" if message else what
    common: dict[str, Any] = {"http_status": status, "reason": reason, "kling_task_id": kling_task_id}
    if status == 429:
        return KlingRateLimitError(text, retry_after=_retry_after(response), **common)
    if status >= 500:
        return KlingTransientError(text, **common)
    if is_content_policy_reason(reason):
        return KlingContentPolicyError(text, **common)
    if status in (401, 403) or reason == "MISSING_API_KEY":
        return KlingAuthError(text, **common)
    if status == 404:
        return KlingNotFoundError(text, **common)
    if status in (408, 425):
        return KlingTransientError(text, **common)
    return KlingRequestError(text, **common)


def error_from_transport(exc: httpx.HTTPError, *, kling_task_id: str | None = None) -> KlingTransientError:
    """Classify a transport failure (timeout, refused, reset); never includes headers or the key."""
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # raised by httpx when the error was made without a request
        request = None
    where = "request"
    if request is not None:
        where = f"{request.method} {request.url.scheme}://{request.url.netloc.decode()}{request.url.path}"
    text = f"{where} failed: {type(exc).__name__}"
    detail = str(exc).strip()
    if detail:
        text += f" ({detail[:200]})"
    cls = KlingConnectionError if isinstance(exc, _NOT_SENT) else KlingTransientError
    return cls(text, kling_task_id=kling_task_id)


def submit_uncertain(error: KlingError, *, model: str, sent_at: str) -> KlingSubmitUncertainError:
    """The error for a submit that failed after it was sent (it may have created a paid task)."""
    return KlingSubmitUncertainError(
        f"submitting to {model} failed after the request was sent ({error.message}); the vendor may have "
        f"created (and billed) a task anyway. Not retried, so you do not pay twice. Look for a task "
        f"submitted at about {sent_at} in your Novita console; if one exists, wait for it with "
        "KlingTaskSensor(kling_task_id=...), otherwise clear this task to submit again",
        http_status=error.http_status,
        reason=error.reason,
    )


def _reason_and_message(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        body = None
    parsed = ApiError.from_body(body)
    if parsed is not None:
        return parsed.reason, parsed.message
    # A proxy in front of the API answers plain text or an HTML page: keep a short, readable gist.
    text = _SPACES.sub(" ", html.unescape(_TAGS.sub(" ", response.text or ""))).strip()
    return None, (text[:200] or None)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - clock.now())
