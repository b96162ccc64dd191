"""Pydantic v2 models: the single source of truth for Kling request and response shapes.

Example::

    from airflow_provider_kling.models import TextToVideoRequest, build_request

    request = build_request("kling-v3.0-std-t2v", {"prompt": "a red fox in snow", "duration": 5})
"""

from __future__ import annotations

from airflow_provider_kling.models.events import TaskEvent
from airflow_provider_kling.models.images import check_image_bytes, encode_local_image
from airflow_provider_kling.models.requests import (
    KNOWN_MODELS,
    REQUEST_MODELS,
    ImageToVideoRequest,
    KlingRequest,
    MotionControlRequest,
    MultiPromptShot,
    ProTextToVideoRequest,
    TextToVideoRequest,
    build_request,
    format_validation_error,
)
from airflow_provider_kling.models.results import (
    ApiError,
    DebugInfo,
    ResultExtra,
    SubmitResponse,
    TaskInfo,
    TaskResult,
    TaskStatus,
    Video,
)

__all__ = [
    "KNOWN_MODELS",
    "REQUEST_MODELS",
    "ApiError",
    "DebugInfo",
    "ImageToVideoRequest",
    "KlingRequest",
    "MotionControlRequest",
    "MultiPromptShot",
    "ProTextToVideoRequest",
    "ResultExtra",
    "SubmitResponse",
    "TaskEvent",
    "TaskInfo",
    "TaskResult",
    "TaskStatus",
    "TextToVideoRequest",
    "Video",
    "build_request",
    "check_image_bytes",
    "encode_local_image",
    "format_validation_error",
]
