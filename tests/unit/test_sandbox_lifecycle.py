"""Task life in the sandbox: QUEUED -> PROCESSING -> SUCCEED/FAILED, computed from a controllable clock."""

from __future__ import annotations

import asyncio

import pytest
from _fakes import polls_after

from airflow_provider_kling.models import TaskResult, TaskStatus
from airflow_provider_kling.sandbox import SandboxSettings, create_app
from airflow_provider_kling.sandbox.testing import FakeClock, asgi_client, example_body

START = 1_700_000_000.0


@pytest.fixture
def sandbox_clock():
    return FakeClock(START)


@pytest.fixture
def app(sandbox_app):
    # 10 s of generation, the first 1 s queued.
    return sandbox_app(generation_seconds=10, queue_fraction=0.1)


async def submit(client, prompt: str = "a red fox", model: str = "kling-v3.0-std-t2v") -> str:
    response = await client.post(f"/v3/async/{model}", json=example_body(model, prompt))
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


async def poll(client, task_id: str) -> dict:
    response = await client.get("/v3/async/task-result", params={"task_id": task_id})
    assert response.status_code == 200, response.text
    return response.json()


async def test_new_task_is_queued_with_empty_timings(app):
    async with asgi_client(app) as client:
        body = await poll(client, await submit(client))
    assert body["task"]["status"] == "TASK_STATUS_QUEUED"
    assert body["task"]["progress_percent"] == 0
    assert body["task"]["eta"] == 10
    assert body["task"]["reason"] == ""
    assert body["extra"]["seed"] == ""
    assert body["extra"]["debug_info"] == {
        "request_info": "",
        "submit_time_ms": "1700000000000",
        "execute_time_ms": "",
        "complete_time_ms": "",
    }
    assert body["videos"] == []
    assert body["images"] == []
    assert body["audios"] == []


