"""Seeded chaos: 429 with and without Retry-After, 500, nginx 502 HTML, slow answers, scopes, ambiguous submits."""

from __future__ import annotations

import pytest

from airflow_provider_kling.sandbox import SandboxSettings, create_app
from airflow_provider_kling.sandbox.testing import RecordingSleep, asgi_client

SUBMIT = "/v3/async/kling-v3.0-std-t2v"
BODY = {"prompt": "a red fox"}


@pytest.fixture
def sleep():
    return RecordingSleep()


@pytest.fixture
def make_app(sandbox_clock, sleep):
    def make(**settings):
        return create_app(SandboxSettings(generation_seconds=1, **settings), clock=sandbox_clock, sleep=sleep)

    return make


async def submit_ok(client) -> str:
    response = await client.post(SUBMIT, json=BODY)
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


async def test_rate_429_answers_rate_limit_exceeded_with_retry_after(make_app):
    async with asgi_client(make_app(rate_429=1.0)) as client:
        task_id = await submit_ok(client)
        response = await client.get("/v3/async/task-result", params={"task_id": task_id})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "code": 429,
        "reason": "RATE_LIMIT_EXCEEDED",
        "message": "rate limit exceeded",
        "metadata": {},
    }


async def test_rate_429_no_retry_after_has_no_header(make_app):
    async with asgi_client(make_app(rate_429_no_retry_after=1.0)) as client:
        response = await client.get("/v3/async/task-result", params={"task_id": await submit_ok(client)})
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert response.json()["reason"] == "RATE_LIMIT_EXCEEDED"


async def test_rate_500_answers_a_json_server_error(make_app):
    async with asgi_client(make_app(rate_500=1.0)) as client:
        response = await client.get("/v3/async/task-result", params={"task_id": await submit_ok(client)})
    assert response.status_code == 500
    assert response.json()["code"] == 500
    assert response.json()["reason"] == "GET_RESULT_FAILED"


async def test_rate_502_html_answers_an_nginx_page(make_app):
    async with asgi_client(make_app(rate_502_html=1.0)) as client:
        response = await client.get("/v3/async/task-result", params={"task_id": await submit_ok(client)})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>502 Bad Gateway</title>" in response.text
    assert "nginx" in response.text


async def test_rate_slow_delays_then_answers_normally(make_app, sleep):
    async with asgi_client(make_app(rate_slow=1.0, slow_seconds=7.5)) as client:
        response = await client.get("/v3/async/task-result", params={"task_id": await submit_ok(client)})
    assert response.status_code == 200
    assert sleep.delays == [7.5]


async def test_chaos_scope_poll_spares_submits(make_app):
    async with asgi_client(make_app(rate_500=1.0, chaos_scope="poll")) as client:
        assert (await client.post(SUBMIT, json=BODY)).status_code == 200


async def test_chaos_scope_submit_spares_polls(make_app):
    app = make_app(rate_429=1.0, chaos_scope="submit")
    async with asgi_client(app) as client:
        refused = await client.post(SUBMIT, json=BODY)
        await client.post("/sandbox/config", json={"rate_429": 0})
        task_id = await submit_ok(client)
        await client.post("/sandbox/config", json={"rate_429": 1.0})
        poll = await client.get("/v3/async/task-result", params={"task_id": task_id})
    assert refused.status_code == 429
    assert poll.status_code == 200


async def test_chaos_scope_all_hits_submits_and_polls(make_app):
    async with asgi_client(make_app(rate_502_html=1.0, chaos_scope="all")) as client:
        submit = await client.post(SUBMIT, json=BODY)
        poll = await client.get("/v3/async/task-result", params={"task_id": "any"})
    assert (submit.status_code, poll.status_code) == (502, 502)


async def test_chaos_never_touches_sandbox_endpoints(make_app):
    async with asgi_client(make_app(rate_500=1.0, chaos_scope="all")) as client:
        statuses = {(await client.get(path)).status_code for path in ("/sandbox/health", "/sandbox/journal")}
    assert statuses == {200}


async def test_submit_500_does_not_create_a_task_by_default(make_app):
    async with asgi_client(make_app(rate_500=1.0, chaos_scope="submit")) as client:
        response = await client.post(SUBMIT, json=BODY)
        tasks = (await client.get("/sandbox/tasks")).json()
    assert response.status_code == 500
    assert response.json()["reason"] == "CREATE_TASK_FAILED"
    assert tasks == []


