"""OpenLineage for Kling tasks: what a generation read (prompt, images, video) and wrote (the stored video).

The submit operators and :class:`~airflow_provider_kling.sensors.kling.KlingTaskSensor` list
:class:`KlingLineageMixin` among their bases. With the OpenLineage provider installed (the
``openlineage`` extra), its listener calls the mixin's methods and every run reports:

- a ``kling`` run facet (:func:`generation_facet`): the model, the prompt, the negative prompt, the
  shot prompts of a multi-shot video, the Kling task id and the final status;
- an ``externalQuery`` run facet naming the Kling task id (source ``kling``), the standard facet for a
  job run by another system;
- **inputs**: one dataset per image or video URL in the request (``image``, ``end_image``, ``video``);
  inline images (data URIs, bytes) are no dataset;
- **outputs**: one dataset per video copied to ``output_path`` (``stored[].uri``). A video left at the
  vendor's signed URL is no output: that URL expires within the hour.

URLs become datasets the OpenLineage naming way (``s3://bucket`` + key, ``https://host`` + path,
``file`` + path), without their query string or fragment: a signed URL's signature is a credential
and never reaches a lineage backend.

Without the provider nothing here is imported: the methods return ``None``, which the provider's
extractor (if any) reads as "no lineage".
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_kling._completion import XCOM_KLING_TASK_ID

#: Name of the custom run facet.
KLING_FACET = "kling"
#: ``source`` of the ``externalQuery`` run facet.
EXTERNAL_SOURCE = "kling"
#: Request fields that may name an input file.
MEDIA_FIELDS = ("image", "end_image", "video")


def dataset_name(uri: str | PurePath) -> tuple[str, str] | None:
    """OpenLineage ``(namespace, name)`` of a URI or local path, or ``None`` for inline data.

    Example::

        dataset_name("s3://bucket/kling/0.mp4")  # ("s3://bucket", "kling/0.mp4")
        dataset_name("https://cdn.example.com/a.png?sig=x")  # ("https://cdn.example.com", "/a.png")
        dataset_name("/data/cat.png")  # ("file", "/data/cat.png")
    """
    if isinstance(uri, PurePath):
        return "file", str(uri)
    if not isinstance(uri, str) or not uri:
        return None
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "" and uri.startswith("/"):
        return "file", parts.path
    if scheme in ("", "data"):
        return None
    if scheme == "file":
        return ("file" if not parts.hostname else f"file://{parts.hostname}"), parts.path
    # Object stores name the object by its key, without the leading slash; web URLs keep the path.
    # netloc can carry an Airflow connection id (s3://conn@bucket/key): only the bucket names the data.
    host = parts.hostname or ""
    if parts.port is not None and scheme in ("http", "https"):
        host = f"{host}:{parts.port}"
    name = parts.path if scheme in ("http", "https") else parts.path.lstrip("/")
    return f"{scheme}://{host}", name or "/"


def generation_facet(
    *,
    model: str | None,
    request: Mapping[str, Any] | None,
    kling_task_id: str | None,
    status: str | None,
) -> dict[str, Any]:
    """The fields of the ``kling`` run facet (``None`` values left out)."""
    request = request or {}
    shots = request.get("multi_prompt") or []
    fields: dict[str, Any] = {
        "model": model,
        "prompt": request.get("prompt"),
        "negative_prompt": request.get("negative_prompt"),
        "shot_prompts": [shot.get("prompt") for shot in shots if isinstance(shot, Mapping)] or None,
        "kling_task_id": kling_task_id,
        "status": status,
    }
    return {key: value for key, value in fields.items() if value is not None}


def input_names(request: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(namespace, name)`` of every media file the request reads."""
    names = []
    for field in MEDIA_FIELDS:
        value = (request or {}).get(field)
        name = dataset_name(value) if isinstance(value, str | PurePath) else None
        if name is not None and name not in names:
            names.append(name)
    return names


