"""The FastAPI application factory.

Example::

    from fastapi.testclient import TestClient
    from airflow_provider_kling.sandbox import SandboxSettings, create_app

    client = TestClient(create_app(SandboxSettings(generation_seconds=2)))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from airflow_provider_kling import __version__
from airflow_provider_kling.sandbox import api, control
from airflow_provider_kling.sandbox.responses import error_response
from airflow_provider_kling.sandbox.settings import SandboxSettings
from airflow_provider_kling.sandbox.state import Clock, Sandbox, Sleep
from airflow_provider_kling.sandbox.store import MemoryStore


def create_app(
    settings: SandboxSettings | None = None,
    *,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    store: MemoryStore | None = None,
) -> FastAPI:
    """Build a sandbox app.

    :param settings: a :class:`~.settings.SandboxSettings`; default: read from ``KLING_SANDBOX_*``.
    :param clock: epoch seconds now; tests pass a controllable clock instead of sleeping.
    :param sleep: awaited for chaos' slow answers; tests pass one that returns at once.
    :param store: where tasks and the journal live; default: from ``settings.state_file``.
    """
    sandbox = Sandbox(settings or SandboxSettings(), clock=clock, sleep=sleep, store=store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        sandbox.store.close()

    app = FastAPI(
        title="Kling sandbox",
        version=__version__,
        description="A local stand-in for the Novita Kling v3.0 async API.",
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    app.include_router(api.router)
    app.router.routes.extend(api.plain_routes)
    app.include_router(control.router)

    @app.exception_handler(HTTPException)
    async def vendor_shaped(_: Request, exc: HTTPException) -> Response:
        # Unknown routes and methods answer like the vendor's gateway, not FastAPI's {"detail": ...}.
        if exc.status_code in (404, 405):
            return error_response(404, "API_NOT_FOUND", "no such API")
        return error_response(exc.status_code, "HTTP_ERROR", str(exc.detail))

    return app
