"""benchmarks/distributed.py's arithmetic: the poll rate in 10-second windows."""

from __future__ import annotations

from benchmarks.distributed import windows


def test_steady_rate_reads_the_same_in_every_window():
    times = [n / 5 for n in range(5 * 60)]  # 5 polls a second for a minute
    rates = windows(times)
    assert rates
    assert max(rates) == min(rates) == 5.0


def test_a_burst_shows_in_the_windows_that_hold_it():
    times = sorted([n / 2 for n in range(120)] + [30 + n / 100 for n in range(50)])
    rates = windows(times)
    assert max(rates) == (20 + 50) / 10
    assert min(rates) == 2.0


def test_less_than_one_window_of_polls_gives_no_rate():
    assert windows([0.0, 3.0, 9.0]) == []
    assert windows([]) == []