@pytest.mark.parametrize("rate", ["rate_500", "rate_502_html"])
async def test_submit_error_creates_task_makes_an_ambiguous_submit(make_app, sandbox_clock, rate):
    app = make_app(**{rate: 1.0}, chaos_scope="submit", submit_error_creates_task=True)
    async with asgi_client(app) as client:
        response = await client.post(SUBMIT, json=BODY)
        [task] = (await client.get("/sandbox/tasks")).json()
        [entry] = (await client.get("/sandbox/journal", params={"kind": "submit"})).json()
        sandbox_clock.advance(1)
        result = await client.get("/v3/async/task-result", params={"task_id": task["task_id"]})
    assert response.status_code >= 500
    assert "task_id" not in response.text
    assert entry["task_id"] == task["task_id"]
    assert "task_created" in entry["note"]
    assert result.json()["task"]["status"] == "TASK_STATUS_SUCCEED"


async def test_submit_429_never_creates_a_task(make_app):
    app = make_app(rate_429=1.0, chaos_scope="submit", submit_error_creates_task=True)
    async with asgi_client(app) as client:
        assert (await client.post(SUBMIT, json=BODY)).status_code == 429
        assert (await client.get("/sandbox/tasks")).json() == []


async def test_chaos_is_journaled(make_app):
    async with asgi_client(make_app(rate_429=1.0, rate_slow=1.0)) as client:
        await client.get("/v3/async/task-result", params={"task_id": await submit_ok(client)})
        [entry] = (await client.get("/sandbox/journal", params={"kind": "poll"})).json()
    assert entry["status"] == 429
    assert entry["note"] == "chaos:429,chaos:slow"


async def chaos_statuses(app, count: int = 60) -> list[int]:
    async with asgi_client(app) as client:
        task_id = await submit_ok(client)
        return [
            (await client.get("/v3/async/task-result", params={"task_id": task_id})).status_code for _ in range(count)
        ]


MIXED = {"rate_429": 0.2, "rate_500": 0.2, "rate_502_html": 0.1, "seed": 1234}


async def test_chaos_with_a_seed_is_reproducible(make_app):
    first = await chaos_statuses(make_app(**MIXED))
    second = await chaos_statuses(make_app(**MIXED))
    assert first == second
    assert {200, 429, 500, 502} <= set(first)


async def test_chaos_with_another_seed_differs(make_app):
    first = await chaos_statuses(make_app(**MIXED))
    other = await chaos_statuses(make_app(**{**MIXED, "seed": 4321}))
    assert first != other


async def test_reseeding_at_runtime_restarts_the_sequence(make_app):
    app = make_app(**MIXED)
    first = await chaos_statuses(app)
    async with asgi_client(app) as client:
        await client.post("/sandbox/config", json={"seed": 1234})
    assert await chaos_statuses(app) == first


async def test_fail_rate_and_video_seeds_are_reproducible_with_a_seed(make_app, sandbox_clock):
    async def outcomes(app) -> list[tuple[str, str]]:
        async with asgi_client(app) as client:
            ids = [await submit_ok(client) for _ in range(30)]
            sandbox_clock.advance(1)
            bodies = [
                (await client.get("/v3/async/task-result", params={"task_id": task_id})).json() for task_id in ids
            ]
        return [(body["task"]["status"], body["extra"]["seed"]) for body in bodies]

    first = await outcomes(make_app(fail_rate=0.5, seed=99))
    second = await outcomes(make_app(fail_rate=0.5, seed=99))
    assert first == second
    assert {status for status, _ in first} == {"TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED"}


async def test_max_in_flight_refuses_extra_submits_until_one_finishes(make_app, sandbox_clock):
    async with asgi_client(make_app(max_in_flight=2)) as client:
        await submit_ok(client)
        await submit_ok(client)
        refused = await client.post(SUBMIT, json=BODY)
        sandbox_clock.advance(1)
        accepted = await client.post(SUBMIT, json=BODY)
    assert refused.status_code == 429
    assert refused.json()["reason"] == "RATE_LIMIT_EXCEEDED"
    assert "limit 2" in refused.json()["message"]
    assert accepted.status_code == 200
