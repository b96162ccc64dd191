"""Retry policies (tenacity, which Airflow already ships) and the one classification of HTTP failures.

Every HTTP call of the provider, to the Kling API and to the vendor's video storage alike, turns a
failed answer into an exception with :func:`error_from_response` and a transport failure with
:func:`error_from_transport`, and retries with these policies:

* 429 (waiting for ``Retry-After`` when sent), 408, 425 and 5xx are transient, as are timeouts and
  dropped connections; other 4xx are permanent.
* A poll (Task Result GET) is read-only: every transient failure is retried with jittered exponential
  backoff, bounded by a failure budget and, when given, an absolute deadline.
* A submit costs money and the vendor has no idempotency key, so it is retried only when the request
  surely created nothing: the connection was never made, or the vendor said 429.
* A 429 waits for ``Retry-After`` when the server sends one. With a deadline, throttling does not spend
  the failure budget (the deadline bounds it instead), so a busy hour does not fail healthy tasks.
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict, Unpack

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from airflow_provider_kling import clock
from airflow_provider_kling.exceptions import (
    KlingConnectionError,
    KlingRateLimitError,
    KlingTimeoutError,
    KlingTransientError,
)
from airflow_provider_kling.hooks._errors import error_from_response, error_from_transport

__all__ = [
    "DEFAULT_INITIAL_WAIT",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_WAIT",
    "PollBudget",
    "apoll_retrying",
    "error_from_response",
    "error_from_transport",
    "poll_retrying",
    "stop_on_budget_or_deadline",
    "submit_retrying",
    "wait_retry_after",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_INITIAL_WAIT = 1.0
DEFAULT_MAX_WAIT = 30.0


class wait_retry_after(wait_base):
    """Wait what a 429's ``Retry-After`` asks for; otherwise defer to ``fallback``."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, KlingRateLimitError) and error.retry_after is not None:
            return error.retry_after
        return float(self.fallback(retry_state))


class stop_on_budget_or_deadline:
    """Stop after ``max_attempts`` failures; raise :class:`KlingTimeoutError` when the next wait would
    pass ``deadline`` (epoch seconds)."""

    def __init__(self, max_attempts: int, deadline: float | None) -> None:
        self.max_attempts = max_attempts
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if self.deadline is not None:
            if clock.now() + (retry_state.upcoming_sleep or 0.0) >= self.deadline:
                # Say "out of time", not the last network error: callers report a timeout, not a failure.
                raise KlingTimeoutError(
                    f"the deadline passed while retrying ({getattr(error, 'message', error)})",
                    kling_task_id=getattr(error, "kling_task_id", None),
                ) from error
            if isinstance(error, KlingRateLimitError):
                return False
        return retry_state.attempt_number >= self.max_attempts


def _log_before_sleep(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    log.warning(
        "Kling call failed (attempt %d), retrying in %.1f s: %s",
        retry_state.attempt_number,
        retry_state.upcoming_sleep,
        error,
    )


def _policy(
    retryable: tuple[type[BaseException], ...],
    *,
    max_attempts: int,
    deadline: float | None,
    initial_wait: float,
    max_wait: float,
) -> dict[str, Any]:
    return {
        "retry": retry_if_exception_type(retryable),
        "wait": wait_retry_after(
            wait_exponential(multiplier=initial_wait, max=max(max_wait - initial_wait, 0.0))
            + wait_random(0, initial_wait)
        ),
        "stop": stop_on_budget_or_deadline(max_attempts, deadline),
        "before_sleep": _log_before_sleep,
        "reraise": True,
    }


class PollBudget(TypedDict, total=False):
    """How long a poll policy keeps trying; each key left out takes the ``DEFAULT_*`` value."""

    #: Failures before giving up.
    max_attempts: int
    #: Epoch seconds past which no retry waits (:class:`KlingTimeoutError` instead); ``None``: none.
    deadline: float | None
    #: First backoff wait, seconds (also the jitter's range).
    initial_wait: float
    #: Longest backoff wait, seconds.
    max_wait: float


def _poll_policy(budget: PollBudget) -> dict[str, Any]:
    """The policy of a read-only call: every :class:`KlingTransientError` is retried."""
    return _policy(
        (KlingTransientError,),
        max_attempts=budget.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
        deadline=budget.get("deadline"),
        initial_wait=budget.get("initial_wait", DEFAULT_INITIAL_WAIT),
        max_wait=budget.get("max_wait", DEFAULT_MAX_WAIT),
    )


def poll_retrying(**budget: Unpack[PollBudget]) -> Retrying:
    """Sync retry policy for read-only calls: every :class:`KlingTransientError` is retried."""
    return Retrying(sleep=clock.sleep, **_poll_policy(budget))


def apoll_retrying(**budget: Unpack[PollBudget]) -> AsyncRetrying:
    """Async twin of :func:`poll_retrying` (waits on the event loop)."""
    return AsyncRetrying(sleep=clock.asleep, **_poll_policy(budget))


def submit_retrying(
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    initial_wait: float = DEFAULT_INITIAL_WAIT,
    max_wait: float = DEFAULT_MAX_WAIT,
) -> Retrying:
    """Retry policy for submits: only failures that surely created no task (never sent, or 429)."""
    return Retrying(
        sleep=clock.sleep,
        **_policy(
            (KlingConnectionError, KlingRateLimitError),
            max_attempts=max_attempts,
            deadline=None,
            initial_wait=initial_wait,
            max_wait=max_wait,
        ),
    )
