"""What a poll means, and when to poll next: the one reading shared by the trigger, the sync wait and the sensor.

:class:`PollReader` turns each Task Result (or the error a poll raised) into a :class:`Step`: the
generation is done, failed, refused by moderation, or still worth waiting for (with the delay before the
next poll), or something is wrong (an undocumented status, a permanent API error). The callers only act
on the step: the trigger yields an event, the sync wait returns or raises, the sensor answers a poke.
A new vendor status is then a change to this module alone.

Three answers are read as "not yet" for a while instead of as failures, because an async API behind
replicated stores gives them for a moment after a create:

* ``404 TASK_NOT_FOUND`` for the id we were given, until ``not_found_grace`` seconds after the submit
  (retried with backoff, logged once). After the window the error says the id, when it was submitted
  and how long we waited. ``API_NOT_FOUND`` (a wrong base URL or model) is never retried.
* ``TASK_STATUS_SUCCEED`` without a video URL, re-polled :data:`EMPTY_SUCCESS_POLLS` times, then an
  error naming the Kling task id: a success with nothing to deliver is never returned.
* A refused API key, once in a row: the key may just have been rotated in the connection, which the
  next poll reads again.

The schedule is eta-aware: while the vendor says a video is far from done the poller backs off (up to
``max_poll_interval``), and near the end it polls every ``poll_interval``. A render of several minutes
then costs a handful of polls instead of one every few seconds, at no cost in detection latency.

Progress is logged when the status or the progress changes, and every ``progress_log_interval`` seconds
while nothing does, so a stuck job stays visible without a line per poll.

Example::

    reader = PollReader("kt-1", poll_interval=10, submitted_at=clock.now())
    step = reader.read(hook.get_task_result("kt-1"))
    if step.outcome is Outcome.WAIT:
        clock.sleep(step.delay)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pendulum

from airflow_provider_kling import clock
from airflow_provider_kling.exceptions import (
    KlingAuthError,
    KlingContentPolicyError,
    KlingError,
    KlingNotFoundError,
    KlingTaskFailedError,
    is_content_policy_reason,
)
from airflow_provider_kling.models import TaskInfo, TaskResult, TaskStatus

#: Poll after this fraction of the vendor's eta, so a slightly optimistic eta is not overshot.
ETA_FRACTION = 0.5
#: ``max_poll_interval`` when not given: this many times ``poll_interval``.
DEFAULT_BACKOFF_FACTOR = 6
#: Seconds after the submit during which ``404 TASK_NOT_FOUND`` means "not visible yet".
DEFAULT_NOT_FOUND_GRACE = 120.0
#: A progress line at least this often (seconds) while nothing changes.
DEFAULT_PROGRESS_LOG_INTERVAL = 300.0
#: Re-polls of a "succeeded" answer that carries no video URL before it is an error.
EMPTY_SUCCESS_POLLS = 3
#: First wait of a re-poll inside a grace (doubled on each one, at most ``poll_interval``).
GRACE_FIRST_WAIT = 2.0
#: Seconds: the waits between polls end on multiples of this (epoch time), so one wake-up of the
#: triggerer's event loop serves every trigger due in the same tenth of a second (:func:`aligned_delay`).
WAKE_GRID = 0.1
#: The vendor's reason for an unknown task id; ``API_NOT_FOUND`` (unknown endpoint) stays permanent.
TASK_NOT_FOUND = "TASK_NOT_FOUND"


class Outcome(str, enum.Enum):
    """What a poll means for the wait."""

    DONE = "done"  # succeeded, with a video
    FAILED = "failed"  # TASK_STATUS_FAILED
    REFUSED = "refused"  # TASK_STATUS_FAILED by content moderation (not worth a retry)
    WAIT = "wait"  # poll again after ``Step.delay``
    ERROR = "error"  # an undocumented status, or a permanent error: ``Step.error``

    @property
    def is_final(self) -> bool:
        """Whether the wait ends here."""
        return self is not Outcome.WAIT


@dataclass(frozen=True)
class Step:
    """The reading of one poll.

    :param outcome: What happens next.
    :param delay: Seconds before the next poll (``WAIT`` only).
    :param result: The Task Result read, when there was one.
    :param error: What to raise (``FAILED``, ``REFUSED``, ``ERROR``).
    :param info: A line worth logging at INFO (progress that changed, a periodic reminder).
    :param warning: A line worth logging at WARNING (a grace entered, a refused key retried).
    :param reconnect: The API key was refused: read the connection again before the next poll.
    """

    outcome: Outcome
    delay: float = 0.0
    result: TaskResult | None = None
    error: KlingError | None = None
    info: str | None = None
    warning: str | None = None
    reconnect: bool = False


def default_max_poll_interval(poll_interval: float) -> float:
    """The longest wait between polls when the caller did not choose one."""
    return poll_interval * DEFAULT_BACKOFF_FACTOR


def next_poll_delay(task: TaskInfo, poll_interval: float, max_poll_interval: float | None = None) -> float:
    """Seconds to wait before the next poll, given the last status.

    Example::

        next_poll_delay(TaskInfo(status="TASK_STATUS_PROCESSING", eta=120), 10, 60)  # 60.0
        next_poll_delay(TaskInfo(status="TASK_STATUS_PROCESSING", eta=8), 10, 60)    # 10.0
    """
    ceiling = max(poll_interval, max_poll_interval or default_max_poll_interval(poll_interval))
    if task.eta is None or task.eta <= 0:
        return poll_interval
    return min(ceiling, max(poll_interval, task.eta * ETA_FRACTION))


def aligned_delay(now: float, delay: float, grid: float = WAKE_GRID) -> float:
    """``delay``, moved by at most half a ``grid`` so that the wait ends on a multiple of ``grid``.

    A triggerer runs thousands of waits in one event loop, and every wake-up of the loop costs CPU of
    its own (a return from the selector, the timer heap, the callbacks' bookkeeping), whatever it then
    does. Waits that end on a shared grid end together, so the loop wakes once for every trigger due in
    the same tenth of a second instead of once each (see docs/performance.md). Rounding to the nearest
    grid point, not up, keeps the average wait and so the detection latency as they were. Waits shorter
    than ten grid steps (a quick retry, a reconnect) are kept as they are.

    Example::

        aligned_delay(1000.03, 5.0)  # about 4.97: the wait ends at 1005.0
    """
    if delay < 10 * grid:
        return delay
    return max(0.0, round((now + delay) / grid) * grid - now)


def describe_progress(kling_task_id: str, task: TaskInfo) -> str:
    """One log line for a poll: status, progress and eta (what a user watches in the task log)."""
    progress = "?" if task.progress_percent is None else f"{task.progress_percent}%"
    eta = "?" if task.eta is None else f"{task.eta}s"
    return f"Kling task {kling_task_id}: status={task.status or '?'} progress={progress} eta={eta}"


def failure_of(result: TaskResult) -> KlingTaskFailedError:
    """The error of a ``TASK_STATUS_FAILED`` result: a content-policy refusal, or a failure with its reason.

    A refusal is :class:`KlingContentPolicyError`, which Airflow does not retry: a retry would pay for
    the same refusal.
    """
    task = result.task
    reason = task.reason or "no reason given by the vendor"
    if is_content_policy_reason(reason):
        return KlingContentPolicyError(
            f"Kling refused the content: {reason}. Not retried: change the prompt or image",
            reason=reason,
            kling_task_id=task.task_id,
        )
    return KlingTaskFailedError(f"Kling generation failed: {reason}", reason=reason, kling_task_id=task.task_id)


def has_video(result: TaskResult) -> bool:
    """Whether a result carries at least one video with a URL."""
    return any(video.video_url for video in result.videos)


def is_task_not_found(error: KlingError) -> bool:
    """Whether ``error`` is the vendor saying it does not know the task id (not an unknown endpoint)."""
    if not isinstance(error, KlingNotFoundError):
        return False
    if error.reason:
        return error.reason.upper() == TASK_NOT_FOUND
    # A server that answers a bare 404 body still says which thing it did not find.
    return "task not found" in error.message.lower()


def format_epoch(seconds: float) -> str:
    """An epoch time as an ISO 8601 UTC string, for messages."""
    return pendulum.from_timestamp(seconds, tz="UTC").to_iso8601_string()


class PollReader:
    """Reads the polls of one wait; keeps the little state the graces and the progress log need.

    :param kling_task_id: The vendor's task id (named in every message).
    :param poll_interval: Shortest wait between polls, seconds.
    :param max_poll_interval: Longest wait while the vendor's eta is far off.
    :param submitted_at: When the task was submitted (epoch seconds); the not-found grace counts from
        here. ``None`` (an id of unknown age, as a sensor gets): from this reader's first poll.
    :param not_found_grace: Seconds after ``submitted_at`` during which ``TASK_NOT_FOUND`` is retried.
    :param progress_log_interval: Log progress at least this often while nothing changes (seconds).
    :param counted_from: What ``submitted_at`` is, in messages (a sensor counts from its own start).
    """

    __slots__ = (
        "_auth_refusals",
        "_empty_successes",
        "_grace_retries",
        "_last_logged",
        "_last_seen",
        "_not_found_warned",
        "counted_from",
        "kling_task_id",
        "max_poll_interval",
        "not_found_grace",
        "poll_interval",
        "progress_log_interval",
        "submitted_at",
    )

    def __init__(
        self,
        kling_task_id: str,
        *,
        poll_interval: float,
        max_poll_interval: float | None = None,
        submitted_at: float | None = None,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        progress_log_interval: float = DEFAULT_PROGRESS_LOG_INTERVAL,
        counted_from: str | None = None,
    ) -> None:
        self.kling_task_id = kling_task_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max_poll_interval
        self.submitted_at = submitted_at
        if counted_from is None:
            counted_from = "it was submitted" if submitted_at is not None else "the first poll"
        self.counted_from = counted_from
        self.not_found_grace = float(not_found_grace)
        self.progress_log_interval = float(progress_log_interval)
        self._last_seen: tuple[str, int | None] | None = None
        self._last_logged = 0.0
        self._grace_retries = 0
        self._empty_successes = 0
        self._auth_refusals = 0
        self._not_found_warned = False

    @property
    def window_start(self) -> float:
        """Where the not-found grace counts from (set by the first poll when the submit time is unknown)."""
        if self.submitted_at is None:
            self.submitted_at = clock.now()
        return self.submitted_at

    def read(self, result: TaskResult) -> Step:
        """What a Task Result means for the wait."""
        self.window_start  # noqa: B018 - a sensor's window starts at its first poll, whatever it answered
        self._auth_refusals = 0
        task = result.task
        info = self._progress_line(task)
        state = task.state
        if state is TaskStatus.SUCCEED:
            if has_video(result):
                return Step(Outcome.DONE, result=result, info=info)
            return self._empty_success(result, info)
        if state is TaskStatus.FAILED:
            failure = failure_of(result)
            outcome = Outcome.REFUSED if isinstance(failure, KlingContentPolicyError) else Outcome.FAILED
            return Step(outcome, result=result, error=failure, info=info)
        if state is TaskStatus.UNKNOWN:
            error = KlingError(f"undocumented task status {task.status!r}", kling_task_id=self.kling_task_id)
            return Step(Outcome.ERROR, result=result, error=error, info=info)
        delay = next_poll_delay(task, self.poll_interval, self.max_poll_interval)
        return Step(Outcome.WAIT, delay=delay, info=info)

    def read_error(self, error: KlingError) -> Step:
        """What an error raised by a poll means for the wait (the hook has already retried transient ones)."""
        if is_task_not_found(error):
            return self._not_found(error)
        if isinstance(error, KlingAuthError) and error.http_status is not None and self._auth_refusals == 0:
            self._auth_refusals += 1
            return Step(
                Outcome.WAIT,
                delay=0.0,
                reconnect=True,
                warning=(
                    f"Kling task {self.kling_task_id}: the API key was refused ({error.message}); reading the "
                    "connection again (it may have been rotated) and polling once more"
                ),
            )
        return Step(Outcome.ERROR, error=error)

    def _not_found(self, error: KlingError) -> Step:
        start = self.window_start
        now = clock.now()
        window_end = start + self.not_found_grace
        if now >= window_end:
            submitted = format_epoch(start)
            return Step(
                Outcome.ERROR,
                error=KlingNotFoundError(
                    f"Kling task {self.kling_task_id} is still unknown to the vendor {now - start:.0f} s after "
                    f"{self.counted_from} ({submitted}); waited "
                    f"out the {self.not_found_grace:.0f} s grace window for a new task to become visible. "
                    f"Last answer: {error.message}",
                    http_status=error.http_status,
                    reason=error.reason,
                    kling_task_id=self.kling_task_id,
                ),
            )
        delay = min(self.poll_interval, GRACE_FIRST_WAIT * 2**self._grace_retries, max(0.0, window_end - now))
        self._grace_retries += 1
        warning = None
        if not self._not_found_warned:
            self._not_found_warned = True
            warning = (
                f"Kling task {self.kling_task_id} is not visible yet (HTTP {error.http_status} "
                f"{error.reason or 'not found'}): a new task can take a moment to appear; retrying until "
                f"{format_epoch(window_end)} ({self.not_found_grace:.0f} s after {self.counted_from}, "
                f"{format_epoch(start)})"
            )
        return Step(Outcome.WAIT, delay=delay, warning=warning)

    def _empty_success(self, result: TaskResult, info: str | None) -> Step:
        if self._empty_successes >= EMPTY_SUCCESS_POLLS:
            return Step(
                Outcome.ERROR,
                result=result,
                info=info,
                error=KlingError(
                    f"Kling task {self.kling_task_id} reports {TaskStatus.SUCCEED.value} but no video URL after "
                    f"{self._empty_successes + 1} polls: nothing to deliver. Check the task in the Novita "
                    "console before submitting again (it may have been billed)",
                    kling_task_id=self.kling_task_id,
                ),
            )
        delay = min(self.poll_interval, GRACE_FIRST_WAIT * 2**self._empty_successes)
        self._empty_successes += 1
        warning = (
            f"Kling task {self.kling_task_id} reports success without a video URL yet; polling again in "
            f"{delay:.0f} s ({self._empty_successes} of {EMPTY_SUCCESS_POLLS})"
        )
        return Step(Outcome.WAIT, delay=delay, info=info, warning=warning)

    def _progress_line(self, task: TaskInfo) -> str | None:
        seen = (task.status, task.progress_percent)
        now = clock.now()
        if seen == self._last_seen and now - self._last_logged < self.progress_log_interval:
            return None
        self._last_seen = seen
        self._last_logged = now
        return describe_progress(self.kling_task_id, task)
