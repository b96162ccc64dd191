"""Request bodies for every Kling v3.0 endpoint: the single source of truth for what may be sent.

Each model enforces the vendor's documented rules, so a bad request fails here, on the user's machine,
before any money is spent. :func:`build_request` turns a model name and a plain mapping (for example the
rendered template fields of an operator) into the right model, and :func:`format_validation_error` turns
pydantic's error list into one line that names each field and the rule it broke.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from airflow_provider_kling.models.images import check_image_reference

MAX_PROMPT_CHARS = 2500
#: What an endpoint name may look like; it becomes part of the URL path, so nothing else is allowed.
MODEL_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9.\-]{0,99}")
MIN_DURATION_SECONDS = 3
MAX_DURATION_SECONDS = 15


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


def _not_a_boolean(rule: str) -> Any:
    """A before-validator refusing ``True``/``False`` where the vendor documents a number.

    Pydantic's lax mode reads a boolean as 1 or 0, so ``cfg_scale=True`` would quietly become ``1.0``.
    Strings such as ``"5"`` (rendered templates) are still converted.
    """

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{rule}, not true or false")
        return value

    return BeforeValidator(check)


Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS), AfterValidator(_not_blank)]
OptionalText = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
Duration = Annotated[
    int,
    Field(ge=MIN_DURATION_SECONDS, le=MAX_DURATION_SECONDS, strict=False),
    _not_a_boolean(f"must be a whole number of seconds between {MIN_DURATION_SECONDS} and {MAX_DURATION_SECONDS}"),
]
CfgScale = Annotated[float, Field(ge=0.0, le=1.0), _not_a_boolean("must be a number between 0 and 1")]
AspectRatio = Literal["16:9", "9:16", "1:1"]


class KlingRequest(BaseModel):
    """Base of every request body.

    Unknown fields are refused (a typo such as ``durration`` would otherwise be silently dropped by the
    vendor and the user would pay for a video made with defaults). ``None`` fields are left out of the
    payload, so the vendor applies its own defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    #: The endpoints (model names) this body is valid for.
    endpoints: ClassVar[tuple[str, ...]] = ()

    def to_payload(self) -> dict[str, Any]:
        """Return the JSON body to POST: ``None`` values dropped, nested models as dicts.

        Example::

            TextToVideoRequest(prompt="a red fox", duration=5).to_payload()
            # {"prompt": "a red fox", "duration": 5}
        """
        return self.model_dump(mode="json", exclude_none=True)


