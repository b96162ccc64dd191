"""Stand-ins for the unit tests of the trigger, operators and sensor (no Airflow DB, no real waiting).

* :func:`use_fake_connection` puts the ``kling_default`` connection in the environment (JSON form).
* :func:`mock_api` mocks the vendor at :data:`BASE_URL` with respx; :func:`task_result` builds answers.
* :class:`FakeTI` and :class:`FakeStore` are the ``ti`` and ``task_state_store`` of a task context;
  both write to one :class:`Journal`, so a test can check the order of XCom pushes and store writes.
* :class:`FakeClock` replaces ``time``/``asyncio.sleep`` where the provider reads the clock or waits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import respx

from airflow_provider_kling.models import TaskEvent, TaskResult

BASE_URL = "http://127.0.0.1:8089"
API_KEY = "fake-key-123"
CONN_ID = "kling_default"
RESULT_PATH = "/v3/async/task-result"
VIDEO_URL = "https://cdn.example.com/out/kt-1.mp4?X-Amz-Signature=abc"

PROCESSING = "TASK_STATUS_PROCESSING"
QUEUED = "TASK_STATUS_QUEUED"
SUCCEED = "TASK_STATUS_SUCCEED"
FAILED = "TASK_STATUS_FAILED"

_real_async_sleep = asyncio.sleep


def submit_path(model: str) -> str:
    """The submit endpoint of ``model``."""
    return f"/v3/async/{model}"


def use_fake_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str = CONN_ID) -> None:
    """Define ``conn_id`` through ``AIRFLOW_CONN_<ID>`` (the only way without a metadata DB)."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "kling",
                "host": BASE_URL,
                "password": API_KEY,
                # Many polls in a few real milliseconds: keep the per-connection rate limiter out of the way.
                "extra": {"max_polls_per_second": 10_000},
            }
        ),
    )


@contextmanager
def mock_api() -> Iterator[respx.MockRouter]:
    """Mock the vendor; any request to an unmocked route fails the test."""
    with respx.mock(base_url=BASE_URL, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


def task_result(
    status: str = PROCESSING,
    *,
    kling_task_id: str = "kt-1",
    reason: str = "",
    eta: int | str | None = None,
    progress: int | None = None,
    videos: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Task Result body as the vendor sends it (numbers as strings where it does so)."""
    if videos is None:
        videos = (
            [{"video_url": VIDEO_URL, "video_url_ttl": "3600", "video_type": "mp4", "nsfw_detection_result": None}]
            if status == SUCCEED
            else []
        )
    return {
        "task": {
            "task_id": kling_task_id,
            "task_type": "KLING_V3_VIDEO",
            "status": status,
            "reason": reason,
            "eta": eta,
            "progress_percent": progress,
        },
        "extra": {
            "seed": "158881667",
            "enable_nsfw_detection": False,
            "debug_info": {
                "request_info": "",
                "submit_time_ms": "1731000000000",
                "execute_time_ms": "1731000001000" if status != QUEUED else "",
                "complete_time_ms": "1731000090000" if status in (SUCCEED, FAILED) else "",
            },
        },
        "videos": videos,
        "images": [],
        "audios": [],
    }


def task_event(status: str, *, kling_task_id: str = "kt-1", result: dict[str, Any] | None = None) -> dict[str, Any]:
    """A trigger event payload, built the way the trigger builds it."""
    return TaskEvent(
        status=status,  # type: ignore[arg-type]
        kling_task_id=kling_task_id,
        message=f"{status} event",
        result=None if result is None else TaskResult.model_validate(result),
    ).to_payload()


class Journal(list):  # type: ignore[type-arg]
    """What happened to a task's XCom and state store, in order: ``(what, key, value)`` tuples."""


class FakeTI:
    """The bits of a RuntimeTaskInstance the provider and ResumableJobMixin touch."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal if journal is not None else Journal()
        self.xcoms: dict[str, Any] = {}
        self.task_id = "generate"
        self.dag_id = "kling_unit"
        self.run_id = "manual__unit"
        self.map_index = -1
        self.try_number = 1
        self.stats_tags: dict[str, str] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value
        self.journal.append(("xcom_push", key, value))

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get(key)


class FakeStore:
    """``context["task_state_store"]``: get/set in a dict, writes recorded in the journal."""

    def __init__(self, values: dict[str, Any] | None = None, journal: Journal | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})
        self.journal = journal if journal is not None else Journal()

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, retention: Any = None) -> None:
        self.values[key] = value
        self.journal.append(("store.set", key, value))


def make_context(store_values: dict[str, Any] | None = None) -> dict[str, Any]:
    """A task context with a :class:`FakeTI` and a :class:`FakeStore` sharing one journal."""
    journal = Journal()
    return {"ti": FakeTI(journal), "task_state_store": FakeStore(store_values, journal)}


class FakeClock:
    """A clock that only moves when the code under test sleeps (or a test advances it)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)

    async def asleep(self, seconds: float, result: Any = None) -> Any:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await _real_async_sleep(0)  # still let other tasks run
        return result


def install_fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Route every clock read and wait of the provider (and of tenacity's retries) to one FakeClock."""
    import time

    import airflow_provider_kling.clock as clock_module
    import airflow_provider_kling.hooks.kling as hook_module
    import airflow_provider_kling.operators.kling as operator_module
    import airflow_provider_kling.sensors.kling as sensor_module
    import airflow_provider_kling.triggers.kling as trigger_module

    clock = FakeClock()
    monkeypatch.setattr(clock_module, "_current", clock)  # clock.now()/sleep/asleep, tenacity's waits
    for module in (hook_module, operator_module, sensor_module, trigger_module):
        monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(time, "sleep", clock.sleep)  # tenacity's and BaseSensorOperator's waits
    monkeypatch.setattr(asyncio, "sleep", clock.asleep)  # the trigger's and tenacity's async waits
    return clock
