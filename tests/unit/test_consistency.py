"""A new task that is not visible yet, a success without a video, a rotated key, Airflow's own settings.

Every path that waits (the trigger, the sync wait, the sensor) reads polls the same way; these tests
drive each one against the mocked vendor with the fake clock.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pendulum
import pytest
from _fakes import (
    PROCESSING,
    RESULT_PATH,
    SUCCEED,
    VIDEO_URL,
    FakeClock,
    make_context,
    mock_api,
    submit_path,
    task_result,
    use_fake_connection,
)
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_kling import _task_support
from airflow_provider_kling._compat import DURABLE_EXECUTION_SUPPORTED
from airflow_provider_kling._task_support import deferrable_setting, resolve_deferrable
from airflow_provider_kling.exceptions import KlingError, KlingNotFoundError
from airflow_provider_kling.hooks._shared_clients import aclose_shared_clients
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.operators.kling import STATE_SUBMISSION, KlingTextToVideoOperator
from airflow_provider_kling.sensors.kling import KlingTaskSensor
from airflow_provider_kling.triggers.kling import KlingTaskTrigger

KLING_TASK_ID = "kt-1"
MODEL = "kling-v3.0-std-t2v"
NOT_FOUND = {"code": 404, "reason": "TASK_NOT_FOUND", "message": "task not found"}


@pytest.fixture(autouse=True)
def _connection(monkeypatch):
    use_fake_connection(monkeypatch)


pytestmark = pytest.mark.usefixtures("clock")


@pytest.fixture(autouse=True)
async def _close_shared_clients():
    yield
    await aclose_shared_clients()


@pytest.fixture
def api():
    with mock_api() as router:
        yield router


@pytest.fixture
def result_route(api):
    return api.get(RESULT_PATH, params={"task_id": KLING_TASK_ID})


def not_found() -> httpx.Response:
    return httpx.Response(404, json=NOT_FOUND)


def answer(status: str, **kwargs: Any) -> httpx.Response:
    return httpx.Response(200, json=task_result(status, **kwargs))


async def run_trigger(trigger: KlingTaskTrigger) -> dict[str, Any]:
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    return events[0].payload


def trigger(clock: FakeClock, **kwargs: Any) -> KlingTaskTrigger:
    options: dict[str, Any] = {
        "kling_task_id": KLING_TASK_ID,
        "end_time": clock.now + 3600,
        "poll_interval": 10,
        "submitted_at": clock.now,
        **kwargs,
    }
    return KlingTaskTrigger(**options)


# -- the trigger -------------------------------------------------------------------------------------


async def test_the_trigger_waits_out_a_new_task_that_is_not_visible_yet(clock, result_route, captured_logs):
    result_route.side_effect = [not_found(), not_found(), answer(SUCCEED)]

    payload = await asyncio.wait_for(run_trigger(trigger(clock)), 5)

    assert payload["status"] == "success"
    assert result_route.call_count == 3
    assert len(captured_logs.messages(containing="not visible yet")) == 1  # logged once, as such


async def test_a_restarted_triggerer_keeps_the_submit_time_and_so_the_window(clock, result_route):
    result_route.side_effect = [not_found()]
    original = trigger(clock, submitted_at=clock.now - 600, not_found_grace=120)
    _classpath, kwargs = original.serialize()
    rebuilt = KlingTaskTrigger(**kwargs)

    payload = await asyncio.wait_for(run_trigger(rebuilt), 5)

    assert kwargs["submitted_at"] == clock.now - 600
    assert payload["status"] == "error"
    assert payload["error_type"] == "KlingNotFoundError"
    assert "600 s after it was submitted" in payload["message"]
    assert result_route.call_count == 1


async def test_api_not_found_fails_the_trigger_at_once(clock, result_route):
    result_route.side_effect = [httpx.Response(404, json={"code": 404, "reason": "API_NOT_FOUND", "message": "?"})]

    payload = await asyncio.wait_for(run_trigger(trigger(clock)), 5)

    assert payload["status"] == "error"
    assert payload["reason"] == "API_NOT_FOUND"
    assert result_route.call_count == 1


async def test_a_success_without_a_video_is_polled_again_by_the_trigger(clock, result_route):
    result_route.side_effect = [answer(SUCCEED, videos=[]), answer(SUCCEED)]

    payload = await asyncio.wait_for(run_trigger(trigger(clock)), 5)

    assert payload["status"] == "success"
    assert payload["result"]["videos"][0]["video_url"] == VIDEO_URL


async def test_a_success_that_never_gets_a_video_is_an_error_naming_the_task(clock, result_route):
    result_route.respond(200, json=task_result(SUCCEED, videos=[]))

    payload = await asyncio.wait_for(run_trigger(trigger(clock)), 5)

    assert payload["status"] == "error"
    assert KLING_TASK_ID in payload["message"]
    assert "no video URL" in payload["message"]


async def test_a_rotated_key_costs_the_trigger_one_refused_poll(clock, result_route):
    refused = httpx.Response(403, json={"code": 403, "reason": "INVALID_API_KEY", "message": "key refused"})
    result_route.side_effect = [refused, answer(SUCCEED)]

    payload = await asyncio.wait_for(run_trigger(trigger(clock)), 5)

    assert payload["status"] == "success"
    assert result_route.call_count == 2


async def test_the_trigger_logs_progress_only_when_it_changes(clock, result_route, captured_logs):
    same = answer(PROCESSING, progress=50, eta=5)
    result_route.side_effect = [same, same, same, answer(PROCESSING, progress=60, eta=5), answer(SUCCEED)]

    await asyncio.wait_for(run_trigger(trigger(clock)), 5)

    lines = captured_logs.messages(containing="status=")
    assert [line.split("progress=")[1].split()[0] for line in lines] == ["50%", "60%", "?"]  # "?": the success


# -- the sync wait -----------------------------------------------------------------------------------


def test_the_sync_wait_waits_out_a_new_task_that_is_not_visible_yet(clock, result_route):
    result_route.side_effect = [not_found(), answer(SUCCEED)]

    result = KlingHook().wait_for_task(KLING_TASK_ID, poll_interval=10, timeout=600, submitted_at=clock.now)

    assert result.videos[0].video_url == VIDEO_URL
    assert clock.sleeps[0] == 2  # the grace's first, short retry


def test_the_sync_wait_fails_after_the_window_naming_the_task(clock, result_route):
    result_route.mock(return_value=not_found())

    with pytest.raises(KlingNotFoundError) as caught:
        KlingHook().wait_for_task(
            KLING_TASK_ID, poll_interval=10, timeout=600, submitted_at=clock.now, not_found_grace=30
        )

    assert "kt-1" in str(caught.value)
    assert "30 s grace window" in str(caught.value)


def test_the_sync_wait_never_returns_a_success_without_a_video(clock, result_route):
    result_route.respond(200, json=task_result(SUCCEED, videos=[]))

    with pytest.raises(KlingError, match="no video URL"):
        KlingHook().wait_for_task(KLING_TASK_ID, poll_interval=10, timeout=600)


def test_the_sync_wait_reads_the_connection_again_after_a_refused_key(monkeypatch, clock, result_route):
    refused = httpx.Response(403, json={"code": 403, "reason": "INVALID_API_KEY", "message": "key refused"})
    result_route.side_effect = [refused, answer(SUCCEED)]
    hook = KlingHook()
    hook.settings  # noqa: B018 - read once, as a long wait would have
    reads = []
    original = KlingHook.get_connection

    def counting(conn_id: str) -> Any:
        reads.append(conn_id)
        return original(conn_id)

    monkeypatch.setattr(KlingHook, "get_connection", staticmethod(counting))

    hook.wait_for_task(KLING_TASK_ID, poll_interval=10, timeout=600)

    assert reads == ["kling_default"]


# -- the sensor --------------------------------------------------------------------------------------


def test_the_sensor_waits_out_a_task_not_found_from_its_first_poll(clock, result_route):
    result_route.side_effect = [not_found(), answer(SUCCEED)]
    sensor = KlingTaskSensor(task_id="wait", kling_task_id=KLING_TASK_ID, deferrable=False, not_found_grace=60)
    context = make_context()

    assert sensor.poke(context) is False
    done = sensor.poke(context)

    assert done.xcom_value["videos"][0]["url"] == VIDEO_URL  # type: ignore[union-attr]


def test_the_sensor_polls_a_success_without_a_video_again(clock, result_route):
    result_route.side_effect = [answer(SUCCEED, videos=[]), answer(SUCCEED)]
    sensor = KlingTaskSensor(task_id="wait", kling_task_id=KLING_TASK_ID, deferrable=False)
    context = make_context()

    assert sensor.poke(context) is False
    assert sensor.poke(context).is_done  # type: ignore[union-attr]


# -- the operator: submit time, execution_timeout ----------------------------------------------------


@pytest.fixture
def submit_route(api):
    return api.post(submit_path(MODEL)).respond(200, json={"task_id": KLING_TASK_ID})


def operator(**kwargs: Any) -> KlingTextToVideoOperator:
    return KlingTextToVideoOperator(task_id="generate", prompt="a fox in snow", **kwargs)


def retry_context(*, submitted_at: float) -> dict[str, Any]:
    """The context of a retry whose earlier try stored ``KLING_TASK_ID``, submitted at ``submitted_at``."""
    submitted = pendulum.from_timestamp(submitted_at, tz="UTC").isoformat()
    submission = {"kling_task_id": KLING_TASK_ID, "submitted_at": submitted}
    return make_context({"kling_task_id": KLING_TASK_ID, STATE_SUBMISSION: submission})


@pytest.mark.skipif(not DURABLE_EXECUTION_SUPPORTED, reason="the task state store is Airflow 3.3+'s")
def test_the_submit_time_is_stored_with_the_id_and_travels_to_the_trigger(clock, submit_route):
    context = make_context()

    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)

    stored = context["task_state_store"].get(STATE_SUBMISSION)
    assert stored["kling_task_id"] == KLING_TASK_ID
    assert pendulum.parse(stored["submitted_at"]).timestamp() == clock.now
    assert info.value.trigger.serialize()[1]["submitted_at"] == clock.now


@pytest.mark.skipif(not DURABLE_EXECUTION_SUPPORTED, reason="the task state store is Airflow 3.3+'s")
def test_a_retry_within_the_window_reattaches_to_a_task_not_visible_yet_instead_of_paying(
    clock, submit_route, result_route
):
    result_route.side_effect = [not_found()]
    context = retry_context(submitted_at=clock.now - 30)

    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)

    assert not submit_route.called
    assert info.value.trigger.serialize()[1]["submitted_at"] == clock.now - 30


@pytest.mark.skipif(not DURABLE_EXECUTION_SUPPORTED, reason="the task state store is Airflow 3.3+'s")
def test_a_retry_after_the_window_counts_a_task_not_found_as_gone(clock, api, result_route):
    api.post(submit_path(MODEL)).respond(200, json={"task_id": "kt-new"})
    result_route.side_effect = [not_found()]
    context = retry_context(submitted_at=clock.now - 600)

    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)

    assert info.value.trigger.kling_task_id == "kt-new"


def test_execution_timeout_bounds_the_trigger_deadline(clock, submit_route):
    context = make_context()
    context["ti"].start_date = pendulum.from_timestamp(clock.now - 100, tz="UTC")

    with pytest.raises(TaskDeferred) as info:
        operator(timeout=timedelta(hours=1), execution_timeout=timedelta(minutes=10)).execute(context)

    assert info.value.trigger.end_time == clock.now + 500  # what is left of the 600 s
    assert info.value.timeout == timedelta(seconds=500) + _task_support.DEFER_TIMEOUT_MARGIN


def test_a_shorter_timeout_wins_over_execution_timeout(clock, submit_route):
    context = make_context()

    with pytest.raises(TaskDeferred) as info:
        operator(timeout=120, execution_timeout=timedelta(hours=1)).execute(context)

    assert info.value.trigger.end_time == clock.now + 120


def test_the_sensor_deadline_is_bounded_by_execution_timeout_too(clock, result_route):
    result_route.side_effect = [answer(PROCESSING)]
    context = make_context()
    context["ti"].start_date = pendulum.from_timestamp(clock.now - 50, tz="UTC")
    sensor = KlingTaskSensor(
        task_id="wait", kling_task_id=KLING_TASK_ID, timeout=3600, execution_timeout=timedelta(seconds=300)
    )

    with pytest.raises(TaskDeferred) as info:
        sensor.execute(context)

    assert info.value.trigger.end_time == clock.now + 250


# -- [operators] default_deferrable ------------------------------------------------------------------


@pytest.fixture
def no_deferrable_setting(monkeypatch):
    for suffix in ("", "_CMD", "_SECRET"):
        monkeypatch.delenv(f"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE{suffix}", raising=False)


def test_airflows_shipped_default_does_not_flip_ours(no_deferrable_setting):
    assert deferrable_setting() is None
    assert resolve_deferrable(None) is True
    assert operator().deferrable is True
    assert KlingTaskSensor(task_id="wait", kling_task_id=KLING_TASK_ID).deferrable is True


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("False", False), ("true", True)])
def test_an_explicit_environment_setting_becomes_our_default(monkeypatch, no_deferrable_setting, value, expected):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", value)

    assert operator().deferrable is expected
    assert KlingTaskSensor(task_id="wait", kling_task_id=KLING_TASK_ID).deferrable is expected


@pytest.mark.parametrize(("value", "expected"), [("False", None), ("True", True)])
def test_an_airflow_cfg_value_counts_only_when_it_is_not_the_shipped_default(no_deferrable_setting, value, expected):
    # `airflow db migrate` writes every default into airflow.cfg: "false" there is what Airflow wrote.
    from airflow.providers.common.compat.sdk import conf

    had_section = conf.has_section("operators")
    if not had_section:
        conf.add_section("operators")
    conf.set("operators", "default_deferrable", value)
    try:
        assert deferrable_setting() is expected
        assert operator().deferrable is True
    finally:
        conf.remove_option("operators", "default_deferrable")
        if not had_section:
            conf.remove_section("operators")

    assert deferrable_setting() is None


def test_an_explicit_argument_wins_over_the_setting(monkeypatch, no_deferrable_setting):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")

    assert operator(deferrable=True).deferrable is True


def test_without_a_triggerer_setting_the_operator_waits_on_the_worker(
    monkeypatch, no_deferrable_setting, clock, submit_route, result_route
):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    result_route.side_effect = [answer(SUCCEED)]

    summary = operator().execute(make_context())

    assert summary["videos"][0]["url"] == VIDEO_URL