async def test_task_moves_to_processing_after_the_queue_phase(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id = await submit(client)
        still_queued, processing = await polls_after(client, sandbox_clock, task_id, 0.99, 0.02)
    assert still_queued["task"]["status"] == "TASK_STATUS_QUEUED"
    assert processing["task"]["status"] == "TASK_STATUS_PROCESSING"
    assert processing["extra"]["debug_info"]["execute_time_ms"] == "1700000001000"
    assert processing["extra"]["seed"].isdigit()
    assert processing["extra"]["debug_info"]["complete_time_ms"] == ""
    assert processing["videos"] == []


async def test_progress_rises_and_eta_falls_while_processing(app, sandbox_clock):
    samples = []
    async with asgi_client(app) as client:
        task_id = await submit(client)
        for _ in range(8):
            sandbox_clock.advance(1.1)
            task = (await poll(client, task_id))["task"]
            samples.append((task["status"], task["progress_percent"], task["eta"]))
    assert {status for status, _, _ in samples} == {"TASK_STATUS_PROCESSING"}
    progress = [value for _, value, _ in samples]
    etas = [value for _, _, value in samples]
    assert progress == sorted(progress)
    assert len(set(progress)) == len(progress)
    assert all(0 < value < 100 for value in progress)
    assert etas == sorted(etas, reverse=True)
    assert etas[-1] < etas[0]
    assert all(value >= 1 for value in etas)


async def test_task_succeeds_at_the_end_of_the_generation_time(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id = await submit(client)
        almost, done = await polls_after(client, sandbox_clock, task_id, 9.99, 0.01)
    assert almost["task"]["status"] == "TASK_STATUS_PROCESSING"
    assert done["task"] == {
        "task_id": task_id,
        "task_type": "KLING_V3_T2V",
        "status": "TASK_STATUS_SUCCEED",
        "reason": "",
        "eta": 0,
        "progress_percent": 100,
    }
    assert done["extra"]["debug_info"]["complete_time_ms"] == "1700000010000"
    [video] = done["videos"]
    assert set(video) == {"video_url", "video_url_ttl", "video_type", "nsfw_detection_result"}
    assert video["video_url_ttl"] == "3600"
    assert video["video_type"] == "mp4"
    assert video["nsfw_detection_result"] is None
    assert video["video_url"].startswith(f"http://sandbox.test/sandbox/media/{task_id}.mp4?expires=")


async def test_result_uses_the_vendors_string_typed_quirks(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id = await submit(client)
        sandbox_clock.advance(10)
        body = await poll(client, task_id)
    assert isinstance(body["extra"]["seed"], str)
    assert all(isinstance(value, str) for value in body["extra"]["debug_info"].values())
    assert isinstance(body["videos"][0]["video_url_ttl"], str)
    assert isinstance(body["task"]["eta"], int)
    assert isinstance(body["task"]["progress_percent"], int)
    assert body["extra"]["enable_nsfw_detection"] is False


async def test_result_parses_with_the_providers_model(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id = await submit(client)
        queued = TaskResult.model_validate(await poll(client, task_id))
        sandbox_clock.advance(10)
        done = TaskResult.model_validate(await poll(client, task_id))
    assert queued.task.state is TaskStatus.QUEUED
    assert queued.extra.seed is None
    assert done.task.state is TaskStatus.SUCCEED
    assert done.extra.seed is not None
    assert done.extra.debug_info.complete_time_ms == 1_700_000_010_000
    assert done.videos[0].video_url_ttl == 3600
    assert done.videos[0].model_extra == {"nsfw_detection_result": None}


async def test_fail_rate_one_ends_failed_with_a_reason_and_no_video(sandbox_clock):
    app = create_app(SandboxSettings(generation_seconds=4, fail_rate=1.0), clock=sandbox_clock)
    async with asgi_client(app) as client:
        task_id = await submit(client)
        sandbox_clock.advance(1)
        in_flight = await poll(client, task_id)
        sandbox_clock.advance(3)
        body = await poll(client, task_id)
    assert in_flight["task"]["reason"] == ""
    assert body["task"]["status"] == "TASK_STATUS_FAILED"
    assert body["task"]["reason"].startswith("TASK_FAILED")
    assert body["task"]["eta"] == 0
    assert body["videos"] == []
    assert body["extra"]["debug_info"]["complete_time_ms"] == "1700000004000"


@pytest.mark.parametrize(
    ("model", "task_type"),
    [
        ("kling-v3.0-std-t2v", "KLING_V3_T2V"),
        ("kling-v3.0-pro-t2v", "KLING_V3_T2V"),
        ("kling-v3.0-4k-t2v", "KLING_V3_T2V"),
        ("kling-v3.0-std-i2v", "KLING_V3_I2V"),
        ("kling-v3.0-pro-i2v", "KLING_V3_I2V"),
        ("kling-v3.0-4k-i2v", "KLING_V3_I2V"),
        ("kling-v3.0-motion-control", "KLING_V3_MOTION_CONTROL"),
    ],
)
async def test_task_type_names_the_kind_of_generation(app, model, task_type):
    async with asgi_client(app) as client:
        body = await poll(client, await submit(client, model=model))
    assert body["task"]["task_type"] == task_type


async def test_unknown_task_is_task_not_found(app):
    async with asgi_client(app) as client:
        response = await client.get("/v3/async/task-result", params={"task_id": "no-such-task"})
    assert response.status_code == 404
    assert response.json() == {
        "code": 404,
        "reason": "TASK_NOT_FOUND",
        "message": "task no-such-task not found",
        "metadata": {},
    }


@pytest.mark.parametrize("params", [{}, {"task_id": ""}])
async def test_poll_without_task_id_is_invalid_request_body(app, params):
    async with asgi_client(app) as client:
        response = await client.get("/v3/async/task-result", params=params)
    assert response.status_code == 400
    assert response.json()["reason"] == "INVALID_REQUEST_BODY"


async def test_generation_seconds_change_applies_to_new_tasks_only(app, sandbox_clock):
    async with asgi_client(app) as client:
        first = await submit(client)
        await client.post("/sandbox/config", json={"generation_seconds": 100})
        second = await submit(client)
        sandbox_clock.advance(10)
        assert (await poll(client, first))["task"]["status"] == "TASK_STATUS_SUCCEED"
        assert (await poll(client, second))["task"]["status"] == "TASK_STATUS_PROCESSING"
        sandbox_clock.advance(90)
        assert (await poll(client, second))["task"]["status"] == "TASK_STATUS_SUCCEED"


async def test_tasks_need_no_background_work(app, sandbox_clock):
    background_before = len(asyncio.all_tasks())
    async with asgi_client(app) as client:
        ids = [await submit(client, f"task {index}") for index in range(200)]
    assert len(asyncio.all_tasks()) == background_before
    assert len(app.state.sandbox.store) == 200
    sandbox_clock.advance(10)
    async with asgi_client(app) as client:
        statuses = {(await poll(client, task_id))["task"]["status"] for task_id in ids[::20]}
    assert statuses == {"TASK_STATUS_SUCCEED"}
