"""Signed video URLs and the bundled clip they serve.

Real results point at a pre-signed object-store URL that expires; the sandbox imitates that with an
HMAC over the task id and an expiry time, re-signed on every Task Result call.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from importlib import resources
from pathlib import Path
from urllib.parse import quote

#: A one-second 160x90 H.264/AAC test pattern, served for every successful task.
MEDIA_FILE = Path(str(resources.files("airflow_provider_kling.sandbox") / "assets" / "sample.mp4"))

MEDIA_PREFIX = "/sandbox/media/"


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