def output_names(summary: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(namespace, name)`` of every stored video in a task's return value."""
    names = []
    for video in (summary or {}).get("stored") or []:
        uri = video.get("uri") if isinstance(video, Mapping) else None
        name = dataset_name(uri) if isinstance(uri, str) else None
        if name is not None and name not in names:
            names.append(name)
    return names


@functools.cache
def _facet_class() -> type:
    """The ``kling`` run facet class, defined on first use: it subclasses OpenLineage's ``RunFacet``."""
    import attrs
    from openlineage.client.facet_v2 import RunFacet

    @attrs.define
    class KlingGenerationRunFacet(RunFacet):
        """One Kling generation: the model, what it was asked, the vendor's task id and outcome."""

        model: str | None = None
        prompt: str | None = None
        negative_prompt: str | None = None
        shot_prompts: list[str] | None = None
        kling_task_id: str | None = None
        status: str | None = None

    return KlingGenerationRunFacet


def operator_lineage(
    *,
    model: str | None,
    request: Mapping[str, Any] | None,
    kling_task_id: str | None,
    status: str | None,
    summary: Mapping[str, Any] | None,
) -> Any:
    """Build the provider's ``OperatorLineage``; ``None`` when the OpenLineage provider is not installed."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset
        from openlineage.client.facet_v2 import external_query_run
    except ImportError:
        return None
    run_facets: dict[str, Any] = {
        KLING_FACET: _facet_class()(
            **generation_facet(model=model, request=request, kling_task_id=kling_task_id, status=status)
        )
    }
    if kling_task_id:
        run_facets["externalQuery"] = external_query_run.ExternalQueryRunFacet(
            externalQueryId=kling_task_id, source=EXTERNAL_SOURCE
        )

    def datasets(names: Iterable[tuple[str, str]]) -> list[Any]:
        return [Dataset(namespace=namespace, name=name) for namespace, name in names]

    return OperatorLineage(
        inputs=datasets(input_names(request)),
        outputs=datasets(output_names(summary)),
        run_facets=run_facets,
    )


class KlingLineageMixin:
    """OpenLineage facet methods for the Kling operators and sensor (see the module's description).

    The OpenLineage provider calls ``get_openlineage_facets_on_start`` when the task starts (the request
    only) and ``get_openlineage_facets_on_complete`` when it ends, also after a failure (the request,
    the Kling task id, the status and the stored videos, read from the task's return value).
    """

    def get_openlineage_facets_on_start(self) -> Any:
        """Lineage known before anything is sent: the model, the prompt and the input media."""
        return operator_lineage(
            model=self._lineage_model(), request=self._lineage_request(), kling_task_id=None, status=None, summary=None
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Lineage of the finished task: inputs, the Kling task id and status, the stored videos."""
        summary = self._lineage_summary(task_instance)
        kling_task_id = (summary or {}).get("kling_task_id") or self._lineage_task_id(task_instance)
        return operator_lineage(
            model=(summary or {}).get("model") or self._lineage_model(),
            request=self._lineage_request(),
            kling_task_id=str(kling_task_id) if kling_task_id else None,
            status=(summary or {}).get("status"),
            summary=summary,
        )

    # Read from the operator or sensor duck-typed, so the mixin needs nothing from them but these names.

    def _lineage_model(self) -> str | None:
        model = getattr(self, "model", None)
        return model if isinstance(model, str) else None

    def _lineage_request(self) -> Mapping[str, Any] | None:
        request_values = getattr(self, "request_values", None)
        return request_values() if callable(request_values) else None

    def _lineage_summary(self, task_instance: Any) -> Mapping[str, Any] | None:
        summary = getattr(self, "_summary", None)
        if not isinstance(summary, Mapping):
            summary = _xcom(task_instance, "return_value")
        return summary if isinstance(summary, Mapping) else None

    def _lineage_task_id(self, task_instance: Any) -> str | None:
        # A failed task returned nothing; the id pushed right after the submit still names the generation.
        pushed = _xcom(task_instance, XCOM_KLING_TASK_ID)
        if isinstance(pushed, str) and pushed:
            return pushed
        given = getattr(self, "kling_task_id", None)
        return given if isinstance(given, str) and given and "{{" not in given else None


def _xcom(task_instance: Any, key: str) -> Any:
    """This task instance's own XCom ``key``, or ``None`` if it cannot be read."""
    if task_instance is None:
        return None
    try:
        return task_instance.xcom_pull(task_ids=task_instance.task_id, key=key)
    except Exception:
        # Lineage is best effort: a missing XCom backend must not fail the task's lineage event.
        return None
