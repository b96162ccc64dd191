"""The sandbox's own endpoints: health, runtime config, journal, task list (and peak concurrency)."""

from __future__ import annotations

import pytest

from airflow_provider_kling.sandbox import SandboxSettings, create_app, peak_in_flight
from airflow_provider_kling.sandbox.settings import RUNTIME_FIELDS
from airflow_provider_kling.sandbox.testing import asgi_client

SUBMIT = "/v3/async/kling-v3.0-std-t2v"


@pytest.fixture
def app(sandbox_app):
    return sandbox_app(generation_seconds=10, seed=5)


async def submit(client, prompt: str = "a red fox") -> str:
    return (await client.post(SUBMIT, json={"prompt": prompt})).json()["task_id"]


async def test_health_answers_ok(app):
    async with asgi_client(app, api_key=None) as client:
        response = await client.get("/sandbox/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["tasks"] == 0
    assert body["state_file"] is None
    assert isinstance(body["pid"], int)


async def test_config_lists_every_runtime_setting(app):
    async with asgi_client(app) as client:
        config = (await client.get("/sandbox/config")).json()
    assert set(config) == RUNTIME_FIELDS
    assert config["generation_seconds"] == 10
    assert config["seed"] == 5
    assert config["chaos_scope"] == "poll"


async def test_post_config_changes_only_the_given_settings(app):
    async with asgi_client(app) as client:
        answer = await client.post("/sandbox/config", json={"rate_429": 0.25, "chaos_scope": "all"})
        config = (await client.get("/sandbox/config")).json()
    assert answer.status_code == 200
    assert answer.json() == config
    assert config["rate_429"] == 0.25
    assert config["chaos_scope"] == "all"
    assert config["generation_seconds"] == 10


async def test_delete_config_returns_to_the_start_settings(app):
    async with asgi_client(app) as client:
        await client.post("/sandbox/config", json={"generation_seconds": 1, "fail_rate": 1})
        reset = (await client.delete("/sandbox/config")).json()
    assert reset["generation_seconds"] == 10
    assert reset["fail_rate"] == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"host": "0.0.0.0"}, "cannot be changed at runtime"),
        ({"api_key": "fake"}, "cannot be changed at runtime"),
        ({"no_such_setting": 1}, "is not a sandbox setting"),
        ({"fail_rate": 2}, "fail_rate"),
        ({"chaos_scope": "media"}, "chaos_scope"),
        ({"rate_429": 0.6, "rate_500": 0.6}, "must be at most 1"),
    ],
)
async def test_bad_config_is_refused_and_changes_nothing(app, body, fragment):
    async with asgi_client(app) as client:
        before = (await client.get("/sandbox/config")).json()
        response = await client.post("/sandbox/config", json=body)
        after = (await client.get("/sandbox/config")).json()
    assert response.status_code == 400
    assert response.json()["reason"] == "INVALID_REQUEST_BODY"
    assert fragment in response.json()["message"]
    assert before == after


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]"])
async def test_config_body_must_be_a_json_object(app, content):
    async with asgi_client(app) as client:
        response = await client.post("/sandbox/config", content=content)
    assert response.status_code == 400


async def test_journal_records_submits_polls_in_order(app):
    async with asgi_client(app) as client:
        task_id = await submit(client)
        await client.get("/v3/async/task-result", params={"task_id": task_id})
        await client.get("/v3/async/task-result", params={"task_id": "unknown"})
        journal = (await client.get("/sandbox/journal")).json()
    assert [(entry["kind"], entry["method"], entry["status"]) for entry in journal] == [
        ("submit", "POST", 200),
        ("poll", "GET", 200),
        ("poll", "GET", 404),
    ]
    assert [entry["seq"] for entry in journal] == sorted(entry["seq"] for entry in journal)
    assert set(journal[0]) == {"seq", "time", "method", "path", "status", "kind", "model", "task_id", "note"}
    assert journal[1]["model"] == "kling-v3.0-std-t2v"


