"""The vendor's image rules (jpg/png, at most 10 MB, sides of 300 px or more, aspect 1:2.5 to 2.5:1).

A URL can only be checked for its form here; an image given as a local file or as bytes is opened with
Pillow and checked in full before it is encoded, so a bad frame never reaches the (paid) API.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MIN_IMAGE_SIDE_PX = 300
MIN_ASPECT = 1 / 2.5
MAX_ASPECT = 2.5
IMAGE_FORMATS = ("JPEG", "PNG")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]+);base64,(?P<data>.*)$", re.DOTALL)
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}$")


def check_image_reference(value: str) -> str:
    """Check an ``image``/``end_image`` value: an http(s) URL, a ``data:image/...`` URI or base64.

    Returns the value unchanged; raises ``ValueError`` (with the rule) otherwise.
    """
    if value.startswith(("https://", "http://")):
        name = value.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1].lower()
        if "." in name and not name.endswith(_IMAGE_SUFFIXES):
            raise ValueError("must be a .jpg, .jpeg or .png image")
        return value
    match = _DATA_URI.match(value)
    if match:
        check_image_bytes(_decode(match["data"]))
        return value
    if len(value) >= 64 and _BASE64.match(value[:4096]):
        check_image_bytes(_decode(value))
        return value
    raise ValueError(
        "must be an http(s) URL, a data:image URI or base64 data; give a local file as a pathlib.Path or bytes"
    )


def _decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64 image data") from None


def check_image_bytes(data: bytes) -> tuple[int, int]:
    """Check raw image bytes against every documented rule; return ``(width, height)``.

    Example::

        width, height = check_image_bytes(Path("frame.png").read_bytes())
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"is {len(data) / 1024 / 1024:.1f} MB: must be at most 10 MB")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = image.format, image.size
    except Image.DecompressionBombError:
        # A few kilobytes can declare billions of pixels; Pillow refuses to open them.
        raise ValueError("has too many pixels to be a usable video frame: use a smaller JPEG or PNG") from None
    except (UnidentifiedImageError, OSError):
        raise ValueError("is not an image: must be a JPEG or PNG file") from None
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"is a {fmt} image: must be JPEG or PNG")
    if width < MIN_IMAGE_SIDE_PX or height < MIN_IMAGE_SIDE_PX:
        raise ValueError(f"is {width}x{height} px: width and height must be at least {MIN_IMAGE_SIDE_PX} px")
    if not MIN_ASPECT <= width / height <= MAX_ASPECT:
        raise ValueError(f"is {width}x{height} px: aspect ratio must be between 1:2.5 and 2.5:1")
    return width, height


def encode_local_image(source: str | Path | bytes) -> str:
    """Check a local image (path, ``file://`` URI or bytes) and return it as base64 for the request.

    The vendor documents URLs; base64 is documented for motion control and unconfirmed for image to
    video (see docs/operators.md), so prefer a URL where you have one.
    """
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(str(source).removeprefix("file://"))
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read local image {path}: {err.strerror}") from None
    check_image_bytes(data)
    return base64.b64encode(data).decode("ascii")


def is_local_image(value: object) -> bool:
    """Whether ``value`` names a local image (bytes, a ``Path`` or a ``file://`` URI) to be encoded."""
    return isinstance(value, (bytes, Path)) or (isinstance(value, str) and value.startswith("file://"))
