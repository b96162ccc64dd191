"""The vendor's endpoints: ``POST /v3/async/<model>`` and ``GET /v3/async/task-result``.

Requests are checked in the vendor's order (key, then gateway chaos, then endpoint, then body) and every
one lands in the journal. The handlers take the raw ``Request`` and answer pre-serialised JSON, and the
poll (the hot path of any benchmark) is a plain Starlette route: FastAPI's parameter and dependency
machinery would otherwise be a third of its cost.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import Route

from airflow_provider_kling.models import REQUEST_MODELS, format_validation_error
from airflow_provider_kling.sandbox.responses import error_response, html_502_response, json_response
from airflow_provider_kling.sandbox.scenarios import ChaosDraw, MarkerError
from airflow_provider_kling.sandbox.state import Sandbox
from airflow_provider_kling.sandbox.store import JournalKind
from airflow_provider_kling.sandbox.timeline import result_body

log = logging.getLogger("kling.sandbox")

router = APIRouter()


def _rate_limited(draw: ChaosDraw) -> Response | None:
    """The gateway's 429, drawn by chaos, before the request reaches the backend."""
    if draw.error == "429":
        return error_response(429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded", {"Retry-After": "1"})
    if draw.error == "429_no_retry_after":
        return error_response(429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded")
    return None


def _server_error(draw: ChaosDraw, *, submit: bool) -> Response | None:
    """A backend 500 or a proxy's 502 HTML page, drawn by chaos."""
    if draw.error == "500":
        reason = "CREATE_TASK_FAILED" if submit else "GET_RESULT_FAILED"
        return error_response(500, reason, "internal error, please retry")
    if draw.error == "502_html":
        return html_502_response()
    return None


def _journal(
    sandbox: Sandbox,
    request: Request,
    response: Response,
    *,
    kind: JournalKind,
    model: str | None,
    task_id: str | None,
    note: str | None,
) -> None:
    """Put one answer of the vendor's endpoints in the journal (every answer lands there)."""
    sandbox.store.record(
        time=sandbox.clock(),
        method=request.method,
        path=request.scope["path"],
        status=response.status_code,
        kind=kind,
        model=model,
        task_id=task_id,
        note=note,
    )


async def _pass_gateway(sandbox: Sandbox, step: Literal["submit", "poll"]) -> tuple[ChaosDraw, str | None]:
    """Draw the gateway's chaos for one request and wait out its slowness: the draw and its journal note."""
    draw = sandbox.chaos.draw(sandbox.scenario, step)
    if draw.slow:
        await sandbox.sleep(sandbox.scenario.slow_seconds)
    return draw, _chaos_note(draw)


def _chaos_note(draw: ChaosDraw) -> str | None:
    parts = ([f"chaos:{draw.error}"] if draw.error else []) + (["chaos:slow"] if draw.slow else [])
    return ",".join(parts) or None


@router.post("/v3/async/{model}")
async def submit(model: str, request: Request) -> Response:
    """Validate a body exactly as the provider does, then create a task and answer its id."""
    sandbox: Sandbox = request.app.state.sandbox

    def done(response: Response, *, task_id: str | None = None, note: str | None = None) -> Response:
        _journal(sandbox, request, response, kind="submit", model=model, task_id=task_id, note=note)
        log.info("submit %s -> %s%s", model, response.status_code, f" task_id={task_id}" if task_id else "")
        return response

    denied = sandbox.auth_error(request.headers.get("authorization"))
    if denied is not None:
        return done(denied)
    draw, note = await _pass_gateway(sandbox, "submit")
    limited = _rate_limited(draw)
    if limited is not None:
        return done(limited, note=note)
    request_model = REQUEST_MODELS.get(model)
    if request_model is None:
        return done(error_response(404, "API_NOT_FOUND", f"no such API: /v3/async/{model}"), note=note)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return done(error_response(400, "INVALID_REQUEST_BODY", "request body is not valid JSON"), note=note)
    if not isinstance(body, dict):
        return done(error_response(400, "INVALID_REQUEST_BODY", "request body must be a JSON object"), note=note)
    try:
        validated = request_model.model_validate(body)
    except ValidationError as err:
        message = format_validation_error(err, model=model)
        return done(error_response(400, "INVALID_REQUEST_BODY", message), note=note)
    now = sandbox.clock()
    task_id = str(uuid.uuid4())
    try:
        task = sandbox.planner.plan(task_id=task_id, model=model, request=validated, scenario=sandbox.scenario, now=now)
    except MarkerError as err:
        return done(error_response(400, "INVALID_REQUEST_BODY", str(err)), note=note)
    limit = sandbox.scenario.max_in_flight
    if limit and sandbox.in_flight(now) >= limit:
        message = f"too many tasks in progress (limit {limit}): wait for one to finish"
        return done(error_response(429, "RATE_LIMIT_EXCEEDED", message), note="max_in_flight")
    failure = _server_error(draw, submit=True)
    if failure is not None:
        # The ambiguous submit: the backend made the task but the client only sees a 5xx.
        if sandbox.scenario.submit_error_creates_task:
            sandbox.store.add_task(task)
            return done(failure, task_id=task_id, note=f"{note},task_created")
        return done(failure, note=note)
    sandbox.store.add_task(task)
    return done(json_response({"task_id": task_id}), task_id=task_id, note=note)


async def task_result(request: Request) -> Response:
    """The task's status at this moment, with a freshly signed video URL once it has succeeded."""
    sandbox: Sandbox = request.app.state.sandbox
    task_id = request.query_params.get("task_id") or None
    task = sandbox.store.get_task(task_id) if task_id else None
    model = task.model if task else None

    def done(response: Response, note: str | None = None) -> Response:
        _journal(sandbox, request, response, kind="poll", model=model, task_id=task_id, note=note)
        return response

    denied = sandbox.auth_error(request.headers.get("authorization"))
    if denied is not None:
        return done(denied)
    draw, note = await _pass_gateway(sandbox, "poll")
    failure = _rate_limited(draw) or _server_error(draw, submit=False)
    if failure is not None:
        return done(failure, note)
    if not task_id:
        return done(error_response(400, "INVALID_REQUEST_BODY", "task_id is required"), note)
    if task is None or sandbox.poll_faults.not_found(task):
        return done(error_response(404, "TASK_NOT_FOUND", f"task {task_id} not found"), "not_found" if task else note)
    now = sandbox.clock()
    ttl = sandbox.scenario.url_ttl if task.url_ttl is None else task.url_ttl
    base = sandbox.settings.public_url or str(request.base_url)
    url = sandbox.signer.url(base, task.task_id, now=now, ttl=ttl) if now >= task.completes_at else None
    if url is not None and task.succeeds and sandbox.poll_faults.empty_success(task):
        url, note = None, "empty_success"
    return done(json_response(result_body(task, now, url, ttl)), note)


#: Routes mounted without FastAPI's request machinery (see the module docstring).
plain_routes = [Route("/v3/async/task-result", task_result, methods=["GET"])]
