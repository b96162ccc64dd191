"""One exception hierarchy for everything that can go wrong talking to Kling.

Every error carries what a user needs to act on it: the HTTP status, the vendor's ``reason`` and
``message``, and the Kling task id when one is known. ``str(error)`` is a single line that says all of
that, and never contains the API key.

::

    KlingError
    ├── KlingValidationError        bad input, refused before any request (no money spent)
    ├── KlingAuthError              missing/invalid API key, account not allowed (401/403)
    ├── KlingNotFoundError          unknown model endpoint or task id (404)
    ├── KlingRequestError           any other permanent 4xx
    ├── KlingTransientError         5xx, timeouts, dropped connections: safe to retry a poll
    │   ├── KlingConnectionError    the request never left (refused, DNS): safe to retry a submit too
    │   └── KlingRateLimitError     429, with ``retry_after`` when the server sent one
    ├── KlingSubmitUncertainError   a submit failed after it was sent: a task may exist (not retried)
    ├── KlingTimeoutError           the video was not ready before the operator's timeout
    └── KlingTaskFailedError        the generation ended TASK_STATUS_FAILED
        └── KlingContentPolicyError the prompt or image was refused by moderation (not retried)
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class KlingError(AirflowException):
    """Base of every error raised by this provider."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        reason: str | None = None,
        kling_task_id: str | None = None,
    ) -> None:
        self.message = message
        self.http_status = http_status
        self.reason = reason
        self.kling_task_id = kling_task_id
        super().__init__(self._line())

    def _line(self) -> str:
        facts = []
        if self.http_status is not None:
            facts.append(f"HTTP {self.http_status}")
        if self.reason:
            facts.append(self.reason)
        if self.kling_task_id:
            facts.append(f"kling_task_id={self.kling_task_id}")
        return f"{self.message} [{', '.join(facts)}]" if facts else self.message

    def _fields(self) -> dict[str, object]:
        """The keyword arguments that rebuild this error (subclasses add theirs)."""
        return {"http_status": self.http_status, "reason": self.reason, "kling_task_id": self.kling_task_id}

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keyword-only arguments are lost by the default pickling of exceptions.
        return (_rebuild, (type(self), self.message, self._fields()))


def _rebuild(cls: type[KlingError], message: str, fields: dict[str, object]) -> KlingError:
    return cls(message, **fields)  # type: ignore[arg-type]


class KlingValidationError(KlingError, AirflowFailException, ValueError):
    """The request breaks a documented rule; raised before anything is sent.

    An ``AirflowFailException``: a retry would meet the same input, so Airflow does not retry it.
    """


class KlingAuthError(KlingError):
    """The API key is missing or refused, or the account may not use this API."""


class KlingNotFoundError(KlingError):
    """The endpoint (model) or the Kling task id does not exist."""


class KlingRequestError(KlingError):
    """The vendor refused the request permanently (a 4xx other than auth, not-found and 429)."""


class KlingTransientError(KlingError):
    """A failure that may pass: a 5xx, a timeout, a dropped connection."""


class KlingConnectionError(KlingTransientError):
    """No connection could be made (refused, DNS, connect timeout): the request was surely not sent."""


class KlingRateLimitError(KlingTransientError):
    """HTTP 429. ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]

    def _fields(self) -> dict[str, object]:
        return {**super()._fields(), "retry_after": self.retry_after}


class KlingSubmitUncertainError(KlingError, AirflowFailException):
    """A submit failed *after* the request left this machine, so the vendor may have created a task.

    The vendor has no idempotency key, so resubmitting could pay twice for one video. This error is an
    ``AirflowFailException``: Airflow does not retry it. The message says how to find the task.
    """


class KlingTimeoutError(KlingError):
    """The video was not ready before the operator's ``timeout``. The Kling task keeps running."""


class KlingTaskFailedError(KlingError):
    """The generation ended in ``TASK_STATUS_FAILED``; ``reason`` holds the vendor's explanation."""


class KlingContentPolicyError(KlingTaskFailedError, AirflowFailException):
    """Moderation refused the prompt or image. Not retried: a retry would pay for the same refusal."""


#: Vendor reasons (and substrings of free-text reasons) that mean moderation refused the content.
CONTENT_POLICY_MARKERS = (
    "ILLEGAL_PROMPT",
    "ILLEGAL_IMAGE_CONTENT",
    "content policy",
    "moderation",
    "nsfw",
    "sensitive content",
)


def is_content_policy_reason(reason: str | None) -> bool:
    """Whether a vendor reason means the content itself was refused (so a retry cannot help)."""
    if not reason:
        return False
    lowered = reason.lower()
    return any(marker.lower() in lowered for marker in CONTENT_POLICY_MARKERS)
