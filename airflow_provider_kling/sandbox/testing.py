"""Helpers for in-process tests of the sandbox: a controllable clock and an ASGI client.

Example::

    clock = FakeClock()
    app = create_app(SandboxSettings(generation_seconds=10), clock=clock)
    async with asgi_client(app) as client:
        task_id = (await client.post("/v3/async/kling-v3.0-std-t2v", json={"prompt": "a fox"})).json()["task_id"]
        clock.advance(10)
        assert (await client.get("/v3/async/task-result", params={"task_id": task_id})).json()["videos"]
"""

from __future__ import annotations

from typing import Any

import httpx

#: An obviously fake key for tests; the sandbox accepts any non-empty key unless started with one.
FAKE_API_KEY = "sandbox-fake-key"


def example_body(model: str, prompt: str = "a red fox runs through fresh snow") -> dict[str, Any]:
    """A small valid request body for ``model`` (any Kling v3.0 endpoint), with ``prompt`` in it."""
    if model.endswith("-i2v"):
        return {"image": "https://example.com/first-frame.png", "prompt": prompt}
    if model.endswith("motion-control"):
        return {
            "image": "https://example.com/character.png",
            "video": "https://example.com/dance.mp4",
            "prompt": prompt,
        }
    return {"prompt": prompt}


class FakeClock:
    """Epoch seconds that only move when told to: pass it as ``create_app(clock=...)``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward; returns the new time."""
        self.now += seconds
        return self.now


class RecordingSleep:
    """An awaitable ``sleep`` that returns at once and remembers each delay (for slow-answer chaos)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.delays: list[float] = []
        self._clock = clock

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._clock is not None:
            self._clock.advance(seconds)


def asgi_client(app: Any, api_key: str | None = FAKE_API_KEY, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that calls ``app`` in process, sending ``api_key`` as a Bearer token."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test", headers=headers, **kwargs
    )
