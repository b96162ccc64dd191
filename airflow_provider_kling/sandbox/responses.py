"""The bodies the sandbox answers with: vendor JSON errors, an nginx HTML page and S3 XML errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

#: What nginx in front of an API answers when the upstream is down: HTML, not JSON.
NGINX_502_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer, serialised directly (FastAPI's encoder is the slow part of a hot endpoint)."""
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def error_response(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """A vendor error: ``{"code": status, "reason": ..., "message": ..., "metadata": {}}``."""
    body = {"code": status, "reason": reason, "message": message, "metadata": {}}
    return json_response(body, status, headers)


def html_502_response() -> Response:
    """The HTML page a reverse proxy answers for a dead upstream."""
    return Response(NGINX_502_HTML, status_code=502, media_type="text/html")


def s3_error_response(status: int, code: str, message: str) -> Response:
    """An object-store style XML error, as a pre-signed URL answers when it is refused."""
    xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(xml, status_code=status, media_type="application/xml")
