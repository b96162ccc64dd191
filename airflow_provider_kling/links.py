"""The "Kling video" button on a task: opens the lasting copy of the video when there is one.

Which address the button opens, decided once when the task finishes (:func:`video_link`):

- the video was stored in an object store with a web console (``s3://``, ``gs://``): the object's page
  in that console (AWS S3 console, Google Cloud console), where whoever has access can play or
  download it for as long as it is kept;
- the video was stored at an ``http(s)://`` address: that address;
- otherwise (not stored, or stored as a local ``file://`` path, which a browser refuses to open from a
  web page and which names a path on the worker, not on the viewer's machine): the vendor's signed URL,
  only while it is valid. The vendor says how long (``video_url_ttl``, about an hour); after that the
  button opens nothing rather than an expired link. The stored path stays in the task's return value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

from airflow_provider_kling import clock

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

#: XCom key holding the URL the link opens (see the module docstring).
XCOM_VIDEO_URL = "kling_video_url"
#: XCom key holding when that URL stops working (epoch seconds), or ``None`` for a lasting copy.
XCOM_VIDEO_URL_EXPIRES_AT = "kling_video_url_expires_at"

_S3_CONSOLE = "https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}"
_GCS_CONSOLE = "https://console.cloud.google.com/storage/browser/_details/{bucket}/{key}"


def console_url(uri: str) -> str | None:
    """The web address of a stored object: its console page, or the URI itself for ``http(s)``.

    ``None`` for a URI no browser can open from a web page (``file://``, a store without a known
    console). The console asks the viewer to sign in; the link grants no access by itself.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return uri
    bucket = parts.hostname or ""
    if "@" in parts.netloc:  # a connection id before the bucket: s3://aws_conn@bucket/key
        bucket = parts.netloc.rsplit("@", 1)[1]
    key = parts.path.lstrip("/")
    if not bucket or not key:
        return None
    if scheme in ("s3", "s3a"):
        return _S3_CONSOLE.format(bucket=bucket, key=quote(key, safe="/"))
    if scheme in ("gs", "gcs"):
        return _GCS_CONSOLE.format(bucket=bucket, key=quote(key, safe="/"))
    return None


def video_link(
    vendor_url: str, vendor_ttl_seconds: int | None, stored_uri: str | None = None
) -> tuple[str, float | None]:
    """The URL the "Kling video" button opens and when it stops working (``None``: it lasts).

    The stored copy's web address when it has one; else the vendor's signed URL, valid for
    ``vendor_ttl_seconds`` from now (unknown TTL: no expiry is assumed).
    """
    if stored_uri:
        lasting = console_url(stored_uri)
        if lasting:
            return lasting, None
    expires_at = clock.now() + vendor_ttl_seconds if vendor_ttl_seconds else None
    return vendor_url, expires_at


class KlingVideoLink(BaseOperatorLink):
    """Extra link to the video a Kling task produced, read from XCom."""

    name = "Kling video"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """The video's address, or an empty string before the task finished or once the address expired."""
        url = XCom.get_value(ti_key=ti_key, key=XCOM_VIDEO_URL)
        if not url:
            return ""
        expires_at = XCom.get_value(ti_key=ti_key, key=XCOM_VIDEO_URL_EXPIRES_AT)
        if expires_at is not None and clock.now() >= float(expires_at):
            return ""
        return str(url)
