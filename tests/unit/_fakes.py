"""The unit tests' one set of builders and fakes (``conftest.py`` turns them into fixtures).

* :func:`use_fake_connection` puts a ``kling`` connection in the environment (JSON form); the
  ``kling_conn`` fixture wraps it.
* :func:`mock_api` mocks the vendor at :data:`BASE_URL` with respx (``kling_api`` / ``api``).
* :func:`task_result` builds a Task Result body as the vendor sends it (``result_body``);
  :func:`task_event` a trigger event payload.
* :class:`FakeTI` and :class:`FakeStore` are the ``ti`` and ``task_state_store`` of a task context;
  both write to one :class:`Journal`, so a test can check the order of XCom pushes and store writes.
* :class:`FakeClock` is the provider's clock in tests (``fake_clock`` / ``clock``): it moves only when
  the code under test waits or a test advances it. :func:`installed` swaps it in.
* :func:`draw_image` draws a real image in memory (``make_image``).
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import respx
from PIL import Image

from airflow_provider_kling import clock as provider_clock
from airflow_provider_kling.models import TaskEvent, TaskResult

BASE_URL = "http://127.0.0.1:8089"
API_KEY = "fake-key-123"
CONN_ID = "kling_default"
RESULT_PATH = "/v3/async/task-result"
VIDEO_URL = "https://cdn.example.com/out/kt-1.mp4?X-Amz-Signature=abc"
KLING_TASK_ID = "kt-1"
T2V = "kling-v3.0-std-t2v"

PROCESSING = "TASK_STATUS_PROCESSING"
QUEUED = "TASK_STATUS_QUEUED"
SUCCEED = "TASK_STATUS_SUCCEED"
FAILED = "TASK_STATUS_FAILED"

#: ``asyncio.sleep`` as it was before any fake clock replaced it: for letting other tasks run.
real_async_sleep = asyncio.sleep


def submit_path(model: str) -> str:
    """The submit endpoint of ``model``."""
    return f"/v3/async/{model}"


def use_fake_connection(
    monkeypatch: pytest.MonkeyPatch,
    conn_id: str = CONN_ID,
    *,
    host: str | None = BASE_URL,
    password: str | None = API_KEY,
    port: int | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Define ``conn_id`` through ``AIRFLOW_CONN_<ID>`` (the only way without a metadata DB); returns it.

    Pass ``host=None`` or ``password=None`` to leave the field out.
    """
    fields: dict[str, Any] = {"conn_type": "kling"}
    if host is not None:
        fields["host"] = host
    if password is not None:
        fields["password"] = password
    if port is not None:
        fields["port"] = port
    # Many polls in a few real milliseconds: keep the poll-rate limiter out of the way by default.
    fields["extra"] = {"max_polls_per_second": 10_000} if extra is None else extra
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
    return conn_id


