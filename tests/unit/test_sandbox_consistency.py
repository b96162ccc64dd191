"""The sandbox's eventual-consistency controls: a task not visible yet, a success without a video, a key rotation."""

from __future__ import annotations

import pytest

from airflow_provider_kling.sandbox.testing import asgi_client

NEW_KEY = "rotated-key-for-the-test"


@pytest.fixture
def app(sandbox_app):
    return sandbox_app(generation_seconds=2, api_key="sandbox-test-key")


async def submit(client, prompt: str) -> str:
    response = await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": prompt})
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


async def poll(client, task_id: str):
    return await client.get("/v3/async/task-result", params={"task_id": task_id})


async def test_not_found_marker_answers_404_task_not_found_for_the_first_polls(app):
    async with asgi_client(app, api_key="sandbox-test-key") as client:
        task_id = await submit(client, "a fox [sandbox:not_found=2]")
        answers = [await poll(client, task_id) for _ in range(3)]
        journal = (await client.get("/sandbox/journal", params={"kind": "poll"})).json()

    assert [answer.status_code for answer in answers] == [404, 404, 200]
    assert answers[0].json()["reason"] == "TASK_NOT_FOUND"
    assert [entry.get("note") for entry in journal][:2] == ["not_found", "not_found"]


async def test_empty_success_marker_hides_the_video_from_the_first_succeeded_answer(app, sandbox_clock):
    async with asgi_client(app, api_key="sandbox-test-key") as client:
        task_id = await submit(client, "a fox [sandbox:empty_success=1]")
        running = (await poll(client, task_id)).json()
        sandbox_clock.advance(3)
        empty = (await poll(client, task_id)).json()
        full = (await poll(client, task_id)).json()

    assert running["videos"] == []
    assert running["task"]["status"] != "TASK_STATUS_SUCCEED"
    assert (empty["task"]["status"], empty["videos"]) == ("TASK_STATUS_SUCCEED", [])
    assert full["task"]["status"] == "TASK_STATUS_SUCCEED"
    assert full["videos"][0]["video_url"]


async def test_a_rotated_key_is_the_only_one_accepted_afterwards(app):
    async with asgi_client(app, api_key="sandbox-test-key") as old:
        task_id = await submit(old, "a fox")
        rotated = await old.post("/sandbox/api-key", json={"api_key": NEW_KEY})
        refused = await poll(old, task_id)
    async with asgi_client(app, api_key=NEW_KEY) as new:
        accepted = await poll(new, task_id)

    assert rotated.status_code == 200
    assert NEW_KEY not in rotated.text
    assert refused.status_code == 403
    assert accepted.status_code == 200


@pytest.mark.parametrize("body", [{}, {"api_key": ""}, {"api_key": 3}, []])
async def test_a_key_rotation_needs_a_key(app, body):
    async with asgi_client(app) as client:
        response = await client.post("/sandbox/api-key", json=body)

    assert response.status_code == 400


@pytest.mark.parametrize("text", ["[sandbox:not_found=x]", "[sandbox:empty_success=-1]"])
async def test_the_new_markers_take_counts(app, text):
    async with asgi_client(app, api_key="sandbox-test-key") as client:
        response = await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": f"a fox {text}"})

    assert response.status_code == 400
