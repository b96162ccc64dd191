"""Copy finished videos to the user's storage before their signed URLs expire.

The vendor's ``video_url`` is a pre-signed link that lives about an hour. :func:`deliver_videos` streams
each video to an Airflow ``ObjectStoragePath`` (``file://``, ``s3://``, ``gs://``, any fsspec scheme
Airflow supports) in bounded memory, checks the byte count against ``Content-Length``, writes under a
temporary name and then moves it into place (readers never see half a file), retries transient
failures, asks the Task Result API for a fresh URL when the old one has expired, and writes a JSON
sidecar beside each video with what is needed to publish, audit and bill it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import httpx
from airflow.providers.common.compat.sdk import ObjectStoragePath
from pydantic import BaseModel, ConfigDict

from airflow_provider_kling import __version__
from airflow_provider_kling.exceptions import KlingAuthError, KlingError, KlingTransientError, KlingValidationError
from airflow_provider_kling.hooks.retry import error_from_response, error_from_transport, poll_retrying
from airflow_provider_kling.models import TaskResult

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=120.0)
DEFAULT_FILE_NAME = "{kling_task_id}{index}.mp4"
#: Request fields that may carry an image as base64: recorded in the sidecar by size and hash only.
_INLINE_MEDIA_FIELDS = ("image", "end_image")


class UrlExpiredError(KlingTransientError):
    """The signed video URL was refused (expired or revoked): fetch a fresh one and try again."""


class StoredVideo(BaseModel):
    """Where one video landed, and the facts written to its sidecar.

    ``uri`` and ``sidecar_uri`` name the objects without a connection id (``s3://bucket/key``, also when
    ``output_path`` was ``s3://my_conn@bucket/...``), so they are stable asset URIs; ``conn_id`` is the
    Airflow connection they were written with (``None``: the scheme's default credentials). Open one
    again with ``ObjectStoragePath(uri, conn_id=conn_id)``.
    """

    model_config = ConfigDict(frozen=True)

    uri: str
    sidecar_uri: str
    conn_id: str | None = None
    size_bytes: int
    sha256: str
    kling_task_id: str
    model: str | None = None
    seed: int | None = None


def normalise_output_path(output_path: str) -> str:
    """An absolute URI: a bare path becomes ``file://``; anything else must name a scheme.

    Raises :class:`KlingValidationError` naming ``output_path`` for an empty or relative path.
    """
    value = output_path.strip()
    if not value:
        raise KlingValidationError("output_path='': must be a storage URI such as file:///data/video.mp4")
    if "://" in value:
        return value
    if not value.startswith("/"):
        raise KlingValidationError(
            f"output_path={value!r}: must be an absolute path or a URI such as s3://bucket/videos/clip.mp4"
        )
    return f"file://{value}"


def uri_conn_id(uri: str) -> str | None:
    """The connection id a storage URI names in its user part (``s3://my_conn@bucket/key``), if any."""
    userinfo, _, _ = urlsplit(uri).netloc.rpartition("@")
    return userinfo or None


def check_conn_id(uri: str, conn_id: str | None) -> str | None:
    """The connection to write ``uri`` with: ``conn_id`` or the one named in the URI, which must agree.

    Raises :class:`KlingValidationError` when both are given and differ.
    """
    named = uri_conn_id(uri)
    if conn_id and named and named != conn_id:
        raise KlingValidationError(
            f"output_path={uri!r} names connection {named!r} but output_conn_id={conn_id!r}: give one of them"
        )
    return conn_id or named


def storage_path(uri: str, conn_id: str | None = None) -> ObjectStoragePath:
    """``ObjectStoragePath(uri, conn_id=conn_id)``, or a clear error where this installation cannot build one.

    Airflow 3.0's ``ObjectStoragePath`` refuses every URI once universal-pathlib 0.3 is installed, which
    Airflow 3.0.x's own metadata allows (apache/airflow#56369): say so instead of an obscure TypeError.
    """
    try:
        return ObjectStoragePath(uri, conn_id=conn_id) if conn_id else ObjectStoragePath(uri)
    except TypeError as err:
        if "incompatible with ObjectStoragePath" not in str(err):
            raise
        raise KlingValidationError(
            f"output_path={uri!r}: Airflow's ObjectStoragePath cannot open it with universal-pathlib "
            f"{_distribution_version('universal-pathlib')} installed (apache/airflow#56369): install "
            "universal-pathlib<0.3, as Airflow's constraints for 3.0 pin it"
        ) from None


def check_output_path(output_path: str, conn_id: str | None = None) -> str:
    """Normalise ``output_path`` and check that storage can be opened there (no I/O); return it normalised.

    Called when a task starts, so that a path Airflow cannot handle (or a connection id given twice,
    differently) fails before the generation is paid for.
    """
    uri = normalise_output_path(output_path)
    storage_path(uri, check_conn_id(uri, conn_id))
    return uri


def path_conn_id(path: ObjectStoragePath) -> str | None:
    """The connection ``path`` is opened with (a storage option before Airflow 3.1, an attribute since)."""
    conn_id = getattr(path, "conn_id", None)
    if conn_id is None:
        conn_id = (getattr(path, "storage_options", None) or {}).get("conn_id")
    return conn_id or None


def location(path: ObjectStoragePath) -> str:
    """The URI of ``path`` without the connection id ``ObjectStoragePath`` puts in it (``s3://bucket/key``)."""
    uri = str(path)
    conn_id = path_conn_id(path)
    if conn_id:
        uri = uri.replace(f"://{conn_id}@", "://", 1)
    return uri


def _distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # pragma: no cover - only named in an error message
        return "?"


def destinations(
    output_path: str, kling_task_id: str, count: int, conn_id: str | None = None
) -> list[ObjectStoragePath]:
    """Where each of ``count`` videos goes, opened with ``conn_id`` (or the connection the URI names).

    ``output_path`` ending in ``/`` is a folder (files are named after the Kling task id). A file name
    with several videos gets ``-1``, ``-2``... before its suffix.
    """
    base = normalise_output_path(output_path)
    conn_id = check_conn_id(base, conn_id)
    if base.endswith("/"):
        return [
            storage_path(base + DEFAULT_FILE_NAME.format(kling_task_id=kling_task_id, index=_index(i, count)), conn_id)
            for i in range(count)
        ]
    path = storage_path(base, conn_id)
    if count == 1:
        return [path]
    return [path.parent / f"{path.stem}-{i + 1}{path.suffix}" for i in range(count)]


def _index(i: int, count: int) -> str:
    return "" if count == 1 else f"-{i + 1}"


def deliver_videos(
    result: TaskResult,
    output_path: str,
    *,
    refresh: Callable[[], TaskResult],
    model: str | None = None,
    request: Mapping[str, Any] | None = None,
    context_facts: Mapping[str, Any] | None = None,
    max_attempts: int = 5,
    conn_id: str | None = None,
) -> list[StoredVideo]:
    """Copy every video of a succeeded ``result`` to ``output_path``; return where each landed.

    :param refresh: Returns a fresh Task Result (new signed URLs) when a URL has expired.
    :param conn_id: The Airflow connection to write with (e.g. an ``aws`` connection for ``s3://``);
        default: the one named in ``output_path`` (``s3://my_conn@bucket/...``), else the scheme's default
        credentials.
    :param request: The request body, recorded in the sidecar (inline images by size and hash only).
    :param context_facts: Extra facts for the sidecar (e.g. dag_id, run_id, task_id, map_index).

    Example::

        stored = deliver_videos(result, "file:///data/2026-11-22/teaser.mp4", refresh=lambda: hook.get_task_result(id))
    """
    kling_task_id = result.task.task_id
    targets = destinations(output_path, kling_task_id, len(result.videos), conn_id)
    urls = _SignedUrls(result, refresh)
    stored = []
    with httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as client:
        for index, target in enumerate(targets):
            size, digest = _copy_with_retries(client, urls, index, target, max_attempts=max_attempts)
            sidecar = _write_sidecar(
                target,
                {
                    "kling_task_id": kling_task_id,
                    "model": model,
                    "request": _recordable(request or {}),
                    "seed": result.extra.seed,
                    "duration_seconds": (request or {}).get("duration"),
                    "size_bytes": size,
                    "sha256": digest,
                    "video_type": result.videos[index].video_type,
                    "vendor_timings_ms": {
                        "submit": result.extra.debug_info.submit_time_ms,
                        "execute": result.extra.debug_info.execute_time_ms,
                        "complete": result.extra.debug_info.complete_time_ms,
                    },
                    "stored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "uri": location(target),
                    "conn_id": path_conn_id(target),
                    "provider_version": __version__,
                    **dict(context_facts or {}),
                },
            )
            log.info(
                "Stored Kling video %s (%d bytes, sha256 %s) at %s", kling_task_id, size, digest[:12], location(target)
            )
            stored.append(
                StoredVideo(
                    uri=location(target),
                    sidecar_uri=location(sidecar),
                    conn_id=path_conn_id(target),
                    size_bytes=size,
                    sha256=digest,
                    kling_task_id=kling_task_id,
                    model=model,
                    seed=result.extra.seed,
                )
            )
    return stored


class _SignedUrls:
    """The current signed URLs of a result; fetched again from the Task Result API once they expire."""

    def __init__(self, result: TaskResult, refresh: Callable[[], TaskResult]) -> None:
        self._result = result
        self._refresh = refresh

    @property
    def kling_task_id(self) -> str:
        return self._result.task.task_id

    def url(self, index: int) -> str:
        return self._result.videos[index].video_url

    def refresh(self) -> None:
        log.warning("The signed URL of Kling task %s has expired: asking for a fresh one", self.kling_task_id)
        self._result = self._refresh()


def _copy_with_retries(
    client: httpx.Client, urls: _SignedUrls, index: int, target: ObjectStoragePath, *, max_attempts: int
) -> tuple[int, str]:
    for attempt in poll_retrying(max_attempts=max_attempts, initial_wait=0.5, max_wait=10.0):
        with attempt:
            try:
                return copy_url_atomically(client, urls.url(index), target, kling_task_id=urls.kling_task_id)
            except UrlExpiredError:
                urls.refresh()
                raise
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def copy_url_atomically(
    client: httpx.Client, url: str, target: ObjectStoragePath, *, kling_task_id: str | None = None
) -> tuple[int, str]:
    """Stream ``url`` into ``target`` via a temporary sibling, then move it into place.

    Returns ``(size in bytes, sha256 hex)``. Memory use is one chunk, whatever the video's size. On any
    failure the temporary file is removed and nothing appears under ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.{uuid.uuid4().hex}.partial"
    digest = hashlib.sha256()
    size = 0
    try:
        with client.stream("GET", url) as response:
            if response.is_error:
                raise _download_error(response, kling_task_id)
            # Content-Length counts encoded bytes: only comparable when the body is not compressed.
            encoding = response.headers.get("Content-Encoding", "identity").lower()
            expected = response.headers.get("Content-Length") if encoding == "identity" else None
            with partial.open("wb") as sink:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    sink.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        if expected is not None and int(expected) != size:
            raise KlingTransientError(
                f"video download was cut short: got {size} of {expected} bytes", kling_task_id=kling_task_id
            )
        partial.rename(target)
    except httpx.HTTPError as err:
        _remove_quietly(partial)
        # The message names scheme, host and path only: the signature in the query stays out of logs.
        raise error_from_transport(err, kling_task_id=kling_task_id) from None
    except BaseException:
        _remove_quietly(partial)
        raise
    return size, digest.hexdigest()


def _download_error(response: httpx.Response, kling_task_id: str | None) -> KlingError:
    """Classify a failed download as every other HTTP call is (:mod:`airflow_provider_kling.hooks.retry`).

    A 401 or 403 from the storage host means the signed URL has expired (or was revoked): that one
    becomes :class:`UrlExpiredError`, which fetches a fresh URL before the next attempt.
    """
    response.read()  # an error body is short; the classification reads the vendor's reason from it
    error = error_from_response(response, kling_task_id=kling_task_id)
    if isinstance(error, KlingAuthError):
        return UrlExpiredError(
            f"{error.message} (the signed video URL has expired or was revoked)",
            http_status=error.http_status,
            reason=error.reason,
            kling_task_id=kling_task_id,
        )
    return error


def _write_sidecar(video: ObjectStoragePath, facts: Mapping[str, Any]) -> ObjectStoragePath:
    sidecar = video.parent / f"{video.stem}.json"
    partial = video.parent / f".{sidecar.name}.{uuid.uuid4().hex}.partial"
    try:
        partial.write_text(json.dumps(facts, indent=2, sort_keys=True, default=str))
        partial.rename(sidecar)
    except BaseException:
        _remove_quietly(partial)
        raise
    return sidecar


def _recordable(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request as recorded in the sidecar: inline images replaced by their size and hash."""
    recorded = dict(request)
    for name in _INLINE_MEDIA_FIELDS:
        value = recorded.get(name)
        if isinstance(value, bytes):
            recorded[name] = f"<inline image: {len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()}>"
        elif isinstance(value, str) and not value.startswith(("http://", "https://", "file://")):
            fingerprint = hashlib.sha256(value.encode()).hexdigest()
            recorded[name] = f"<inline image: {len(value)} base64 chars, sha256 {fingerprint}>"
        elif value is not None:
            recorded[name] = str(value)
    return recorded


def _remove_quietly(path: ObjectStoragePath) -> None:
    try:
        if path.exists():
            path.unlink()
    except OSError:  # pragma: no cover - best effort cleanup
        log.warning("Could not remove partial file %s", path)
