"""Signed video URLs and the per-task clip they serve.

Real results point at a pre-signed object-store URL that expires; the sandbox imitates that with an
HMAC over the task id and an expiry time, re-signed on every Task Result call.

Every task gets its own video: the bundled clip followed by one top-level ``free`` box that names the
task. Players skip ``free`` boxes, so it stays a valid MP4, and a test can tell which task a stored file
came from (:func:`task_id_of`) and that it is whole (:func:`video_for` gives the exact bytes).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import struct
from importlib import resources
from pathlib import Path
from urllib.parse import quote

#: A one-second 160x90 H.264/AAC test pattern: the start of every successful task's video.
MEDIA_FILE = Path(str(resources.files("airflow_provider_kling.sandbox") / "assets" / "sample.mp4"))

MEDIA_PREFIX = "/sandbox/media/"

#: What the ``free`` box that ends each video holds before the task id.
TASK_ID_TAG = b"kling-sandbox-task-id:"
_BOX_HEADER = struct.Struct(">I4s")


@functools.cache
def _clip() -> bytes:
    return MEDIA_FILE.read_bytes()


def video_for(task_id: str) -> bytes:
    """The MP4 the sandbox serves for ``task_id``: the bundled clip plus a ``free`` box naming the task."""
    payload = TASK_ID_TAG + task_id.encode()
    return _clip() + _BOX_HEADER.pack(_BOX_HEADER.size + len(payload), b"free") + payload


def task_id_of(data: bytes) -> str | None:
    """The task id an MP4 from the sandbox names, or ``None`` if it names none or its boxes do not add up.

    Walks the top-level boxes: a truncated or padded file (a half-written copy) has a box running past
    the end, or bytes after the last one, and answers ``None``.
    """
    offset, found = 0, None
    while offset < len(data):
        if len(data) - offset < _BOX_HEADER.size:
            return None
        size, kind = _BOX_HEADER.unpack_from(data, offset)
        if size < _BOX_HEADER.size or offset + size > len(data):
            return None
        body = data[offset + _BOX_HEADER.size : offset + size]
        if kind == b"free" and body.startswith(TASK_ID_TAG):
            found = body[len(TASK_ID_TAG) :].decode(errors="replace")
        offset += size
    return found


class UrlSigner:
    """Signs and checks ``/sandbox/media/<task_id>.mp4?expires=...&signature=...`` links."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def signature(self, task_id: str, expires: int) -> str:
        """The hex HMAC-SHA256 of ``task_id`` and ``expires``."""
        message = f"{task_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, base_url: str, task_id: str, *, now: float, ttl: int) -> str:
        """A link to the task's video that stops working ``ttl`` seconds after ``now``."""
        expires = math.ceil(now + ttl)
        return (
            f"{base_url.rstrip('/')}{MEDIA_PREFIX}{quote(task_id)}.mp4"
            f"?expires={expires}&signature={self.signature(task_id, expires)}"
        )

    def refusal(self, task_id: str, expires: str | None, signature: str | None, *, now: float) -> str | None:
        """Why a link is refused (``"missing"``, ``"signature"`` or ``"expired"``), or ``None`` if valid."""
        if not expires or not signature or not expires.isdigit():
            return "missing"
        if not hmac.compare_digest(self.signature(task_id, int(expires)), signature):
            return "signature"
        if now > int(expires):
            return "expired"
        return None
