"""The vendor's request rules as a table, written from the vendor's reference pages, not from our models.

The sandbox validates with the provider's own request models, so a rule the models got wrong would be
wrong on both sides and every other test would still pass. Each row below is a request body built from
what the vendor documents for its submit endpoints, with the verdict the vendor's pages give: accepted, or
refused with the field named. The rows are run against the request models (``build_request``) and then
sent to the sandbox in process, which must answer the vendor's error shape.

Every documented limit is tried at its edge, on both sides. Where the pages are silent or contradict one
another the row says so and takes the verdict an experienced user would expect, with the reason. Each
row's comment states the documented rule it encodes.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from PIL import Image
from pydantic import ValidationError

from airflow_provider_kling.exceptions import KlingValidationError
from airflow_provider_kling.models import KNOWN_MODELS, REQUEST_MODELS, build_request
from airflow_provider_kling.sandbox import SandboxSettings, create_app
from airflow_provider_kling.sandbox.testing import FakeClock, asgi_client

STD_T2V, PRO_T2V, K4_T2V = "kling-v3.0-std-t2v", "kling-v3.0-pro-t2v", "kling-v3.0-4k-t2v"
STD_I2V, PRO_I2V, K4_I2V = "kling-v3.0-std-i2v", "kling-v3.0-pro-i2v", "kling-v3.0-4k-i2v"
MOTION = "kling-v3.0-motion-control"
T2V = (STD_T2V, PRO_T2V, K4_T2V)
I2V = (STD_I2V, PRO_I2V, K4_I2V)
VIDEO_MODELS = T2V + I2V
#: Every submit endpoint the vendor documents for Kling v3.0, written out here rather than read from the models.
DOCUMENTED_ENDPOINTS = (*VIDEO_MODELS, MOTION)

PROMPT = "a red fox runs through fresh snow"
IMAGE_URL = "https://example.com/first-frame.png"
VIDEO_URL = "https://example.com/dance.mp4"
MIB = 1024 * 1024
#: The 400 reasons the vendor lists for a refused submit.
DOCUMENTED_400_REASONS = {
    "INVALID_REQUEST_BODY",
    "IMAGE_FILE_EXCEEDS_MAX_SIZE",
    "INVALID_IMAGE_FORMAT",
    "IMAGE_EXCEEDS_MAX_RESOLUTION",
    "INVALID_IMAGE_SIZE",
}
#: The vendor's error body.
ERROR_KEYS = {"code", "reason", "message", "metadata"}

Body = Mapping[str, Any] | Callable[[], Mapping[str, Any]]


# -- bodies and images -----------------------------------------------------------------------------------


def t2v(**fields: Any) -> dict[str, Any]:
    """A text-to-video body: the prompt plus ``fields`` (a value of ``...`` removes the field)."""
    return _body({"prompt": PROMPT}, fields)


def i2v(**fields: Any) -> dict[str, Any]:
    """An image-to-video body: first frame and prompt plus ``fields``."""
    return _body({"image": IMAGE_URL, "prompt": PROMPT}, fields)


def motion(**fields: Any) -> dict[str, Any]:
    """A motion-control body: character image and reference video plus ``fields``."""
    return _body({"image": IMAGE_URL, "video": VIDEO_URL}, fields)


def _body(base: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    body = {**base, **fields}
    return {key: value for key, value in body.items() if value is not ...}


def picture(width: int, height: int, fmt: str = "PNG", size: int | None = None) -> bytes:
    """A real image drawn with Pillow, padded with zero bytes to ``size`` (readers ignore the tail)."""
    mode = "P" if fmt == "GIF" else "RGB"
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color=1 if mode == "P" else (200, 80, 40)).save(buffer, fmt)
    data = buffer.getvalue()
    if size is not None:
        assert size >= len(data)
        data += b"\0" * (size - len(data))
    return data


def data_uri(width: int, height: int, fmt: str = "PNG", size: int | None = None) -> str:
    """The image as a ``data:image/...;base64,`` URI, the form whose pixels and bytes can be checked."""
    encoded = base64.b64encode(picture(width, height, fmt, size)).decode("ascii")
    return f"data:image/{fmt.lower()};base64,{encoded}"


def bare_base64(width: int, height: int) -> str:
    """The image as plain base64, without a data URI prefix."""
    return base64.b64encode(picture(width, height)).decode("ascii")


def shots(*durations: int | None) -> list[dict[str, Any]]:
    """A ``multi_prompt`` list, one shot per duration (``None`` leaves the shot's duration out)."""
    return [
        {"prompt": f"shot {number}"} if seconds is None else {"prompt": f"shot {number}", "duration": seconds}
        for number, seconds in enumerate(durations, start=1)
    ]


# -- the rows --------------------------------------------------------------------------------------------

ABSENT = object()


@dataclass(frozen=True)
class Row:
    """One request and the vendor's verdict on it.

    ``fields`` empty means accepted; otherwise the request is refused and the message must name each of
    ``fields`` and contain each word of ``rule`` (the documented limit, e.g. ``"2500"``). ``sent`` lists
    values the accepted payload must carry (``ABSENT``: left out). ``json`` is false for values JSON
    cannot carry, which only a Python caller can pass.
    """

    model: str
    body: Body
    fields: tuple[str, ...] = ()
    rule: tuple[str, ...] = ()
    sent: Mapping[str, Any] = field(default_factory=dict)
    json: bool = True

    def build(self) -> dict[str, Any]:
        """The request body (image rows draw their images only when the row runs)."""
        return dict(self.body() if callable(self.body) else self.body)

    @property
    def accepted(self) -> bool:
        """Whether the vendor's pages accept this body."""
        return not self.fields


def ok(model: str, body: Body, *, sent: Mapping[str, Any] | None = None, json: bool = True) -> Row:
    """An accepted row."""
    return Row(model, body, sent=sent or {}, json=json)


def refused(model: str, body: Body, fields: str | tuple[str, ...], *rule: str, json: bool = True) -> Row:
    """A refused row: ``fields`` is the field (or fields) the error must name, ``rule`` the words it must say."""
    return Row(model, body, fields=(fields,) if isinstance(fields, str) else fields, rule=rule, json=json)


P2500, P2501 = "p" * 2500, "p" * 2501

ROWS: dict[str, Row] = {}

# Every endpoint the vendor documents answers a small valid body: t2v takes a prompt, i2v a first-frame
# image and a prompt, motion control a character image and a reference video.
for _m in VIDEO_MODELS:
    ROWS[f"{_m}: minimal body"] = ok(_m, i2v() if _m in I2V else t2v())
ROWS[f"{MOTION}: minimal body"] = ok(MOTION, motion())

# A model name outside the documented list is not an endpoint (the vendor answers API_NOT_FOUND): no 4K or
# pro tier of motion control, no tierless name, names are lower case.
for _name in ("kling-v3.0-4k-motion-control", "kling-v3.0-pro-motion-control", "kling-v3.0-t2v", "kling-v3.0-STD-t2v"):
    ROWS[f"unknown endpoint {_name}"] = refused(_name, t2v(), "model", "unknown")

# -- duration: an integer number of seconds, 3 to 15, default 5 (every t2v and i2v page) ------------------
for _m in VIDEO_MODELS:
    _b = i2v if _m in I2V else t2v
    # 3 s is the documented minimum, 15 s the maximum.
    ROWS[f"{_m}: duration 3"] = ok(_m, _b(duration=3), sent={"duration": 3})
    ROWS[f"{_m}: duration 15"] = ok(_m, _b(duration=15), sent={"duration": 15})
    # One second beyond either end is outside [3, 15].
    ROWS[f"{_m}: duration 2"] = refused(_m, _b(duration=2), "duration", "3", "15")
    ROWS[f"{_m}: duration 16"] = refused(_m, _b(duration=16), "duration", "3", "15")
# The standard image-to-video page lists every allowed value, 3 through 15, one by one.
for _seconds in range(3, 16):
    ROWS[f"{STD_I2V}: listed duration {_seconds}"] = ok(STD_I2V, i2v(duration=_seconds), sent={"duration": _seconds})
# duration is typed integer: a fractional number of seconds is not one.
ROWS["duration 5.5"] = refused(STD_T2V, t2v(duration=5.5), "duration", "whole number")
# Silent: a whole number written as 5.0 is the integer 5 in JSON's number model; sent as the integer 5.
ROWS["duration 5.0"] = ok(STD_T2V, t2v(duration=5.0), sent={"duration": 5})
# Silent: Airflow renders templated fields as strings, so "5" is read as 5 and sent as the integer 5.
ROWS["duration '5' from a template"] = ok(STD_T2V, t2v(duration="5"), sent={"duration": 5})
# An integer field does not take true/false: JSON keeps booleans and numbers apart.
ROWS["duration true"] = refused(STD_T2V, t2v(duration=True), "duration", "whole number")
# The field is optional with a vendor default (5): leaving it out, or null, sends nothing.
ROWS["duration left out"] = ok(STD_T2V, t2v(), sent={"duration": ABSENT})
ROWS["duration null"] = ok(STD_T2V, t2v(duration=None), sent={"duration": ABSENT})

# -- prompt: required, at most 2500 characters (every t2v and i2v page) ---------------------------------
for _m in VIDEO_MODELS:
    _b = i2v if _m in I2V else t2v
    # 2500 characters is the documented maximum; 2501 is one over.
    ROWS[f"{_m}: prompt 2500 chars"] = ok(_m, _b(prompt=P2500))
    ROWS[f"{_m}: prompt 2501 chars"] = refused(_m, _b(prompt=P2501), "prompt", "2500")
    # prompt is marked required.
    ROWS[f"{_m}: prompt missing"] = refused(_m, _b(prompt=...), "prompt", "required")
# The limit counts characters, not bytes: 2500 Chinese characters (7500 bytes of UTF-8) fit; the pages
# advertise Chinese speech, so Chinese prompts are expected.
ROWS["prompt 2500 Chinese characters"] = ok(STD_T2V, t2v(prompt="雪" * 2500))
ROWS["prompt 2501 Chinese characters"] = refused(STD_T2V, t2v(prompt="雪" * 2501), "prompt", "2500")
# Ambiguous: the 4K pages give the prompt's length range as 0 - 2500 yet mark it required. An empty or
# blank prompt is far more often a template that rendered to nothing than a wish for an undirected
# (paid) video, so it is refused before the money is spent.
ROWS["prompt empty on t2v"] = refused(K4_T2V, t2v(prompt=""), "prompt", "empty")
ROWS["prompt empty on i2v"] = refused(K4_I2V, i2v(prompt=""), "prompt", "empty")
ROWS["prompt blank"] = refused(STD_T2V, t2v(prompt="   \n"), "prompt", "empty")
# prompt is typed string.
ROWS["prompt a number"] = refused(STD_T2V, t2v(prompt=123), "prompt", "string")
ROWS["prompt null"] = refused(STD_T2V, t2v(prompt=None), "prompt", "string")

# -- negative_prompt: optional, at most 2500 characters, range 0 - 2500 (every page, motion control too) ---
for _m in DOCUMENTED_ENDPOINTS:
    _b = i2v if _m in I2V else motion if _m == MOTION else t2v
    ROWS[f"{_m}: negative_prompt 2500 chars"] = ok(_m, _b(negative_prompt=P2500))
    ROWS[f"{_m}: negative_prompt 2501 chars"] = refused(_m, _b(negative_prompt=P2501), "negative_prompt", "2500")
# The documented range starts at 0: an empty negative prompt is allowed (and means "nothing to avoid").
ROWS["negative_prompt empty"] = ok(STD_T2V, t2v(negative_prompt=""), sent={"negative_prompt": ""})

# -- cfg_scale: a number in [0, 1], default 0.5 (every t2v and i2v page) ---------------------------------
for _m in VIDEO_MODELS:
    _b = i2v if _m in I2V else t2v
    # Both ends of [0, 1] are inside the range.
    ROWS[f"{_m}: cfg_scale 0"] = ok(_m, _b(cfg_scale=0), sent={"cfg_scale": 0.0})
    ROWS[f"{_m}: cfg_scale 1"] = ok(_m, _b(cfg_scale=1), sent={"cfg_scale": 1.0})
    # Just beyond either end is outside it.
    ROWS[f"{_m}: cfg_scale -0.01"] = refused(_m, _b(cfg_scale=-0.01), "cfg_scale", "0", "1")
    ROWS[f"{_m}: cfg_scale 1.01"] = refused(_m, _b(cfg_scale=1.01), "cfg_scale", "0", "1")
# The documented default sits inside the range.
ROWS["cfg_scale 0.5"] = ok(STD_I2V, i2v(cfg_scale=0.5), sent={"cfg_scale": 0.5})
# cfg_scale is typed number: true/false is not one, even though Python would read true as 1.
ROWS["cfg_scale true"] = refused(STD_T2V, t2v(cfg_scale=True), "cfg_scale", "number")
ROWS["cfg_scale false"] = refused(STD_T2V, t2v(cfg_scale=False), "cfg_scale", "number")
# Silent: a rendered template gives "0.5"; read as the number 0.5 and sent as a number.
ROWS["cfg_scale '0.5' from a template"] = ok(STD_T2V, t2v(cfg_scale="0.5"), sent={"cfg_scale": 0.5})
# Not a number inside [0, 1]; JSON cannot carry these, only a Python caller can pass them.
ROWS["cfg_scale NaN"] = refused(STD_T2V, t2v(cfg_scale=math.nan), "cfg_scale", "0", "1", json=False)
ROWS["cfg_scale infinity"] = refused(STD_T2V, t2v(cfg_scale=math.inf), "cfg_scale", "0", "1", json=False)

# -- sound: optional boolean, default false (every t2v and i2v page; not a motion-control field) ----------
for _m in VIDEO_MODELS:
    _b = i2v if _m in I2V else t2v
    ROWS[f"{_m}: sound true"] = ok(_m, _b(sound=True), sent={"sound": True})
    ROWS[f"{_m}: sound false"] = ok(_m, _b(sound=False), sent={"sound": False})
# Silent: a rendered template gives "true"; read as the boolean and sent as one.
ROWS["sound 'true' from a template"] = ok(STD_T2V, t2v(sound="true"), sent={"sound": True})
# Not a boolean in any reading.
ROWS["sound 'maybe'"] = refused(STD_T2V, t2v(sound="maybe"), "sound", "boolean")
# Motion control has keep_original_sound instead; sound is not among its fields.
ROWS["sound on motion control"] = refused(MOTION, motion(sound=True), "sound", "not a field")

# -- aspect_ratio: text to video only; 16:9 (default), 9:16 or 1:1 (4K t2v page) --------------------------
for _m in T2V:
    for _ratio in ("16:9", "9:16", "1:1"):
        ROWS[f"{_m}: aspect_ratio {_ratio}"] = ok(_m, t2v(aspect_ratio=_ratio), sent={"aspect_ratio": _ratio})
    # Any value outside the three listed is refused.
    ROWS[f"{_m}: aspect_ratio 4:3"] = refused(_m, t2v(aspect_ratio="4:3"), "aspect_ratio", "16:9", "9:16", "1:1")
# The listed values are exact strings: a near miss is not one of them.
ROWS["aspect_ratio 16:9 with a space"] = refused(STD_T2V, t2v(aspect_ratio="16:9 "), "aspect_ratio", "16:9")
ROWS["aspect_ratio 16/9"] = refused(STD_T2V, t2v(aspect_ratio="16/9"), "aspect_ratio", "16:9")
# The image-to-video pages have no aspect_ratio: the video takes the first frame's shape.
for _m in I2V:
    ROWS[f"{_m}: aspect_ratio"] = refused(_m, i2v(aspect_ratio="16:9"), "aspect_ratio", "not a field")
# Nor does motion control.
ROWS["aspect_ratio on motion control"] = refused(MOTION, motion(aspect_ratio="16:9"), "aspect_ratio", "not a field")

# -- fields an endpoint does not have ----------------------------------------------------------------------
# Each page lists its body fields; a field from another endpoint, or a typo, is not one of them (the
# vendor would ignore it and bill a video made with defaults).
ROWS["typo durration"] = refused(STD_T2V, t2v(durration=5), "durration", "not a field")
ROWS["image on t2v"] = refused(STD_T2V, t2v(image=IMAGE_URL), "image", "not a field")
ROWS["end_image on t2v"] = refused(PRO_T2V, t2v(end_image=IMAGE_URL), "end_image", "not a field")
ROWS["video on i2v"] = refused(STD_I2V, i2v(video=VIDEO_URL), "video", "not a field")
ROWS["keep_original_sound on t2v"] = refused(
    STD_T2V, t2v(keep_original_sound=True), "keep_original_sound", "not a field"
)
ROWS["character_orientation on i2v"] = refused(
    PRO_I2V, i2v(character_orientation="image"), "character_orientation", "not a field"
)
# The tier is part of the endpoint's name for t2v and i2v; model_name is a motion-control field only.
ROWS["model_name on t2v"] = refused(STD_T2V, t2v(model_name="kling-v3-0-pro"), "model_name", "not a field")
# Motion control takes no duration (the reference video sets the length), no cfg_scale, no multi_prompt.
ROWS["duration on motion control"] = refused(MOTION, motion(duration=5), "duration", "not a field")
ROWS["cfg_scale on motion control"] = refused(MOTION, motion(cfg_scale=0.5), "cfg_scale", "not a field")
ROWS["multi_prompt on motion control"] = refused(MOTION, motion(multi_prompt=shots(5)), "multi_prompt", "not a field")
ROWS["end_image on motion control"] = refused(MOTION, motion(end_image=IMAGE_URL), "end_image", "not a field")

# -- multi_prompt: shots of {prompt (required), duration 3-15 (default 5)} -----------------------------------
# Pro text to video composes several shots; the standard and 4K text-to-video bodies have no multi_prompt.
ROWS["multi_prompt on pro t2v"] = ok(PRO_T2V, t2v(multi_prompt=shots(5, 5)), sent={"multi_prompt": shots(5, 5)})
ROWS["multi_prompt on std t2v"] = refused(STD_T2V, t2v(multi_prompt=shots(5)), "multi_prompt", "not a field")
ROWS["multi_prompt on 4k t2v"] = refused(K4_T2V, t2v(multi_prompt=shots(5)), "multi_prompt", "not a field")
for _m in (PRO_T2V, *I2V):
    _b = i2v if _m in I2V else t2v
    # A shot's duration has the same [3, 15] range as the video's, at both edges.
    ROWS[f"{_m}: shot of 3 s"] = ok(_m, _b(multi_prompt=shots(3)))
    ROWS[f"{_m}: shot of 15 s"] = ok(_m, _b(multi_prompt=shots(15)))
    ROWS[f"{_m}: shot of 2 s"] = refused(_m, _b(multi_prompt=shots(3, 2)), "multi_prompt.1.duration", "3", "15")
    ROWS[f"{_m}: shot of 16 s"] = refused(_m, _b(multi_prompt=shots(16)), "multi_prompt.0.duration", "3", "15")
    # A shot's prompt is marked required.
    ROWS[f"{_m}: shot without prompt"] = refused(
        _m, _b(multi_prompt=[{"duration": 5}]), "multi_prompt.0.prompt", "required"
    )
    # A shot's duration has a default (5): it may be left out.
    ROWS[f"{_m}: shot without duration"] = ok(_m, _b(multi_prompt=shots(None)), sent={"multi_prompt": shots(None)})
# The image-to-video pages' example bodies send prompt and multi_prompt together, and prompt is marked
# required on every page. (One mirror's page calls multi_prompt "mutually exclusive with prompt", while
# the same page marks prompt required and its own example sends both: the example and the three other
# pages win.) So both together are accepted, and multi_prompt without prompt is refused.
for _m in I2V:
    ROWS[f"{_m}: prompt and multi_prompt"] = ok(_m, i2v(multi_prompt=shots(5, 5)))
ROWS["multi_prompt without prompt on i2v"] = refused(
    K4_I2V, i2v(prompt=..., multi_prompt=shots(5, 5)), "prompt", "required"
)
# The shots divide one video (each item is "one segment"), whose length is 3-15 s: shots adding up to 15 s
# are fine, more than 15 s in all is outside the range. (The pages do not spell out the sum; it follows
# from the shots being segments of one video.)
ROWS["five shots of 3 s make 15 s"] = ok(PRO_T2V, t2v(multi_prompt=shots(3, 3, 3, 3, 3)))
ROWS["shots adding up to 16 s"] = refused(STD_I2V, i2v(multi_prompt=shots(8, 8)), "multi_prompt", "15")
ROWS["two shots of 15 s"] = refused(PRO_T2V, t2v(multi_prompt=shots(15, 15)), "multi_prompt", "15")
# Silent: a video duration that agrees with the shots is fine; one that contradicts them (10 s asked, the
# shots make 9 s) would leave the vendor to pick one of the two, and the user pays for a length they did
# not choose. Refused, naming both numbers; a shot without a duration leaves the sum open and is accepted.
ROWS["duration agrees with the shots"] = ok(PRO_I2V, i2v(duration=10, multi_prompt=shots(5, 5)))
ROWS["duration contradicts the shots"] = refused(
    PRO_I2V, i2v(duration=10, multi_prompt=shots(5, 4)), "multi_prompt", "9", "10"
)
ROWS["duration with a shot of default length"] = ok(PRO_I2V, i2v(duration=10, multi_prompt=shots(5, None)))
# Silent: an empty list composes no shot; a user who wants one shot leaves multi_prompt out.
ROWS["multi_prompt empty"] = refused(PRO_T2V, t2v(multi_prompt=[]), "multi_prompt", "empty")
# multi_prompt is typed array.
ROWS["multi_prompt a string"] = refused(PRO_T2V, t2v(multi_prompt="close-up"), "multi_prompt", "list")
# Each shot lists only prompt and duration; anything else (such as an index) is not a shot field.
ROWS["shot with an index"] = refused(
    STD_I2V,
    i2v(multi_prompt=[{"prompt": "close-up", "duration": 5, "index": 1}]),
    "multi_prompt.0.index",
    "not a field",
)
# Ambiguous: the pro text-to-video page's item type is not confirmed (objects elsewhere, plain strings
# possible); a list of prompt strings is accepted and sent as given.
ROWS["shots as plain strings on pro t2v"] = ok(
    PRO_T2V, t2v(multi_prompt=["close-up", "wide shot"]), sent={"multi_prompt": ["close-up", "wide shot"]}
)
# Silent on a shot's prompt length: the video's own prompt limit (2500) is the one an experienced user
# would expect to hold for a part of the video too.
ROWS["shot prompt 2500 chars"] = ok(STD_I2V, i2v(multi_prompt=[{"prompt": P2500, "duration": 5}]))
ROWS["shot prompt 2501 chars"] = refused(
    STD_I2V, i2v(multi_prompt=[{"prompt": P2501, "duration": 5}]), "multi_prompt.0.prompt", "2500"
)
# A shot's prompt is a motion description: an empty one describes nothing (silent; as for prompt).
ROWS["shot prompt empty"] = refused(STD_I2V, i2v(multi_prompt=[{"prompt": ""}]), "multi_prompt.0.prompt", "empty")

# -- end_image: optional last frame, same format rules as image, not together with multi_prompt ------------
for _m in I2V:
    ROWS[f"{_m}: end_image"] = ok(_m, i2v(end_image="https://example.com/last-frame.jpg"))
    # Stated on every image-to-video page: end_image cannot be used together with multi_prompt.
    ROWS[f"{_m}: end_image with multi_prompt"] = refused(
        _m,
        i2v(end_image="https://example.com/last-frame.jpg", multi_prompt=shots(5)),
        ("end_image", "multi_prompt"),
        "together",
    )
# end_image supports .jpg, .jpeg and .png only.
ROWS["end_image a .gif URL"] = refused(K4_I2V, i2v(end_image="https://example.com/last.gif"), "end_image", ".png")
# "Same format constraints as image": 300 px sides and the 1:2.5..2.5:1 ratio hold for the last frame too.
ROWS["end_image 299 px wide"] = refused(STD_I2V, lambda: i2v(end_image=data_uri(299, 400)), "end_image", "300")
ROWS["end_image 751x300"] = refused(PRO_I2V, lambda: i2v(end_image=data_uri(751, 300)), "end_image", "2.5:1")
ROWS["end_image 300x300"] = ok(K4_I2V, lambda: i2v(end_image=data_uri(300, 300)))

# -- image (first frame): .jpg/.jpeg/.png, at most 10 MB, sides >= 300 px, ratio 1:2.5 .. 2.5:1 ---------------
# Given as data (a data URI or base64) the image's bytes and pixels can be checked before the submit.
# Sides of 300 px are the minimum; one pixel less on either side is refused.
ROWS["image 300x300"] = ok(STD_I2V, lambda: i2v(image=data_uri(300, 300)))
ROWS["image 299x300"] = refused(STD_I2V, lambda: i2v(image=data_uri(299, 300)), "image", "300")
ROWS["image 300x299"] = refused(STD_I2V, lambda: i2v(image=data_uri(300, 299)), "image", "300")
# The ratio bounds 2.5:1 (750x300) and 1:2.5 (300x750) are inside; a pixel beyond either is outside.
ROWS["image 750x300 is 2.5:1"] = ok(STD_I2V, lambda: i2v(image=data_uri(750, 300)))
ROWS["image 751x300"] = refused(STD_I2V, lambda: i2v(image=data_uri(751, 300)), "image", "1:2.5", "2.5:1")
ROWS["image 300x750 is 1:2.5"] = ok(PRO_I2V, lambda: i2v(image=data_uri(300, 750)))
ROWS["image 300x751"] = refused(PRO_I2V, lambda: i2v(image=data_uri(300, 751)), "image", "1:2.5", "2.5:1")
# Ambiguous: "10MB" may be 10,000,000 bytes or 10 x 1024 x 1024. 10,000,000 bytes is within both readings;
# 10 x 1024 x 1024 is accepted, the usual meaning of an upload limit written "10MB" in server software; one
# byte more is over the limit in every reading.
ROWS["image 10,000,000 bytes"] = ok(K4_I2V, lambda: i2v(image=data_uri(640, 360, size=10_000_000)))
ROWS["image 10 MiB exactly"] = ok(K4_I2V, lambda: i2v(image=data_uri(640, 360, size=10 * MIB)))
ROWS["image 10 MiB + 1 byte"] = refused(
    K4_I2V, lambda: i2v(image=data_uri(640, 360, size=10 * MIB + 1)), "image", "10 MB"
)
# Supported formats are .jpg, .jpeg and .png: a JPEG is fine, a GIF or a WebP is not.
ROWS["image JPEG"] = ok(STD_I2V, lambda: i2v(image=data_uri(1280, 720, "JPEG")))
ROWS["image GIF"] = refused(STD_I2V, lambda: i2v(image=data_uri(640, 360, "GIF")), "image", "JPEG", "PNG")
ROWS["image WebP"] = refused(STD_I2V, lambda: i2v(image=data_uri(640, 360, "WEBP")), "image", "JPEG", "PNG")
# Ambiguous: the image-to-video pages say "string", not whether base64 is allowed (motion control's is);
# base64 without a data URI prefix is accepted and checked in full like a data URI.
ROWS["image bare base64"] = ok(STD_I2V, lambda: i2v(image=bare_base64(300, 300)))
ROWS["image bare base64 299 px"] = refused(
    STD_I2V, lambda: i2v(image=base64.b64encode(picture(299, 400)).decode("ascii")), "image", "300"
)
# Given as a URL only the name can be checked: .jpg, .jpeg and .png (in any case) are the supported formats.
for _suffix in ("jpg", "jpeg", "png", "PNG"):
    ROWS[f"image URL .{_suffix}"] = ok(STD_I2V, i2v(image=f"https://example.com/frame.{_suffix}"))
for _suffix in ("gif", "webp", "bmp"):
    ROWS[f"image URL .{_suffix}"] = refused(STD_I2V, i2v(image=f"https://example.com/frame.{_suffix}"), "image", ".png")
# A signed URL carries its query after the name; a URL whose name has no extension could hold any format.
ROWS["image signed URL"] = ok(STD_I2V, i2v(image="https://cdn.example.com/frame.png?X-Amz-Signature=abc.gif"))
ROWS["image URL without extension"] = ok(STD_I2V, i2v(image="https://cdn.example.com/objects/7f3a"))
# The pixels and bytes behind a URL are checked by the vendor after the submit, not before it (the URL's
# name says nothing about them): such a URL passes here.
ROWS["image URL of a small picture"] = ok(STD_I2V, i2v(image="https://example.com/icon-100x100.png"))
# image is required, and a location the vendor can fetch: not empty, not another scheme.
ROWS["image missing"] = refused(PRO_I2V, i2v(image=...), "image", "required")
ROWS["image empty"] = refused(PRO_I2V, i2v(image=""), "image", "URL")
ROWS["image ftp URL"] = refused(PRO_I2V, i2v(image="ftp://example.com/frame.png"), "image", "URL")

# -- motion control: image (URL or base64), video (URL, mp4/mov, <= 10 MB, 3-30 s), model_name,
#    character_orientation, optional prompt, negative_prompt, keep_original_sound --------------------------
# image and video are both required.
ROWS["motion: image missing"] = refused(MOTION, motion(image=...), "image", "required")
ROWS["motion: video missing"] = refused(MOTION, motion(video=...), "video", "required")
# The character image may be a URL or base64.
ROWS["motion: image base64"] = ok(MOTION, lambda: motion(image=bare_base64(300, 300)))
ROWS["motion: image data URI"] = ok(MOTION, lambda: motion(image=data_uri(400, 600)))
# Silent for motion control: its image rules are stated on the image-to-video pages; the character image
# is the same kind of input, and an experienced user expects the same limits (300 px, the ratio, formats).
ROWS["motion: image 299 px"] = refused(MOTION, lambda: motion(image=data_uri(299, 300)), "image", "300")
ROWS["motion: image 300x751"] = refused(MOTION, lambda: motion(image=data_uri(300, 751)), "image", "1:2.5")
ROWS["motion: image .gif URL"] = refused(MOTION, motion(image="https://example.com/character.gif"), "image", ".png")
# The reference video is an mp4 or mov file at a URL.
for _name in ("dance.mp4", "dance.mov", "dance.MP4", "dance.MOV", "dance.mp4?token=abc", "objects/7f3a"):
    ROWS[f"motion: video {_name}"] = ok(MOTION, motion(video=f"https://example.com/{_name}"))
for _name in ("dance.avi", "dance.webm", "dance.gif"):
    ROWS[f"motion: video {_name}"] = refused(MOTION, motion(video=f"https://example.com/{_name}"), "video", ".mp4")
ROWS["motion: video ftp URL"] = refused(MOTION, motion(video="ftp://example.com/dance.mp4"), "video", "URL")
# The video is documented as a URL (unlike the image, not base64).
ROWS["motion: video as a data URI"] = refused(
    MOTION, motion(video="data:video/mp4;base64,AAAAIGZ0eXBpc29t"), "video", "URL"
)
# A video's length (3-30 s) and size (10 MB) cannot be read from its URL; the vendor checks them after the
# submit. These URLs pass here; the rule is enforced by the vendor alone.
ROWS["motion: video of 2 s (vendor checks)"] = ok(MOTION, motion(video="https://example.com/clip-2-seconds.mp4"))
ROWS["motion: video of 31 s (vendor checks)"] = ok(MOTION, motion(video="https://example.com/clip-31-seconds.mov"))
# model_name: kling-v3-0-std (the default) or kling-v3-0-pro, spelled with dashes only.
for _name in ("kling-v3-0-std", "kling-v3-0-pro"):
    ROWS[f"motion: model_name {_name}"] = ok(MOTION, motion(model_name=_name), sent={"model_name": _name})
for _name in ("kling-v3.0-pro", "kling-v3-0-4k", "pro", ""):
    ROWS[f"motion: model_name {_name!r}"] = refused(
        MOTION, motion(model_name=_name), "model_name", "kling-v3-0-std", "kling-v3-0-pro"
    )
ROWS["motion: model_name left out"] = ok(MOTION, motion(), sent={"model_name": ABSENT})
# character_orientation: image or video, exact lower-case values.
for _value in ("image", "video"):
    ROWS[f"motion: character_orientation {_value}"] = ok(
        MOTION, motion(character_orientation=_value), sent={"character_orientation": _value}
    )
for _value in ("Video", "both", ""):
    ROWS[f"motion: character_orientation {_value!r}"] = refused(
        MOTION, motion(character_orientation=_value), "character_orientation", "image", "video"
    )
# Ambiguous: character_orientation is listed without "required" and without a default; left out, the
# choice is the vendor's, so the body is accepted.
ROWS["motion: character_orientation left out"] = ok(MOTION, motion(), sent={"character_orientation": ABSENT})
# prompt is optional here, at most 2500 characters; 0 characters is the same as none.
ROWS["motion: no prompt"] = ok(MOTION, motion(), sent={"prompt": ABSENT})
ROWS["motion: prompt empty"] = ok(MOTION, motion(prompt=""))
ROWS["motion: prompt 2500 chars"] = ok(MOTION, motion(prompt=P2500))
ROWS["motion: prompt 2501 chars"] = refused(MOTION, motion(prompt=P2501), "prompt", "2500")
# keep_original_sound is a boolean.
for _flag in (True, False):
    ROWS[f"motion: keep_original_sound {_flag}"] = ok(
        MOTION, motion(keep_original_sound=_flag), sent={"keep_original_sound": _flag}
    )
ROWS["motion: keep_original_sound 'maybe'"] = refused(
    MOTION, motion(keep_original_sound="maybe"), "keep_original_sound", "boolean"
)


# -- running the table -------------------------------------------------------------------------------------

_SHOT_TAGS = ("shot", "text")


def _error_path(loc: tuple[int | str, ...]) -> str:
    """``multi_prompt.0.duration`` from pydantic's location (which adds the shot form's tag)."""
    return ".".join(str(part) for part in loc if part not in _SHOT_TAGS)


def names_field(message: str, name: str) -> bool:
    """Whether ``message`` names ``name`` as a field (``name=...``, ``name:`` or in a rule's words).

    A field counts only as a whole word not inside a longer path, so ``duration`` is not found in
    ``multi_prompt.0.duration`` nor ``prompt`` in ``negative_prompt``.
    """
    return re.search(rf"(?<![\w.:/]){re.escape(name)}(?![\w.])", message) is not None


def test_the_table_covers_every_documented_endpoint() -> None:
    covered = {row.model for row in ROWS.values()}
    assert set(DOCUMENTED_ENDPOINTS) <= covered
    # The models serve exactly the documented endpoints: none missing, none invented.
    assert set(KNOWN_MODELS) == set(DOCUMENTED_ENDPOINTS)


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_the_request_models_give_the_vendors_verdict(row: Row) -> None:
    body = row.build()
    if row.accepted:
        payload = build_request(row.model, body).to_payload()
        for key, value in row.sent.items():
            if value is ABSENT:
                assert key not in payload
            else:
                assert payload[key] == value
                assert type(payload[key]) is type(value)
        return

    with pytest.raises(KlingValidationError) as refusal:
        build_request(row.model, body)
    message = str(refusal.value)
    for name in row.fields:
        assert names_field(message, name), f"{name} not named in: {message}"
    for word in row.rule:
        assert word in message, f"rule {word!r} not stated in: {message}"
    model = REQUEST_MODELS.get(row.model)
    if model is None:
        return
    # Refused for the stated reason alone: the rest of the body is valid.
    with pytest.raises(ValidationError) as invalid:
        model.model_validate(body)
    errors = invalid.value.errors()
    assert len(errors) == 1, errors
    if errors[0]["loc"]:
        assert _error_path(errors[0]["loc"]) == row.fields[0]


JSON_ROWS = {name: row for name, row in ROWS.items() if row.json}


@pytest.fixture(scope="module")
def sandbox_app() -> FastAPI:
    """One in-process sandbox for the whole table: each row is an independent submit."""
    return create_app(SandboxSettings(), clock=FakeClock())


@pytest.mark.parametrize("row", JSON_ROWS.values(), ids=JSON_ROWS.keys())
async def test_the_sandbox_gives_the_vendors_verdict_and_error_shape(sandbox_app: FastAPI, row: Row) -> None:
    async with asgi_client(sandbox_app) as client:
        response = await client.post(f"/v3/async/{row.model}", json=row.build())
    body = response.json()
    if row.accepted:
        assert response.status_code == 200, body
        assert set(body) == {"task_id"}
        return
    assert set(body) == ERROR_KEYS
    assert body["code"] == response.status_code
    if row.model not in REQUEST_MODELS:
        assert (response.status_code, body["reason"]) == (404, "API_NOT_FOUND")
        return
    assert response.status_code == 400
    assert body["reason"] in DOCUMENTED_400_REASONS
    for name in row.fields:
        assert names_field(body["message"], name), body["message"]
    for word in row.rule:
        assert word in body["message"]