@contextmanager
def mock_api() -> Iterator[respx.MockRouter]:
    """Mock the vendor; any request to an unmocked route fails the test."""
    with respx.mock(base_url=BASE_URL, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


#: The example answer of the vendor's reference page, verbatim in shape: every
#: :func:`task_result` is a copy of it with its own values.
DOCUMENTED_ANSWER = {
    "task": {
        "task_id": "kt-1",
        "task_type": "KLING_V3_VIDEO",
        "status": "TASK_STATUS_PROCESSING",
        "reason": "",
        "eta": 42,
        "progress_percent": 35,
    },
    "extra": {
        "seed": "158881667",
        "enable_nsfw_detection": False,
        "debug_info": {
            "request_info": "",
            "submit_time_ms": "1731000000000",
            "execute_time_ms": "",
            "complete_time_ms": "",
        },
    },
    "videos": [
        {"video_url": "https://cdn.example.com/v.mp4?X-Amz-Sig=1", "video_url_ttl": "3600", "video_type": "mp4"}
    ],
    "images": [],
    "audios": [],
}


def task_result(
    status: str = PROCESSING,
    *,
    kling_task_id: str = KLING_TASK_ID,
    reason: str = "",
    eta: int | str | None = None,
    progress: int | str | None = None,
    videos: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Task Result body as the vendor sends it (numbers as strings where it does so)."""
    if videos is None:
        videos = (
            # Only the documented keys: the tests of extra keys (nsfw_detection_result) add them themselves.
            [{"video_url": VIDEO_URL, "video_url_ttl": "3600", "video_type": "mp4"}] if status == SUCCEED else []
        )
    body = copy.deepcopy(DOCUMENTED_ANSWER)
    body["task"].update(task_id=kling_task_id, status=status, reason=reason, eta=eta, progress_percent=progress)
    body["extra"]["debug_info"].update(
        execute_time_ms="1731000001000" if status != QUEUED else "",
        complete_time_ms="1731000090000" if status in (SUCCEED, FAILED) else "",
    )
    body["videos"] = videos
    return body


def result_summary(model: str) -> dict[str, Any]:
    """The summary an operator returns for the succeeded :func:`task_result` of ``model``."""
    return {
        "kling_task_id": KLING_TASK_ID,
        "model": model,
        "status": SUCCEED,
        "reason": None,
        "videos": [{"url": VIDEO_URL, "ttl": 3600, "type": "mp4"}],
        "seed": 158881667,
        "submit_time_ms": 1731000000000,
        "execute_time_ms": 1731000001000,
        "complete_time_ms": 1731000090000,
    }


def task_event(
    status: str, *, kling_task_id: str = KLING_TASK_ID, result: dict[str, Any] | None = None
) -> dict[str, Any]:
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
        """Keep the value and note the push in the journal."""
        self.xcoms[key] = value
        self.journal.append(("xcom_push", key, value))

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **_: Any) -> Any:
        """What this task instance pushed under ``key``."""
        return self.xcoms.get(key)


class FakeStore:
    """``context["task_state_store"]``: get/set in a dict, writes recorded in the journal."""

    def __init__(self, values: dict[str, Any] | None = None, journal: Journal | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})
        self.journal = journal if journal is not None else Journal()

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value of ``key``."""
        return self.values.get(key, default)

    def set(self, key: str, value: Any, retention: Any = None) -> None:
        """Store ``value`` and note the write in the journal."""
        self.values[key] = value
        self.journal.append(("store.set", key, value))


def make_context(store_values: dict[str, Any] | None = None) -> dict[str, Any]:
    """A task context with a :class:`FakeTI` and a :class:`FakeStore` sharing one journal."""
    journal = Journal()
    return {"ti": FakeTI(journal), "task_state_store": FakeStore(store_values, journal)}


class FakeClock:
    """A :class:`airflow_provider_kling.clock.Clock` that only moves when the code waits or a test advances it.

    ``now`` is the current epoch time; ``sleeps`` lists every wait asked for, in order.
    """

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        """The fake epoch seconds."""
        return self.now

    def monotonic(self) -> float:
        """The same reading: nothing here runs long enough for the two to differ."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on without anyone waiting."""
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock by it, at once."""
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)

    async def asleep(self, seconds: float, result: Any = None) -> Any:
        """Record the wait and move the clock by it; still lets other tasks run (like ``asyncio.sleep``)."""
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await real_async_sleep(0)
        return result


@contextmanager
def installed(fake: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """Make ``fake`` the provider's clock (:func:`airflow_provider_kling.clock.use_clock`) while the block runs.

    Modules that still read ``time`` directly and tenacity's own waits are patched as well. Those patches
    go once every provider module reads the clock through ``airflow_provider_kling.clock`` (then a module
    that forgets to cannot silently escape the fake); until then both paths see the same fake.
    """
    import airflow_provider_kling.hooks.kling as hook_module
    import airflow_provider_kling.operators.kling as operator_module
    import airflow_provider_kling.sensors.kling as sensor_module
    import airflow_provider_kling.triggers.kling as trigger_module

    for module in (hook_module, operator_module, sensor_module, trigger_module):
        if getattr(module, "time", None) is time:
            monkeypatch.setattr(module, "time", fake)
    monkeypatch.setattr(time, "sleep", fake.sleep)  # tenacity's and BaseSensorOperator's waits
    monkeypatch.setattr(asyncio, "sleep", fake.asleep)  # the trigger's and tenacity's async waits
    with provider_clock.use_clock(fake):
        yield fake


def draw_image(width: int = 640, height: int = 360, fmt: str = "PNG") -> bytes:
    """The bytes of a real ``fmt`` image of ``width`` x ``height`` drawn in memory."""
    mode = "RGB" if fmt in ("JPEG", "WEBP") else "RGBA" if fmt == "PNG" else "P"
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color=1 if mode == "P" else (200, 80, 40)).save(buffer, fmt)
    return buffer.getvalue()


async def polls_after(client: Any, clock: Any, task_id: str, *steps: float) -> list[dict[str, Any]]:
    """Advance the sandbox's ``clock`` by each of ``steps`` in turn and poll ``task_id`` after each.

    The sandbox's Task Result answers (each a 200) at those moments, for the tests of a task's life.
    """
    answers = []
    for step in steps:
        clock.advance(step)
        response = await client.get("/v3/async/task-result", params={"task_id": task_id})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers
