"""Submit endpoint of the sandbox: every model, the provider's own validation, auth and error bodies."""

from __future__ import annotations

import logging
import uuid

import pytest
from pydantic import SecretStr, ValidationError

from airflow_provider_kling.models import KNOWN_MODELS, REQUEST_MODELS, format_validation_error
from airflow_provider_kling.sandbox import SandboxSettings, create_app
from airflow_provider_kling.sandbox.testing import FakeClock, asgi_client, example_body

CONFIGURED_KEY = "configured-fake-key"
ERROR_KEYS = {"code", "reason", "message", "metadata"}


@pytest.fixture
def app():
    return create_app(SandboxSettings(), clock=FakeClock())


@pytest.fixture
def keyed_app():
    return create_app(SandboxSettings(api_key=SecretStr(CONFIGURED_KEY)), clock=FakeClock())


def assert_error(response, status: int, reason: str) -> dict:
    body = response.json()
    assert response.status_code == status
    assert set(body) == ERROR_KEYS
    assert body["code"] == status
    assert body["reason"] == reason
    assert body["metadata"] == {}
    assert body["message"]
    return body


@pytest.mark.parametrize("model", KNOWN_MODELS)
async def test_submit_answers_a_uuid_task_id_for_every_model(app, model):
    async with asgi_client(app) as client:
        response = await client.post(f"/v3/async/{model}", json=example_body(model))
    assert response.status_code == 200
    assert set(response.json()) == {"task_id"}
    assert uuid.UUID(response.json()["task_id"]).version == 4


def test_every_known_model_is_served():
    assert set(KNOWN_MODELS) == set(REQUEST_MODELS)
    assert len(KNOWN_MODELS) == 7


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("kling-v3.0-std-t2v", {"prompt": "a fox", "duration": 99}),
        ("kling-v3.0-std-t2v", {"prompt": ""}),
        ("kling-v3.0-std-t2v", {"prompt": "a fox", "durration": 5}),
        ("kling-v3.0-std-t2v", {"prompt": "a fox", "multi_prompt": [{"prompt": "shot"}]}),
        ("kling-v3.0-pro-i2v", {"prompt": "a fox"}),
        (
            "kling-v3.0-pro-i2v",
            {
                "prompt": "a fox",
                "image": "https://example.com/a.png",
                "end_image": "https://example.com/b.png",
                "multi_prompt": [{"prompt": "shot"}],
            },
        ),
        ("kling-v3.0-motion-control", {"image": "https://example.com/a.png", "video": "ftp://x/y.avi"}),
    ],
)
async def test_invalid_body_is_refused_with_the_providers_own_message(app, model, body):
    with pytest.raises(ValidationError) as expected:
        REQUEST_MODELS[model].model_validate(body)
    async with asgi_client(app) as client:
        response = await client.post(f"/v3/async/{model}", json=body)
    error = assert_error(response, 400, "INVALID_REQUEST_BODY")
    assert error["message"] == format_validation_error(expected.value, model=model)


async def test_non_json_body_is_invalid_request_body(app):
    async with asgi_client(app) as client:
        response = await client.post("/v3/async/kling-v3.0-std-t2v", content=b"prompt=a fox")
    assert "not valid JSON" in assert_error(response, 400, "INVALID_REQUEST_BODY")["message"]


async def test_json_that_is_not_an_object_is_invalid_request_body(app):
    async with asgi_client(app) as client:
        response = await client.post("/v3/async/kling-v3.0-std-t2v", json=["a fox"])
    assert "JSON object" in assert_error(response, 400, "INVALID_REQUEST_BODY")["message"]


async def test_unknown_model_is_api_not_found(app):
    async with asgi_client(app) as client:
        response = await client.post("/v3/async/kling-v9.9-t2v", json={"prompt": "a fox"})
    assert "kling-v9.9-t2v" in assert_error(response, 404, "API_NOT_FOUND")["message"]


async def test_unknown_route_answers_in_the_vendor_shape(app):
    async with asgi_client(app) as client:
        response = await client.get("/v3/nothing-here")
    assert_error(response, 404, "API_NOT_FOUND")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "fake-key"])
async def test_missing_or_empty_bearer_key_is_missing_api_key(app, header):
    headers = {} if header is None else {"Authorization": header}
    async with asgi_client(app, api_key=None) as client:
        submit = await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox"}, headers=headers)
        poll = await client.get("/v3/async/task-result", params={"task_id": "x"}, headers=headers)
    assert_error(submit, 400, "MISSING_API_KEY")
    assert_error(poll, 400, "MISSING_API_KEY")


async def test_any_non_empty_key_is_accepted_when_none_is_configured(app):
    async with asgi_client(app, api_key="whatever-fake-key") as client:
        response = await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox"})
    assert response.status_code == 200


async def test_configured_key_is_accepted(keyed_app):
    async with asgi_client(keyed_app, api_key=CONFIGURED_KEY) as client:
        response = await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox"})
    assert response.status_code == 200


async def test_other_key_is_invalid_api_key_on_submit_and_poll(keyed_app):
    async with asgi_client(keyed_app, api_key="another-fake-key") as client:
        submit = await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox"})
        poll = await client.get("/v3/async/task-result", params={"task_id": "x"})
    assert_error(submit, 403, "INVALID_API_KEY")
    assert_error(poll, 403, "INVALID_API_KEY")


async def test_auth_is_checked_before_the_model_and_the_body(keyed_app):
    async with asgi_client(keyed_app, api_key="another-fake-key") as client:
        response = await client.post("/v3/async/no-such-model", content=b"not json")
    assert_error(response, 403, "INVALID_API_KEY")


async def test_api_key_is_never_echoed(keyed_app, caplog):
    sent = "sent-fake-key-0123456789"
    caplog.set_level(logging.DEBUG)
    async with asgi_client(keyed_app, api_key=sent) as client:
        answers = [
            await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox"}),
            await client.get("/v3/async/task-result", params={"task_id": "x"}),
        ]
    async with asgi_client(keyed_app, api_key=CONFIGURED_KEY) as client:
        task_id = (await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox"})).json()["task_id"]
        answers.append(await client.get("/v3/async/task-result", params={"task_id": task_id}))
        for path in ("/sandbox/journal", "/sandbox/config", "/sandbox/tasks", "/sandbox/health"):
            answers.append(await client.get(path))
    everything = "".join(answer.text for answer in answers) + caplog.text
    assert sent not in everything
    assert CONFIGURED_KEY not in everything


async def test_submit_is_journaled_with_its_task_id(app):
    async with asgi_client(app) as client:
        task_id = (await client.post("/v3/async/kling-v3.0-pro-t2v", json={"prompt": "a fox"})).json()["task_id"]
        journal = (await client.get("/sandbox/journal", params={"kind": "submit"})).json()
    assert len(journal) == 1
    entry = journal[0]
    assert entry["method"] == "POST"
    assert entry["path"] == "/v3/async/kling-v3.0-pro-t2v"
    assert entry["status"] == 200
    assert entry["model"] == "kling-v3.0-pro-t2v"
    assert entry["task_id"] == task_id
    assert entry["time"] == pytest.approx(1_700_000_000.0)


async def test_refused_submit_is_journaled_without_a_task(app):
    async with asgi_client(app) as client:
        await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": ""})
        journal = (await client.get("/sandbox/journal")).json()
        tasks = (await client.get("/sandbox/tasks")).json()
    assert [(entry["status"], entry["task_id"]) for entry in journal] == [(400, None)]
    assert tasks == []
