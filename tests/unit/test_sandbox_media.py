"""Signed video URLs: each task's own real MP4, re-signed on every poll, refused with S3 XML once expired or forged."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_kling.sandbox import SandboxSettings, create_app
from airflow_provider_kling.sandbox.media import MEDIA_FILE, task_id_of, video_for
from airflow_provider_kling.sandbox.testing import asgi_client


@pytest.fixture
def app(sandbox_app):
    return sandbox_app(generation_seconds=2, url_ttl=60)


async def finished_video_url(client, sandbox_clock, prompt: str = "a red fox") -> tuple[str, str]:
    task_id = (await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": prompt})).json()["task_id"]
    sandbox_clock.advance(2)
    return task_id, await video_url(client, task_id)


async def video_url(client, task_id: str) -> str:
    body = (await client.get("/v3/async/task-result", params={"task_id": task_id})).json()
    return body["videos"][0]["video_url"]


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def test_bundled_clip_is_a_small_mp4():
    data = MEDIA_FILE.read_bytes()
    assert 1_000 < len(data) < 200_000
    assert data[4:8] == b"ftyp"


def test_each_task_has_its_own_valid_mp4_naming_it():
    first, second = video_for("task-a"), video_for("task-b")
    assert first != second
    for data in (first, second):
        assert data.startswith(MEDIA_FILE.read_bytes())
        assert data[4:8] == b"ftyp"
    assert (task_id_of(first), task_id_of(second)) == ("task-a", "task-b")


def test_the_bundled_clip_names_no_task():
    assert task_id_of(MEDIA_FILE.read_bytes()) is None


@pytest.mark.parametrize("damage", ["truncated", "padded", "tail only"])
def test_a_half_written_or_damaged_copy_names_no_task(damage):
    data = video_for("task-a")
    damaged = {"truncated": data[:-3], "padded": data + b"\0\0", "tail only": data[len(data) // 2 :]}[damage]
    assert task_id_of(damaged) is None


async def test_signed_url_serves_the_tasks_own_mp4_with_its_length_and_no_api_key(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id, url = await finished_video_url(client, sandbox_clock)
        other_id, other_url = await finished_video_url(client, sandbox_clock, "a blue whale")
    async with asgi_client(app, api_key=None) as anonymous:
        response = await anonymous.get(url)
        other = await anonymous.get(other_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(video_for(task_id))
    assert response.content == video_for(task_id)
    assert (task_id_of(response.content), task_id_of(other.content)) == (task_id, other_id)


async def test_range_request_answers_partial_content(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id, url = await finished_video_url(client, sandbox_clock)
        response = await client.get(url, headers={"Range": "bytes=0-99"})
        tail = await client.get(url, headers={"Range": "bytes=-10"})
        rest = await client.get(url, headers={"Range": "bytes=100-"})
        [entry, *_] = (await client.get("/sandbox/journal", params={"kind": "media"})).json()
    video = video_for(task_id)
    assert response.status_code == 206
    assert response.content == video[:100]
    assert response.headers["content-range"] == f"bytes 0-99/{len(video)}"
    assert entry["status"] == 206
    assert (tail.status_code, tail.content) == (206, video[-10:])
    assert response.content + rest.content == video


async def test_range_past_the_end_is_not_satisfiable(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id, url = await finished_video_url(client, sandbox_clock)
        response = await client.get(url, headers={"Range": "bytes=999999-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(video_for(task_id))}"


async def test_head_answers_the_length_without_a_body(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id, url = await finished_video_url(client, sandbox_clock)
        response = await client.head(url)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(video_for(task_id))
    assert response.content == b""


async def test_url_points_at_the_sandbox_and_expires_after_the_ttl(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id, url = await finished_video_url(client, sandbox_clock)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "http://sandbox.test"
    assert parts.path == f"/sandbox/media/{task_id}.mp4"
    assert int(query(url)["expires"]) == int(sandbox_clock.now) + 60
    assert len(query(url)["signature"]) == 64


async def test_every_poll_re_signs_with_a_fresh_expiry(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id, first = await finished_video_url(client, sandbox_clock)
        sandbox_clock.advance(30)
        second = await video_url(client, task_id)
    assert first != second
    assert int(query(second)["expires"]) == int(query(first)["expires"]) + 30


async def test_expired_url_is_refused_with_s3_xml(app, sandbox_clock):
    async with asgi_client(app) as client:
        _, url = await finished_video_url(client, sandbox_clock)
        sandbox_clock.advance(60)
        still_valid = await client.get(url)
        sandbox_clock.advance(1)
        expired = await client.get(url)
    assert still_valid.status_code == 200
    assert expired.status_code == 403
    assert expired.headers["content-type"].startswith("application/xml")
    assert "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>" in expired.text


async def test_fresh_url_works_after_the_old_one_expired(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id, _ = await finished_video_url(client, sandbox_clock)
        sandbox_clock.advance(120)
        response = await client.get(await video_url(client, task_id))
    assert response.status_code == 200


@pytest.mark.parametrize("tamper", ["signature", "expires", "task"])
async def test_tampered_url_is_refused(app, sandbox_clock, tamper):
    async with asgi_client(app) as client:
        task_id, url = await finished_video_url(client, sandbox_clock)
        other_id, _ = await finished_video_url(client, sandbox_clock)
        params = query(url)
        if tamper == "signature":
            url = url.replace(params["signature"], "0" * 64)
        elif tamper == "expires":
            url = url.replace(f"expires={params['expires']}", f"expires={int(params['expires']) + 3600}")
        else:
            url = url.replace(task_id, other_id)
        response = await client.get(url)
    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text


async def test_unsigned_url_is_refused(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id, _ = await finished_video_url(client, sandbox_clock)
        response = await client.get(f"/sandbox/media/{task_id}.mp4")
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text


async def test_url_signed_for_an_unknown_task_is_no_such_key(app, sandbox_clock):
    signer = app.state.sandbox.signer
    url = signer.url("http://sandbox.test", "no-such-task", now=sandbox_clock.now, ttl=60)
    async with asgi_client(app) as client:
        response = await client.get(url)
    assert response.status_code == 404
    assert "<Code>NoSuchKey</Code>" in response.text


async def test_video_of_a_task_still_generating_is_no_such_key(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id = (await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox"})).json()["task_id"]
        url = app.state.sandbox.signer.url("http://sandbox.test", task_id, now=sandbox_clock.now, ttl=60)
        response = await client.get(url)
    assert response.status_code == 404


async def test_ttl_marker_overrides_the_url_ttl(app, sandbox_clock):
    async with asgi_client(app) as client:
        _, url = await finished_video_url(client, sandbox_clock, "a fox [sandbox:ttl=2]")
        sandbox_clock.advance(2)
        valid = await client.get(url)
        sandbox_clock.advance(1)
        expired = await client.get(url)
    assert (valid.status_code, expired.status_code) == (200, 403)


async def test_url_ttl_can_change_at_runtime(app, sandbox_clock):
    async with asgi_client(app) as client:
        await client.post("/sandbox/config", json={"url_ttl": 5})
        task_id, url = await finished_video_url(client, sandbox_clock)
        body = (await client.get("/v3/async/task-result", params={"task_id": task_id})).json()
    assert body["videos"][0]["video_url_ttl"] == "5"
    assert int(query(url)["expires"]) == int(sandbox_clock.now) + 5


async def test_public_url_replaces_the_host_the_client_called(sandbox_app, sandbox_clock):
    app = sandbox_app(generation_seconds=0, public_url="http://kling-sandbox:8089/")
    async with asgi_client(app) as client:
        _, url = await finished_video_url(client, sandbox_clock)
    assert url.startswith("http://kling-sandbox:8089/sandbox/media/")


async def test_signing_secret_setting_makes_urls_stable_across_apps(sandbox_clock):
    settings = SandboxSettings(generation_seconds=0, signing_secret="fake-signing-secret")
    first = create_app(settings, clock=sandbox_clock).state.sandbox.signer
    second = create_app(settings, clock=sandbox_clock).state.sandbox.signer
    assert first.signature("task", 123) == second.signature("task", 123)


async def test_media_downloads_are_journaled(app, sandbox_clock):
    async with asgi_client(app) as client:
        task_id, url = await finished_video_url(client, sandbox_clock)
        await client.get(url)
        journal = (await client.get("/sandbox/journal", params={"kind": "media"})).json()
    assert [(entry["method"], entry["status"], entry["task_id"]) for entry in journal] == [("GET", 200, task_id)]
    assert "signature" not in journal[0]["path"]
