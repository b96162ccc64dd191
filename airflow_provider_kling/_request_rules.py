"""The one rule for what is validated before a submit: known models strictly, unknown ones as given.

Shared by the hook (which refuses to send anything else) and the operators (which check a request when
the task starts, before the hook is reached), so both say the same thing about the same request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_kling.exceptions import KlingValidationError
from airflow_provider_kling.models import REQUEST_MODELS, KlingRequest, build_request
from airflow_provider_kling.models.requests import MODEL_NAME_PATTERN


def prepare_request(
    model: str, request: KlingRequest | Mapping[str, Any], *, log: Any = None
) -> KlingRequest | dict[str, Any]:
    """The request for endpoint ``model``: typed and validated for a known model, the raw dict otherwise.

    A model released after this provider is sent unvalidated (its rules are not known here); ``log``,
    when given, says so. A model name that cannot be an endpoint is refused, naming ``model``.

    Raises :class:`KlingValidationError` naming the field and the rule.
    """
    if not MODEL_NAME_PATTERN.fullmatch(model):
        raise KlingValidationError(
            f"model={model!r}: must be a Kling endpoint name such as kling-v3.0-std-t2v "
            "(lower-case letters, digits, dots and dashes)"
        )
    if model in REQUEST_MODELS or isinstance(request, KlingRequest):
        return build_request(model, request)
    if log is not None:
        log.warning("Model %s is unknown to this provider: its payload is sent unvalidated", model)
    return dict(request)
