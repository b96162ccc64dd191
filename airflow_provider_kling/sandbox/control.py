"""The sandbox's own endpoints under ``/sandbox/``: health, config, journal, tasks and video downloads.

None of them needs an API key, and none is subject to chaos: they are how a test looks behind the
curtain, and the video links are authorised by their signature alone, as pre-signed URLs are.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from airflow_provider_kling.models import TaskStatus
from airflow_provider_kling.sandbox.media import MEDIA_PREFIX, video_for
from airflow_provider_kling.sandbox.responses import error_response, json_response, s3_error_response
from airflow_provider_kling.sandbox.state import ConfigError, Sandbox
from airflow_provider_kling.sandbox.store import TaskRecord
from airflow_provider_kling.sandbox.timeline import status_at

router = APIRouter(prefix="/sandbox")

JOURNAL_KINDS = ("submit", "poll", "media")


def _sandbox(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


@router.get("/health")
async def health(request: Request) -> Response:
    """Liveness: 200 with the process id, the number of tasks and whether state is persisted."""
    sandbox = _sandbox(request)
    state_file = sandbox.settings.state_file
    return json_response(
        {
            "status": "ok",
            "pid": os.getpid(),
            "tasks": len(sandbox.store),
            "state_file": str(state_file) if state_file else None,
            "api_key_required": sandbox.settings.api_key is not None,
        }
    )


@router.get("/config")
async def get_config(request: Request) -> Response:
    """The current scenario (every runtime setting)."""
    return json_response(_sandbox(request).scenario.model_dump())


@router.post("/config")
async def post_config(request: Request) -> Response:
    """Change some runtime settings (a JSON object of scenario fields); answers the new scenario."""
    sandbox = _sandbox(request)
    try:
        changes = json.loads(await request.body() or b"{}")
    except ValueError:
        return error_response(400, "INVALID_REQUEST_BODY", "config body is not valid JSON")
    if not isinstance(changes, dict):
        return error_response(400, "INVALID_REQUEST_BODY", "config body must be a JSON object")
    try:
        scenario = sandbox.configure(changes)
    except ConfigError as err:
        return error_response(400, "INVALID_REQUEST_BODY", str(err))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, item['loc'])) or 'config'}: {item['msg']}" for item in err.errors(include_url=False)
        )
        return error_response(400, "INVALID_REQUEST_BODY", problems)
    return json_response(scenario.model_dump())


@router.delete("/config")
async def reset_config(request: Request) -> Response:
    """Return to the scenario given by the flags and environment at start."""
    return json_response(_sandbox(request).reset_config().model_dump())


@router.post("/api-key")
async def rotate_api_key(request: Request) -> Response:
    """Rotate the accepted API key: ``{"api_key": "..."}``. The old key is refused from now on.

    The answer never echoes the key.
    """
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        body = None
    key = body.get("api_key") if isinstance(body, dict) else None
    if not isinstance(key, str) or not key.strip():
        return error_response(400, "INVALID_REQUEST_BODY", 'body must be {"api_key": "<non-empty key>"}')
    _sandbox(request).rotate_api_key(key.strip())
    return json_response({"status": "rotated"})


@router.get("/journal")
async def get_journal(request: Request) -> Response:
    """Requests seen, oldest first; filter with ``?task_id=``, ``?method=`` and ``?kind=``."""
    params = request.query_params
    kind = params.get("kind")
    if kind is not None and kind not in JOURNAL_KINDS:
        return error_response(400, "INVALID_REQUEST_BODY", f"kind must be one of {', '.join(JOURNAL_KINDS)}")
    entries = _sandbox(request).store.journal(task_id=params.get("task_id"), method=params.get("method"), kind=kind)
    return json_response([entry.as_dict() for entry in entries])


@router.delete("/journal")
async def clear_journal(request: Request) -> Response:
    """Forget every journal entry."""
    _sandbox(request).store.clear_journal()
    return json_response({"status": "cleared"})


def _task_view(task: TaskRecord, now: float) -> dict[str, Any]:
    status, progress, _ = status_at(task, now)
    return {
        "task_id": task.task_id,
        "model": task.model,
        "status": status.value,
        "progress_percent": progress,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "completes_at": task.completes_at,
        "outcome": TaskStatus.SUCCEED.value if task.succeeds else TaskStatus.FAILED.value,
        "reason": task.reason,
        "markers": task.markers,
    }


@router.get("/tasks")
async def list_tasks(request: Request) -> Response:
    """Every task, oldest first, with its planned timestamps (epoch seconds) and current status."""
    sandbox = _sandbox(request)
    now = sandbox.clock()
    wanted = request.query_params.get("task_id")
    tasks = [task for task in sandbox.store.tasks() if wanted is None or task.task_id == wanted]
    return json_response([_task_view(task, now) for task in tasks])


@router.delete("/tasks")
async def clear_tasks(request: Request) -> Response:
    """Forget every task (their ids then answer TASK_NOT_FOUND)."""
    _sandbox(request).store.clear_tasks()
    return json_response({"status": "cleared"})


@router.api_route(MEDIA_PREFIX.removeprefix("/sandbox") + "{name}", methods=["GET", "HEAD"])
async def media(name: str, request: Request) -> Response:
    """The task's own video, for a link signed by Task Result that has not expired (``Range`` honoured)."""
    sandbox = _sandbox(request)
    task_id = name.removesuffix(".mp4")
    params = request.query_params
    now = sandbox.clock()
    refusal = sandbox.signer.refusal(task_id, params.get("expires"), params.get("signature"), now=now)
    task = sandbox.store.get_task(task_id)
    response: Response
    if not name.endswith(".mp4") or refusal == "missing":
        response = s3_error_response(403, "AccessDenied", "Query-string authentication requires a signature")
    elif refusal == "signature":
        response = s3_error_response(403, "SignatureDoesNotMatch", "The request signature we calculated does not match")
    elif refusal == "expired":
        response = s3_error_response(403, "AccessDenied", "Request has expired")
    elif task is None or status_at(task, now)[0] is not TaskStatus.SUCCEED:
        response = s3_error_response(404, "NoSuchKey", "The specified key does not exist.")
    else:
        response = _video_response(video_for(task_id), request)
    status = response.status_code
    sandbox.store.record(
        time=now,
        method=request.method,
        path=request.scope["path"],
        status=status,
        kind="media",
        model=task.model if task else None,
        task_id=task_id,
    )
    return response


def _video_response(data: bytes, request: Request) -> Response:
    """200 with the whole video, or 206 with one ``Range: bytes=a-b`` slice (what downloaders ask for)."""
    headers = {"accept-ranges": "bytes"}
    wanted = request.headers.get("range", "")
    first, _, last = wanted.removeprefix("bytes=").partition("-")
    if wanted.startswith("bytes=") and "," not in wanted and (first.isdigit() or last.isdigit()):
        if first.isdigit():
            start, end = int(first), min(int(last), len(data) - 1) if last.isdigit() else len(data) - 1
        else:  # a suffix range: the last N bytes
            start, end = max(0, len(data) - int(last)), len(data) - 1
        if start > end:
            return Response(status_code=416, headers={**headers, "content-range": f"bytes */{len(data)}"})
        headers["content-range"] = f"bytes {start}-{end}/{len(data)}"
        body = data[start : end + 1] if request.method == "GET" else b""
        return Response(body, status_code=206, media_type="video/mp4", headers=headers)
    if request.method == "HEAD":
        return Response(status_code=200, media_type="video/mp4", headers={**headers, "content-length": str(len(data))})
    return Response(data, status_code=200, media_type="video/mp4", headers=headers)