async def test_journal_filters_by_task_method_and_kind(app):
    async with asgi_client(app) as client:
        first, second = await submit(client), await submit(client)
        for task_id in (first, first, second):
            await client.get("/v3/async/task-result", params={"task_id": task_id})
        by_task = (await client.get("/sandbox/journal", params={"task_id": first})).json()
        by_method = (await client.get("/sandbox/journal", params={"method": "post"})).json()
        by_kind = (await client.get("/sandbox/journal", params={"kind": "poll", "task_id": second})).json()
    assert [entry["kind"] for entry in by_task] == ["submit", "poll", "poll"]
    assert {entry["task_id"] for entry in by_method} == {first, second}
    assert len(by_kind) == 1


async def test_exactly_one_submission_per_task_can_be_asserted(app):
    async with asgi_client(app) as client:
        task_id = await submit(client)
        submits = (await client.get("/sandbox/journal", params={"task_id": task_id, "kind": "submit"})).json()
    assert len(submits) == 1


async def test_journal_refuses_an_unknown_kind(app):
    async with asgi_client(app) as client:
        response = await client.get("/sandbox/journal", params={"kind": "everything"})
    assert response.status_code == 400


async def test_delete_journal_clears_it(app):
    async with asgi_client(app) as client:
        await submit(client)
        assert (await client.delete("/sandbox/journal")).status_code == 200
        assert (await client.get("/sandbox/journal")).json() == []
        assert len((await client.get("/sandbox/tasks")).json()) == 1


async def test_memory_journal_is_bounded(sandbox_clock):
    app = create_app(SandboxSettings(journal_limit=3), clock=sandbox_clock)
    async with asgi_client(app) as client:
        for _ in range(5):
            await client.get("/v3/async/task-result", params={"task_id": "x"})
        journal = (await client.get("/sandbox/journal")).json()
    assert [entry["seq"] for entry in journal] == [3, 4, 5]


async def test_tasks_list_their_timeline_and_current_status(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id = await submit(client)
        sandbox_clock.advance(5)
        [task] = (await client.get("/sandbox/tasks")).json()
    assert task == {
        "task_id": task_id,
        "model": "kling-v3.0-std-t2v",
        "status": "TASK_STATUS_PROCESSING",
        "progress_percent": 44,
        "created_at": 1_700_000_000.0,
        "started_at": 1_700_000_001.0,
        "completes_at": 1_700_000_010.0,
        "outcome": "TASK_STATUS_SUCCEED",
        "reason": "",
        "markers": {},
    }


async def test_tasks_can_be_filtered_and_cleared(app):
    async with asgi_client(app) as client:
        first, _ = await submit(client), await submit(client)
        only = (await client.get("/sandbox/tasks", params={"task_id": first})).json()
        await client.delete("/sandbox/tasks")
        after = (await client.get("/sandbox/tasks")).json()
        poll = await client.get("/v3/async/task-result", params={"task_id": first})
    assert [task["task_id"] for task in only] == [first]
    assert after == []
    assert poll.status_code == 404


async def test_peak_in_flight_counts_overlapping_generations(app, sandbox_clock):
    async with asgi_client(app) as client:
        await submit(client)  # 0..10
        sandbox_clock.advance(2)
        await submit(client)  # 2..12
        sandbox_clock.advance(2)
        await submit(client)  # 4..14
        sandbox_clock.advance(9)
        await submit(client)  # 13..23: only the last two are still running
        tasks = (await client.get("/sandbox/tasks")).json()
    assert peak_in_flight(tasks) == 3


def test_peak_in_flight_treats_back_to_back_tasks_as_not_overlapping():
    tasks = [{"created_at": 0, "completes_at": 5}, {"created_at": 5, "completes_at": 9}]
    assert peak_in_flight(tasks) == 1
    assert peak_in_flight([]) == 0
