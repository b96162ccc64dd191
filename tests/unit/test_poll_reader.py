"""PollReader: the one reading of a poll that the trigger, the sync wait and the sensor share."""

from __future__ import annotations

from typing import Any

import pytest
from _fakes import FAILED, PROCESSING, QUEUED, SUCCEED, VIDEO_URL, FakeClock, task_result

from airflow_provider_kling import clock as provider_clock
from airflow_provider_kling.exceptions import (
    KlingAuthError,
    KlingContentPolicyError,
    KlingError,
    KlingNotFoundError,
    KlingRequestError,
    KlingTaskFailedError,
    KlingTransientError,
)
from airflow_provider_kling.models import TaskResult
from airflow_provider_kling.polling import EMPTY_SUCCESS_POLLS, Outcome, PollReader, is_task_not_found

KLING_TASK_ID = "kt-1"
SUBMITTED_AT = 1_800_000_000.0


@pytest.fixture
def clock() -> Any:
    fake = FakeClock(SUBMITTED_AT)
    with provider_clock.use_clock(fake):
        yield fake


def parsed(status: str, **kwargs: Any) -> TaskResult:
    return TaskResult.model_validate(task_result(status, **kwargs))


def reader(**kwargs: Any) -> PollReader:
    options: dict[str, Any] = {"poll_interval": 10, "max_poll_interval": 60, "submitted_at": SUBMITTED_AT, **kwargs}
    return PollReader(KLING_TASK_ID, **options)


def task_not_found() -> KlingNotFoundError:
    return KlingNotFoundError(
        "GET /v3/async/task-result answered HTTP 404: task not found",
        http_status=404,
        reason="TASK_NOT_FOUND",
        kling_task_id=KLING_TASK_ID,
    )


# -- the vendor's statuses ---------------------------------------------------------------------------


def test_a_success_with_a_video_is_done(clock):
    step = reader().read(parsed(SUCCEED))

    assert step.outcome is Outcome.DONE
    assert step.result is not None
    assert step.result.videos[0].video_url == VIDEO_URL


def test_a_failure_carries_the_vendor_reason(clock):
    step = reader().read(parsed(FAILED, reason="render farm error"))

    assert step.outcome is Outcome.FAILED
    assert isinstance(step.error, KlingTaskFailedError)
    assert "render farm error" in str(step.error)


def test_a_content_policy_failure_is_a_refusal_airflow_does_not_retry(clock):
    step = reader().read(parsed(FAILED, reason="ILLEGAL_PROMPT: refused"))

    assert step.outcome is Outcome.REFUSED
    assert isinstance(step.error, KlingContentPolicyError)


def test_an_undocumented_status_is_an_error_never_a_success(clock):
    step = reader().read(parsed("TASK_STATUS_CANCELLED", videos=[{"video_url": VIDEO_URL}]))

    assert step.outcome is Outcome.ERROR
    assert "TASK_STATUS_CANCELLED" in str(step.error)


@pytest.mark.parametrize(("eta", "delay"), [(120, 60), (80, 40), (8, 10), (None, 10)])
def test_a_running_task_waits_by_the_vendor_eta(clock, eta, delay):
    step = reader().read(parsed(PROCESSING, eta=eta))

    assert step.outcome is Outcome.WAIT
    assert step.delay == delay


# -- not found right after the submit ----------------------------------------------------------------


def test_task_not_found_within_the_window_is_retried_with_backoff_and_logged_once(clock):
    poll = reader(not_found_grace=120)
    steps = []
    for _ in range(4):
        steps.append(poll.read_error(task_not_found()))
        clock.advance(steps[-1].delay)

    assert [step.outcome for step in steps] == [Outcome.WAIT] * 4
    assert [step.delay for step in steps] == [2, 4, 8, 10]  # doubling, at most poll_interval
    assert [step.warning is not None for step in steps] == [True, False, False, False]
    assert KLING_TASK_ID in (steps[0].warning or "")


def test_the_last_retry_lands_on_the_end_of_the_window(clock):
    poll = reader(not_found_grace=30)
    clock.advance(27)

    assert poll.read_error(task_not_found()).delay == 2
    clock.advance(2)
    assert poll.read_error(task_not_found()).delay == pytest.approx(1)


def test_after_the_window_the_error_names_the_id_the_submit_time_and_the_wait(clock):
    poll = reader(not_found_grace=120)
    clock.advance(125)

    step = poll.read_error(task_not_found())

    assert step.outcome is Outcome.ERROR
    assert isinstance(step.error, KlingNotFoundError)
    message = str(step.error)
    assert KLING_TASK_ID in message
    assert "2027-01-15T08:00:00" in message  # the submit time, UTC
    assert "125 s after it was submitted" in message
    assert "120 s grace window" in message


