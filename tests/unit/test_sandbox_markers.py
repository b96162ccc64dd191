"""Per-task scenario markers in prompts: ``[sandbox:seconds=20]``, ``[sandbox:fail=...]``, ``[sandbox:policy]``..."""

from __future__ import annotations

import pytest
from _fakes import polls_after

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
        in_flight, done = await polls_after(client, sandbox_clock, task_id, 7, 1)
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


@pytest.mark.parametrize(
    ("model", "body", "seconds", "field", "expected"),
    [
        pytest.param(
            "kling-v3.0-pro-t2v",
            {"prompt": "a story", "multi_prompt": [{"prompt": "shot one"}, {"prompt": "shot two [sandbox:policy]"}]},
            1,
            "status",
            "TASK_STATUS_FAILED",
            id="multi-prompt-shot",
        ),
        pytest.param(
            "kling-v3.0-pro-t2v",
            {"prompt": "a story", "multi_prompt": ["shot one", "shot two [sandbox:fail=BROKEN]"]},
            8,
            "reason",
            "BROKEN",
            id="plain-string-shot",
        ),
        pytest.param(
            "kling-v3.0-std-i2v",
            {
                **example_body("kling-v3.0-std-i2v", "a cat"),
                "multi_prompt": [{"prompt": "shot [sandbox:seconds=30]", "duration": 5}],
            },
            8,
            "status",
            "TASK_STATUS_PROCESSING",
            id="image-to-video-shot",
        ),
        pytest.param(
            "kling-v3.0-motion-control",
            example_body("kling-v3.0-motion-control", "dance [sandbox:fail=NO_DANCE]"),
            8,
            "reason",
            "NO_DANCE",
            id="motion-control-prompt",
        ),
    ],
)
async def test_a_marker_counts_in_any_prompt_of_any_endpoint(app, sandbox_clock, model, body, seconds, field, expected):
    async with asgi_client(app) as client:
        task_id = await submit(client, body, model=model)
        sandbox_clock.advance(seconds)
        assert (await poll(client, task_id))["task"][field] == expected


async def test_markers_are_listed_with_the_task(app):
    async with asgi_client(app) as client:
        task_id = await submit(client, {"prompt": "a fox [sandbox:seconds=20] [sandbox:fail=X]"})
        [task] = (await client.get("/sandbox/tasks")).json()
    assert task["task_id"] == task_id
    assert task["markers"] == {"seconds": "20", "fail": "X"}
    assert task["outcome"] == "TASK_STATUS_FAILED"
    assert task["reason"] == "X"
