"""State file: tasks, journal and the URL signing secret survive a restart (a second app on the same file)."""

from __future__ import annotations

import sqlite3

import pytest

from airflow_provider_kling.sandbox import SandboxSettings, create_app
from airflow_provider_kling.sandbox.store import MemoryStore, SqliteStore, TaskRecord
from airflow_provider_kling.sandbox.testing import asgi_client

SUBMIT = "/v3/async/kling-v3.0-std-t2v"


@pytest.fixture
def state_file(tmp_path):
    return tmp_path / "state" / "sandbox.db"


def make_app(state_file, sandbox_clock):
    return create_app(SandboxSettings(generation_seconds=10, state_file=state_file), clock=sandbox_clock)


async def test_in_flight_task_goes_on_after_a_restart(state_file, sandbox_clock):
    before = make_app(state_file, sandbox_clock)
    async with asgi_client(before) as client:
        task_id = (await client.post(SUBMIT, json={"prompt": "a fox"})).json()["task_id"]
        sandbox_clock.advance(3)
        assert (await client.get("/v3/async/task-result", params={"task_id": task_id})).json()["task"][
            "status"
        ] == "TASK_STATUS_PROCESSING"
    before.state.sandbox.store.close()

    sandbox_clock.advance(2)  # the sandbox is down for a while
    after = make_app(state_file, sandbox_clock)
    async with asgi_client(after) as client:
        resumed = (await client.get("/v3/async/task-result", params={"task_id": task_id})).json()
        sandbox_clock.advance(5)
        finished = (await client.get("/v3/async/task-result", params={"task_id": task_id})).json()
    assert resumed["task"]["status"] == "TASK_STATUS_PROCESSING"
    assert resumed["task"]["progress_percent"] == 44
    assert finished["task"]["status"] == "TASK_STATUS_SUCCEED"


async def test_journal_survives_a_restart(state_file, sandbox_clock):
    before = make_app(state_file, sandbox_clock)
    async with asgi_client(before) as client:
        task_id = (await client.post(SUBMIT, json={"prompt": "a fox"})).json()["task_id"]
    before.state.sandbox.store.close()
    after = make_app(state_file, sandbox_clock)
    async with asgi_client(after) as client:
        await client.get("/v3/async/task-result", params={"task_id": task_id})
        journal = (await client.get("/sandbox/journal", params={"task_id": task_id})).json()
        submits = (await client.get("/sandbox/journal", params={"kind": "submit", "method": "POST"})).json()
    assert [entry["kind"] for entry in journal] == ["submit", "poll"]
    assert len(submits) == 1


async def test_video_url_signed_before_a_restart_still_works(state_file, sandbox_clock):
    before = make_app(state_file, sandbox_clock)
    async with asgi_client(before) as client:
        task_id = (await client.post(SUBMIT, json={"prompt": "a fox [sandbox:seconds=0]"})).json()["task_id"]
        body = (await client.get("/v3/async/task-result", params={"task_id": task_id})).json()
    before.state.sandbox.store.close()
    after = make_app(state_file, sandbox_clock)
    async with asgi_client(after) as client:
        response = await client.get(body["videos"][0]["video_url"])
    assert response.status_code == 200


async def test_two_apps_on_one_file_see_each_others_tasks_after_reopening(state_file, sandbox_clock):
    first = make_app(state_file, sandbox_clock)
    async with asgi_client(first) as client:
        await client.post(SUBMIT, json={"prompt": "a fox [sandbox:seconds=20]"})
    second = make_app(state_file, sandbox_clock)
    async with asgi_client(second) as client:
        [task] = (await client.get("/sandbox/tasks")).json()
        health = (await client.get("/sandbox/health")).json()
    assert task["markers"] == {"seconds": "20"}
    assert health["tasks"] == 1
    assert health["state_file"] == str(state_file)


async def test_cleared_journal_and_tasks_stay_cleared_after_a_restart(state_file, sandbox_clock):
    before = make_app(state_file, sandbox_clock)
    async with asgi_client(before) as client:
        await client.post(SUBMIT, json={"prompt": "a fox"})
        await client.delete("/sandbox/journal")
        await client.delete("/sandbox/tasks")
    before.state.sandbox.store.close()
    after = make_app(state_file, sandbox_clock)
    async with asgi_client(after) as client:
        assert (await client.get("/sandbox/journal")).json() == []
        assert (await client.get("/sandbox/tasks")).json() == []


async def test_without_a_state_file_nothing_survives(sandbox_clock):
    async with asgi_client(create_app(SandboxSettings(), clock=sandbox_clock)) as client:
        task_id = (await client.post(SUBMIT, json={"prompt": "a fox"})).json()["task_id"]
    async with asgi_client(create_app(SandboxSettings(), clock=sandbox_clock)) as client:
        response = await client.get("/v3/async/task-result", params={"task_id": task_id})
    assert response.status_code == 404


def test_state_file_uses_write_ahead_logging(state_file):
    SqliteStore(state_file).close()
    with sqlite3.connect(state_file) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_task_record_round_trips_through_json():
    task = TaskRecord(
        task_id="t",
        model="m",
        created_at=1.0,
        started_at=2.0,
        completes_at=3.0,
        succeeds=False,
        reason="R",
        seed=7,
        url_ttl=2,
        empty_extra=True,
        markers={"fail": "R"},
    )
    assert TaskRecord.from_json(task.to_json()) == task


def test_memory_store_is_the_default():
    app = create_app(SandboxSettings())
    assert type(app.state.sandbox.store) is MemoryStore
