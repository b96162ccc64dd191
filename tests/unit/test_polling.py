"""The poll schedule (eta-aware) and the progress line, shared by the trigger and the synchronous wait."""

from __future__ import annotations

import pytest

from airflow_provider_kling.models import TaskInfo
from airflow_provider_kling.polling import (
    DEFAULT_BACKOFF_FACTOR,
    ETA_FRACTION,
    WAKE_GRID,
    aligned_delay,
    default_max_poll_interval,
    describe_progress,
    next_poll_delay,
)


def processing(**kwargs: object) -> TaskInfo:
    return TaskInfo.model_validate({"status": "TASK_STATUS_PROCESSING", **kwargs})


def test_polls_every_poll_interval_without_an_eta():
    assert next_poll_delay(processing(), 10, 60) == 10


@pytest.mark.parametrize("eta", [0, -5])
def test_polls_every_poll_interval_when_the_eta_is_zero_or_negative(eta):
    assert next_poll_delay(processing(eta=eta), 10, 60) == 10


def test_polls_every_poll_interval_when_the_video_is_nearly_done():
    assert next_poll_delay(processing(eta=8), 10, 60) == 10


def test_waits_a_fraction_of_the_eta_in_between():
    assert ETA_FRACTION == 0.5
    assert next_poll_delay(processing(eta=50), 10, 60) == 25


def test_never_waits_longer_than_max_poll_interval():
    assert next_poll_delay(processing(eta=3600), 10, 60) == 60


def test_max_poll_interval_defaults_to_six_poll_intervals():
    assert DEFAULT_BACKOFF_FACTOR == 6
    assert default_max_poll_interval(5) == 30
    assert next_poll_delay(processing(eta=3600), 5) == 30
    assert next_poll_delay(processing(eta=3600), 5, None) == 30


def test_a_max_poll_interval_below_poll_interval_does_not_shorten_the_wait():
    assert next_poll_delay(processing(eta=3600), 10, 3) == 10


def test_an_eta_sent_as_a_string_counts():
    assert next_poll_delay(processing(eta="100"), 10, 60) == 50


def test_the_progress_line_shows_status_progress_and_eta():
    line = describe_progress("kt-1", processing(progress_percent=35, eta=42))

    assert line == "Kling task kt-1: status=TASK_STATUS_PROCESSING progress=35% eta=42s"


def test_the_progress_line_marks_unknown_values():
    line = describe_progress("kt-1", TaskInfo.model_validate({"status": "", "eta": "", "progress_percent": None}))

    assert line == "Kling task kt-1: status=? progress=? eta=?"


def test_a_zero_progress_is_shown_as_zero_not_unknown():
    line = describe_progress("kt-1", TaskInfo.model_validate({"status": "TASK_STATUS_SUCCEED", "progress_percent": 0}))

    assert "progress=0%" in line


@pytest.mark.parametrize(
    ("now", "delay", "expected"),
    [
        (1000.03, 5.0, 4.97),  # ends at 1005.0, not 1005.03
        (1000.07, 5.0, 5.03),  # to the nearest step: the average wait is unchanged
        (1000.0, 60.0, 60.0),  # already on the grid
        (1000.03, 0.5, 0.5),  # a short wait (a quick re-poll) is kept as it is
    ],
)
def test_aligned_delay_ends_a_wait_on_the_nearest_tenth_of_a_second(now, delay, expected):
    assert aligned_delay(now, delay) == pytest.approx(expected)


def test_aligned_delay_moves_a_wait_by_at_most_half_a_step():
    shifts = [aligned_delay(1000 + i / 1000, 5.0) - 5.0 for i in range(1000)]

    assert max(abs(shift) for shift in shifts) <= WAKE_GRID / 2 + 1e-9
    assert abs(sum(shifts) / len(shifts)) < 0.001