class MultiPromptShot(BaseModel):
    """One shot of a multi-shot video: its prompt and its length in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: Prompt
    duration: Duration | None = None


def _shot_kind(value: Any) -> str:
    return _TEXT_SHOT if isinstance(value, str) else _OBJECT_SHOT


# Tags of the two item forms; they appear in pydantic's error locations and are hidden from messages.
_OBJECT_SHOT, _TEXT_SHOT = "shot", "text"

# The pro endpoints' item type is not confirmed by the vendor (objects or plain strings), so both are
# accepted and sent as given. The discriminator picks the form up front, so an error names one rule
# instead of one per form.
Shot = Annotated[
    Annotated[MultiPromptShot, Tag(_OBJECT_SHOT)] | Annotated[Prompt, Tag(_TEXT_SHOT)],
    Discriminator(_shot_kind),
]
ShotList = Annotated[list[Shot], Field(min_length=1)]


def _check_shot_durations(shots: list[Any] | None, info: ValidationInfo) -> list[Any] | None:
    """The shots divide one video, so their lengths add up to that video's (3 to 15 seconds).

    Only lengths that are given count: a shot without one (or a plain string) is left to the vendor. A total
    over 15 seconds is refused, and so is a total that contradicts an explicit ``duration``.
    """
    if not shots:
        return shots
    given = [shot.duration for shot in shots if isinstance(shot, MultiPromptShot) and shot.duration is not None]
    total = sum(given)
    if total > MAX_DURATION_SECONDS:
        raise ValueError(
            f"the shots last {total} seconds in all: they are parts of one video, which lasts "
            f"{MIN_DURATION_SECONDS} to {MAX_DURATION_SECONDS} seconds"
        )
    duration = info.data.get("duration")
    if duration is not None and len(given) == len(shots) and total != duration:
        raise ValueError(
            f"the shots last {total} seconds in all but duration is {duration}: make them agree, or leave out duration"
        )
    return shots


class _VideoCommon(KlingRequest):
    prompt: Prompt
    negative_prompt: OptionalText | None = None
    sound: bool | None = None
    duration: Duration | None = None
    cfg_scale: CfgScale | None = None


class TextToVideoRequest(_VideoCommon):
    """Body of ``kling-v3.0-std-t2v`` and ``kling-v3.0-4k-t2v`` (text to video).

    Example::

        TextToVideoRequest(prompt="a paper boat on a rainy street", duration=5, aspect_ratio="9:16")
    """

    endpoints: ClassVar[tuple[str, ...]] = ("kling-v3.0-std-t2v", "kling-v3.0-4k-t2v")

    aspect_ratio: AspectRatio | None = None


class ProTextToVideoRequest(TextToVideoRequest):
    """Body of ``kling-v3.0-pro-t2v``: text to video, with multi-shot composition (pro only)."""

    endpoints: ClassVar[tuple[str, ...]] = ("kling-v3.0-pro-t2v",)

    multi_prompt: ShotList | None = None

    _shot_durations = field_validator("multi_prompt")(_check_shot_durations)


class ImageToVideoRequest(_VideoCommon):
    """Body of ``kling-v3.0-{std,pro,4k}-i2v`` (image to video, ``image`` is the first frame).

    ``image`` and ``end_image`` are URLs (or data URIs). ``end_image`` and ``multi_prompt`` exclude each
    other. There is no ``aspect_ratio``: the video follows the image.

    Example::

        ImageToVideoRequest(image="https://example.com/first.png", prompt="the cat turns its head")
    """

    endpoints: ClassVar[tuple[str, ...]] = (
        "kling-v3.0-std-i2v",
        "kling-v3.0-pro-i2v",
        "kling-v3.0-4k-i2v",
    )

    image: str
    end_image: str | None = None
    multi_prompt: ShotList | None = None

    _shot_durations = field_validator("multi_prompt")(_check_shot_durations)

    @field_validator("image", "end_image")
    @classmethod
    def _image_reference(cls, value: str | None) -> str | None:
        return None if value is None else check_image_reference(value)

    @model_validator(mode="after")
    def _end_image_excludes_multi_prompt(self) -> ImageToVideoRequest:
        if self.end_image is not None and self.multi_prompt is not None:
            raise ValueError("end_image and multi_prompt cannot be used together: choose one")
        return self


class MotionControlRequest(KlingRequest):
    """Body of ``kling-v3.0-motion-control``: move the character in ``image`` like the one in ``video``.

    Example::

        MotionControlRequest(
            image="https://example.com/character.png",
            video="https://example.com/dance.mp4",
            character_orientation="video",
        )
    """

    endpoints: ClassVar[tuple[str, ...]] = ("kling-v3.0-motion-control",)

    image: str
    video: str
    model_name: Literal["kling-v3-0-std", "kling-v3-0-pro"] | None = None
    character_orientation: Literal["image", "video"] | None = None
    prompt: OptionalText | None = None
    negative_prompt: OptionalText | None = None
    keep_original_sound: bool | None = None

    @field_validator("image")
    @classmethod
    def _image_reference(cls, value: str) -> str:
        return check_image_reference(value)

    @field_validator("video")
    @classmethod
    def _video_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL of an .mp4 or .mov video")
        path = value.split("?", 1)[0].lower()
        last = path.rsplit("/", 1)[-1]
        if "." in last and not last.endswith((".mp4", ".mov")):
            raise ValueError("must be an .mp4 or .mov video")
        return value


REQUEST_MODELS: dict[str, type[KlingRequest]] = {
    endpoint: model
    for model in (TextToVideoRequest, ProTextToVideoRequest, ImageToVideoRequest, MotionControlRequest)
    for endpoint in model.endpoints
}
"""Every known Kling v3.0 endpoint (model name) and the body it takes."""

KNOWN_MODELS: tuple[str, ...] = tuple(sorted(REQUEST_MODELS))


def format_validation_error(error: ValidationError, *, model: str | None = None) -> str:
    """Turn a pydantic error into one readable line: ``field=value: rule; ...``.

    Long values are shortened so a 3,000-character prompt does not flood the log.
    """
    parts = []
    for item in error.errors(include_url=False):
        field = _field_path(item["loc"])
        rule = _rule_text(item)
        if "input" in item and item["type"] not in ("missing", "model_type") and item["loc"]:
            parts.append(f"{field}={_short(item['input'])}: {rule}")
        else:
            parts.append(f"{field}: {rule}")
    prefix = f"invalid request for {model}: " if model else "invalid request: "
    return prefix + "; ".join(parts)


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``multi_prompt.0.duration`` rather than pydantic's ``multi_prompt.0.shot.duration``."""
    parts = [
        str(part)
        for index, part in enumerate(loc)
        if not (part in (_OBJECT_SHOT, _TEXT_SHOT) and index > 0 and isinstance(loc[index - 1], int))
    ]
    return ".".join(parts) or "request"


