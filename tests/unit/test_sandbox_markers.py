"""Per-task scenario markers in prompts: ``[sandbox:seconds=20]``, ``[sandbox:fail=...]``, ``[sandbox:policy]``..."""

from __future__ import annotations

import pytest

from airflow_provider_kling.sandbox import SandboxSettings, create_app
from airflow_provider_kling.sandbox.scenarios import (
    DEFAULT_FAIL_REASON,
    MarkerError,
    parse_markers,
)
from airflow_provider_kling.sandbox.testing import asgi_client, example_body


@pytest.fixture
def app(sandbox_app):
    return sandbox_app(generation_seconds=8, queue_fraction=0.1)


async def submit(client, body: dict, model: str = "kling-v3.0-std-t2v") -> str:
    response = await client.post(f"/v3/async/{model}", json=body)
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


async def poll(client, task_id: str) -> dict:
    return (await client.get("/v3/async/task-result", params={"task_id": task_id})).json()


def test_markers_are_found_anywhere_in_the_text():
    markers = parse_markers(["a fox [sandbox:seconds=20] in snow [sandbox:ttl=2]", "[sandbox:empty_extra]"])
    assert markers.seconds == 20
    assert markers.ttl == 2
    assert markers.empty_extra is True
    assert markers.raw == {"seconds": "20", "ttl": "2", "empty_extra": ""}


def test_markers_ignore_case():
    markers = parse_markers(["[SANDBOX:Seconds=3] [Sandbox:POLICY]"])
    assert markers.seconds == 3
    assert markers.policy is True


def test_fail_marker_keeps_its_whole_reason_text():
    assert parse_markers(["[sandbox:fail=SOME_REASON the renderer crashed]"]).fail == (
        "SOME_REASON the renderer crashed"
    )
    assert parse_markers(["[sandbox:fail]"]).fail == DEFAULT_FAIL_REASON


def test_text_without_markers_has_no_overrides():
    markers = parse_markers(["a fox [not a marker] [sandbox] sandbox:seconds=3"])
    assert markers.raw == {}
    assert markers.seconds is None


@pytest.mark.parametrize(
    "text",
    ["[sandbox:bogus]", "[sandbox:seconds=soon]", "[sandbox:ttl=-1]", "[sandbox:policy=yes]", "[sandbox:seconds=inf]"],
)
def test_bad_marker_is_an_error(text):
    with pytest.raises(MarkerError):
        parse_markers([text])


async def test_bad_marker_is_refused_at_submit(app):
    async with asgi_client(app) as client:
        response = await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox [sandbox:secs=3]"})
    assert response.status_code == 400
    assert response.json()["reason"] == "INVALID_REQUEST_BODY"
    assert "[sandbox:secs]" in response.json()["message"]


async def test_seconds_marker_sets_this_tasks_generation_time(app, sandbox_clock):
    async with asgi_client(app) as client:
        slow = await submit(client, {"prompt": "a fox [sandbox:seconds=20]"})
        normal = await submit(client, {"prompt": "a fox"})
        sandbox_clock.advance(8)
        assert (await poll(client, normal))["task"]["status"] == "TASK_STATUS_SUCCEED"
        assert (await poll(client, slow))["task"]["status"] == "TASK_STATUS_PROCESSING"
        assert (await poll(client, slow))["task"]["eta"] == 12
        sandbox_clock.advance(12)
        assert (await poll(client, slow))["task"]["status"] == "TASK_STATUS_SUCCEED"


async def test_seconds_zero_succeeds_at_once(app):
    async with asgi_client(app) as client:
        body = await poll(client, await submit(client, {"prompt": "a fox [sandbox:seconds=0]"}))
    assert body["task"]["status"] == "TASK_STATUS_SUCCEED"
    assert len(body["videos"]) == 1


