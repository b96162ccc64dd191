"""The tests' fake clock is the provider's clock: reads and waits through ``airflow_provider_kling.clock``."""

from __future__ import annotations

from airflow_provider_kling import clock


def test_the_provider_reads_the_fake_time(fake_clock):
    assert clock.now() == fake_clock.now
    assert clock.utcnow().timestamp() == fake_clock.now


def test_a_blocking_wait_moves_the_fake_clock_at_once(fake_clock):
    start = fake_clock.now

    clock.sleep(30)

    assert fake_clock.now == start + 30
    assert fake_clock.sleeps == [30]


async def test_an_async_wait_moves_the_fake_clock_at_once(fake_clock):
    start = fake_clock.now

    await clock.asleep(45)

    assert fake_clock.now == start + 45
    assert fake_clock.sleeps == [45]