#: The rule of each pydantic error type whose wording needs neither the field nor the error's context.
_RULES = {
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "extra_forbidden": "is not a field of this endpoint",
    "missing": "is required",
}


def _rule_text(item: Any) -> str:
    kind, ctx = item["type"], item.get("ctx") or {}
    field = str(item["loc"][-1]) if item["loc"] else ""
    if kind in ("greater_than_equal", "less_than_equal") and item["loc"]:
        if field == "duration":
            return f"must be between {MIN_DURATION_SECONDS} and {MAX_DURATION_SECONDS} seconds"
        if field == "cfg_scale":
            return "must be between 0 and 1"
    if kind in ("int_from_float", "int_parsing", "int_type"):
        if field == "duration":
            return f"must be a whole number of seconds between {MIN_DURATION_SECONDS} and {MAX_DURATION_SECONDS}"
        return "must be a whole number"
    if kind in ("float_parsing", "float_type") and field == "cfg_scale":
        return "must be a number between 0 and 1"
    if kind in ("model_type", "model_attributes_type", "dict_type") and "multi_prompt" in item["loc"]:
        return "must be an object {prompt, duration} or a prompt string"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in _RULES:
        return _RULES[kind]
    message = str(item["msg"])
    return message.removeprefix("Value error, ")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    if len(text) > limit:
        size = f" ({len(value)} chars)" if isinstance(value, str) else ""
        text = text[: limit - 3] + "..." + size
    return text


def build_request(model: str, payload: Mapping[str, Any] | KlingRequest) -> KlingRequest:
    """Validate ``payload`` as the body of endpoint ``model`` and return the typed request.

    Raises :class:`~airflow_provider_kling.exceptions.KlingValidationError` (naming each field and the
    rule it broke) for a bad body or an unknown model.

    Example::

        request = build_request("kling-v3.0-pro-t2v", {"prompt": "a red fox", "duration": 5})
    """
    from airflow_provider_kling.exceptions import KlingValidationError

    request_model = REQUEST_MODELS.get(model)
    if request_model is None:
        raise KlingValidationError(
            f"model={model!r}: unknown Kling model; known models are {', '.join(KNOWN_MODELS)} "
            "(use KlingSubmitOperator with a raw payload for a newer model)"
        )
    if isinstance(payload, KlingRequest):
        if not isinstance(payload, request_model):
            raise KlingValidationError(
                f"request: a {type(payload).__name__} is not a body for {model}; it takes a {request_model.__name__}"
            )
        return payload
    try:
        return request_model.model_validate(dict(payload))
    except ValidationError as err:
        raise KlingValidationError(format_validation_error(err, model=model)) from None


def check_resolved_fields(model: str, values: Mapping[str, Any], unresolved: set[str]) -> None:
    """Validate the fields whose values are already known (not templated, not XCom), at DAG parse time.

    Errors on ``unresolved`` fields are ignored here: those are checked in full after templating, at
    execute. Raises :class:`~airflow_provider_kling.exceptions.KlingValidationError` otherwise.

    Example::

        # duration=16 fails at parse time even though the prompt is a template
        check_resolved_fields("kling-v3.0-std-t2v", {"prompt": "{{ params.p }}", "duration": 16}, {"prompt"})
    """
    from airflow_provider_kling.exceptions import KlingValidationError

    request_model = REQUEST_MODELS.get(model)
    if request_model is None:
        build_request(model, values)  # raises the "unknown model" error
        return
    try:
        request_model.model_validate(dict(values))
    except ValidationError as err:
        known = [item for item in err.errors() if not (item["loc"] and item["loc"][0] in unresolved)]
        if known:
            remaining = ValidationError.from_exception_data(err.title, known)  # type: ignore[arg-type]
            raise KlingValidationError(format_validation_error(remaining, model=model)) from None