async def test_queue_marker_sets_the_queue_phase(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id = await submit(client, {"prompt": "a fox [sandbox:queue=5]"})
        sandbox_clock.advance(4.9)
        assert (await poll(client, task_id))["task"]["status"] == "TASK_STATUS_QUEUED"
        sandbox_clock.advance(0.2)
        assert (await poll(client, task_id))["task"]["status"] == "TASK_STATUS_PROCESSING"


async def test_fail_marker_fails_at_the_end_with_its_reason(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id = await submit(client, {"prompt": "a fox [sandbox:fail=SOME_REASON text]"})
        sandbox_clock.advance(7)
        in_flight = await poll(client, task_id)
        sandbox_clock.advance(1)
        done = await poll(client, task_id)
    assert in_flight["task"]["status"] == "TASK_STATUS_PROCESSING"
    assert done["task"]["status"] == "TASK_STATUS_FAILED"
    assert done["task"]["reason"] == "SOME_REASON text"
    assert done["videos"] == []


async def test_policy_marker_is_a_moderation_refusal_after_submit(app, sandbox_clock):
    async with asgi_client(app) as client:
        response = await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox [sandbox:policy]"})
        assert response.status_code == 200
        task_id = response.json()["task_id"]
        queued = await poll(client, task_id)
        sandbox_clock.advance(0.8)
        refused = await poll(client, task_id)
    assert queued["task"]["status"] == "TASK_STATUS_QUEUED"
    assert refused["task"]["status"] == "TASK_STATUS_FAILED"
    assert "ILLEGAL_PROMPT" in refused["task"]["reason"]
    assert "content moderation" in refused["task"]["reason"]
    assert refused["extra"]["debug_info"]["execute_time_ms"] == ""
    assert refused["extra"]["seed"] == ""
    assert refused["videos"] == []


async def test_ttl_marker_sets_the_video_url_ttl(app, sandbox_clock):
    async with asgi_client(app) as client:
        body = await poll(client, await submit(client, {"prompt": "a fox [sandbox:ttl=2] [sandbox:seconds=0]"}))
    [video] = body["videos"]
    assert video["video_url_ttl"] == "2"
    assert f"expires={int(sandbox_clock.now) + 2}&" in video["video_url"]


async def test_empty_extra_marker_answers_an_empty_extra(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id = await submit(client, {"prompt": "a fox [sandbox:empty_extra]"})
        queued = await poll(client, task_id)
        sandbox_clock.advance(8)
        done = await poll(client, task_id)
    assert queued["extra"] == {}
    assert done["extra"] == {}
    assert done["task"]["status"] == "TASK_STATUS_SUCCEED"


async def test_seed_marker_fixes_the_reported_seed(app, sandbox_clock):
    async with asgi_client(app) as client:
        body = await poll(client, await submit(client, {"prompt": "a fox [sandbox:seed=42] [sandbox:seconds=0]"}))
    assert body["extra"]["seed"] == "42"


async def test_succeed_marker_wins_over_the_fail_rate(sandbox_clock):
    app = create_app(SandboxSettings(generation_seconds=1, fail_rate=1.0), clock=sandbox_clock)
    async with asgi_client(app) as client:
        lucky = await submit(client, {"prompt": "a fox [sandbox:succeed]"})
        unlucky = await submit(client, {"prompt": "a fox"})
        sandbox_clock.advance(1)
        assert (await poll(client, lucky))["task"]["status"] == "TASK_STATUS_SUCCEED"
        assert (await poll(client, unlucky))["task"]["status"] == "TASK_STATUS_FAILED"


async def test_marker_in_a_multi_prompt_shot_counts(app, sandbox_clock):
    body = {"prompt": "a story", "multi_prompt": [{"prompt": "shot one"}, {"prompt": "shot two [sandbox:policy]"}]}
    async with asgi_client(app) as client:
        task_id = await submit(client, body, model="kling-v3.0-pro-t2v")
        sandbox_clock.advance(1)
        assert (await poll(client, task_id))["task"]["status"] == "TASK_STATUS_FAILED"


async def test_marker_in_a_plain_string_shot_counts(app, sandbox_clock):
    body = {"prompt": "a story", "multi_prompt": ["shot one", "shot two [sandbox:fail=BROKEN]"]}
    async with asgi_client(app) as client:
        task_id = await submit(client, body, model="kling-v3.0-pro-t2v")
        sandbox_clock.advance(8)
        assert (await poll(client, task_id))["task"]["reason"] == "BROKEN"


async def test_marker_in_an_image_to_video_shot_counts(app, sandbox_clock):
    body = example_body("kling-v3.0-std-i2v", "a cat")
    body["multi_prompt"] = [{"prompt": "shot [sandbox:seconds=30]", "duration": 5}]
    async with asgi_client(app) as client:
        task_id = await submit(client, body, model="kling-v3.0-std-i2v")
        sandbox_clock.advance(8)
        assert (await poll(client, task_id))["task"]["status"] == "TASK_STATUS_PROCESSING"


async def test_marker_in_a_motion_control_prompt_counts(app, sandbox_clock):
    body = example_body("kling-v3.0-motion-control", "dance [sandbox:fail=NO_DANCE]")
    async with asgi_client(app) as client:
        task_id = await submit(client, body, model="kling-v3.0-motion-control")
        sandbox_clock.advance(8)
        assert (await poll(client, task_id))["task"]["reason"] == "NO_DANCE"


async def test_markers_are_listed_with_the_task(app):
    async with asgi_client(app) as client:
        task_id = await submit(client, {"prompt": "a fox [sandbox:seconds=20] [sandbox:fail=X]"})
        [task] = (await client.get("/sandbox/tasks")).json()
    assert task["task_id"] == task_id
    assert task["markers"] == {"seconds": "20", "fail": "X"}
    assert task["outcome"] == "TASK_STATUS_FAILED"
    assert task["reason"] == "X"