def test_an_id_of_unknown_age_counts_the_window_from_the_first_poll(clock):
    clock.advance(10_000)  # the submit time is unknown: only this reader's polls count
    poll = reader(submitted_at=None, not_found_grace=60)

    assert poll.read_error(task_not_found()).outcome is Outcome.WAIT
    clock.advance(61)
    step = poll.read_error(task_not_found())
    assert step.outcome is Outcome.ERROR
    assert "after the first poll" in str(step.error)


def test_a_running_answer_starts_the_window_of_an_id_of_unknown_age(clock):
    poll = reader(submitted_at=None, not_found_grace=60)
    poll.read(parsed(QUEUED))
    clock.advance(61)

    assert poll.read_error(task_not_found()).outcome is Outcome.ERROR


def test_api_not_found_is_permanent_at_once(clock):
    wrong_endpoint = KlingNotFoundError("no such API", http_status=404, reason="API_NOT_FOUND")

    assert not is_task_not_found(wrong_endpoint)
    assert reader().read_error(wrong_endpoint).outcome is Outcome.ERROR


def test_a_bare_404_that_says_task_not_found_is_the_task_not_found(clock):
    assert is_task_not_found(KlingNotFoundError("GET /v3/async/task-result answered HTTP 404: task not found"))
    assert not is_task_not_found(KlingNotFoundError("GET /v3/async/task-result answered HTTP 404"))


@pytest.mark.parametrize(
    "error", [KlingRequestError("bad", http_status=400), KlingTransientError("budget spent", http_status=503)]
)
def test_other_errors_end_the_wait(clock, error):
    step = reader().read_error(error)

    assert step.outcome is Outcome.ERROR
    assert step.error is error


# -- "succeeded" without a video ---------------------------------------------------------------------


@pytest.mark.parametrize("videos", [[], [{"video_url": ""}]], ids=["no-videos", "empty-url"])
def test_a_success_without_a_video_is_polled_again_then_an_error_naming_the_task(clock, videos):
    poll = reader()
    steps = [poll.read(parsed(SUCCEED, videos=videos)) for _ in range(EMPTY_SUCCESS_POLLS + 1)]

    assert [step.outcome for step in steps] == [Outcome.WAIT] * EMPTY_SUCCESS_POLLS + [Outcome.ERROR]
    assert all(step.warning for step in steps[:-1])
    assert KLING_TASK_ID in str(steps[-1].error)
    assert "no video URL" in str(steps[-1].error)


def test_a_success_whose_video_arrives_on_a_later_poll_is_done(clock):
    poll = reader()

    assert poll.read(parsed(SUCCEED, videos=[])).outcome is Outcome.WAIT
    assert poll.read(parsed(SUCCEED)).outcome is Outcome.DONE


# -- a refused key -----------------------------------------------------------------------------------


def test_a_refused_key_is_polled_once_more_after_reading_the_connection_again(clock):
    poll = reader()
    refused = KlingAuthError("key refused", http_status=403, reason="INVALID_API_KEY")

    first = poll.read_error(refused)
    second = poll.read_error(refused)

    assert (first.outcome, first.reconnect, first.delay) == (Outcome.WAIT, True, 0)
    assert second.outcome is Outcome.ERROR
    assert second.error is refused


def test_a_good_answer_between_two_refusals_allows_another_reconnect(clock):
    poll = reader()
    refused = KlingAuthError("key refused", http_status=403, reason="INVALID_API_KEY")

    poll.read_error(refused)
    poll.read(parsed(PROCESSING))

    assert poll.read_error(refused).outcome is Outcome.WAIT


def test_a_missing_connection_is_not_retried(clock):
    missing = KlingAuthError("connection 'kling_default' is not defined")

    assert reader().read_error(missing).outcome is Outcome.ERROR


# -- a line when something changes -------------------------------------------------------------------


def test_progress_is_logged_when_it_changes_and_every_interval_while_it_does_not(clock):
    poll = reader(progress_log_interval=300)
    lines = []
    for progress in (10, 10, 10, 20, 20):
        lines.append(poll.read(parsed(PROCESSING, progress=progress, eta=100)).info)
        clock.advance(60)
    clock.advance(300)
    lines.append(poll.read(parsed(PROCESSING, progress=20, eta=100)).info)
    lines.append(poll.read(parsed(SUCCEED)).info)

    logged = [line is not None for line in lines]
    assert logged == [True, False, False, True, False, True, True]
    assert lines[0] == "Kling task kt-1: status=TASK_STATUS_PROCESSING progress=10% eta=100s"


def test_a_status_change_is_logged_even_at_the_same_progress(clock):
    poll = reader()

    assert poll.read(parsed(QUEUED, progress=0)).info
    assert poll.read(parsed(PROCESSING, progress=0)).info


def test_errors_are_classes_callers_already_know(clock):
    # The callers raise step.error as it is: every one is a KlingError.
    step = reader(not_found_grace=0).read_error(task_not_found())

    assert isinstance(step.error, KlingError)
