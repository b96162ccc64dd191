"""The vendor's image rules, checked on real images drawn in memory (jpg/png, 10 MB, 300 px, 1:2.5..2.5:1)."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from airflow_provider_kling.models import check_image_bytes, encode_local_image
from airflow_provider_kling.models.images import MAX_IMAGE_BYTES, is_local_image


def padded(data: bytes, size: int) -> bytes:
    """``data`` padded to ``size`` bytes: image readers ignore what follows the image, the size rule not."""
    return data + b"\0" * (size - len(data))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_jpeg_or_png_meeting_every_rule_is_accepted_with_its_size(make_image, fmt):
    assert check_image_bytes(make_image(1280, 720, fmt)) == (1280, 720)


def test_an_image_of_exactly_300_by_300_px_is_accepted(make_image):
    assert check_image_bytes(make_image(300, 300)) == (300, 300)


def test_an_image_narrower_than_300_px_is_refused_with_its_size(make_image):
    with pytest.raises(ValueError, match=r"^is 299x400 px: width and height must be at least 300 px$"):
        check_image_bytes(make_image(299, 400))


def test_an_image_lower_than_300_px_is_refused_with_its_size(make_image):
    with pytest.raises(ValueError, match=r"^is 400x299 px: width and height must be at least 300 px$"):
        check_image_bytes(make_image(400, 299))


def test_an_image_of_exactly_10_mb_is_accepted(make_image):
    assert check_image_bytes(padded(make_image(640, 360), MAX_IMAGE_BYTES)) == (640, 360)


def test_an_image_over_10_mb_is_refused_with_its_size(make_image):
    with pytest.raises(ValueError, match=r"^is 10\.0 MB: must be at most 10 MB$"):
        check_image_bytes(padded(make_image(640, 360), MAX_IMAGE_BYTES + 1))


def test_a_large_uncompressed_png_over_10_mb_is_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (1900, 1900)).save(buffer, "PNG", compress_level=0)  # stored, not deflated: ~10.3 MB

    with pytest.raises(ValueError, match=r"MB: must be at most 10 MB"):
        check_image_bytes(buffer.getvalue())


@pytest.mark.parametrize(("width", "height"), [(750, 300), (300, 750)])
def test_an_aspect_ratio_of_exactly_2_5_to_1_either_way_is_accepted(make_image, width, height):
    assert check_image_bytes(make_image(width, height)) == (width, height)


@pytest.mark.parametrize(("width", "height"), [(760, 300), (300, 760), (1200, 300)])
def test_an_aspect_ratio_outside_1_to_2_5_and_2_5_to_1_is_refused(make_image, width, height):
    with pytest.raises(ValueError, match=rf"^is {width}x{height} px: aspect ratio must be between 1:2.5 and 2.5:1$"):
        check_image_bytes(make_image(width, height))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "BMP"])
def test_an_image_in_another_format_is_refused_naming_the_format(make_image, fmt):
    with pytest.raises(ValueError, match=rf"^is a {fmt} image: must be JPEG or PNG$"):
        check_image_bytes(make_image(640, 360, fmt))


@pytest.mark.parametrize("data", [b"%PDF-1.7 not an image", b"", b"\x89PNG\r\n\x1a\n truncated"])
def test_a_file_that_is_not_an_image_is_refused(data):
    with pytest.raises(ValueError, match=r"^is not an image: must be a JPEG or PNG file$"):
        check_image_bytes(data)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds no pixel data (a few dozen bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"") + png_chunk(b"IEND", b"")


def test_a_tiny_file_declaring_billions_of_pixels_is_refused_as_a_value_error():
    # Pillow refuses to open a "decompression bomb"; that must still read as a broken rule.
    with pytest.raises(ValueError, match=r"^has too many pixels to be a usable video frame"):
        check_image_bytes(png_header(20_000, 20_000))


# -- encode_local_image --------------------------------------------------------------------------------


def test_a_local_image_given_as_a_path_is_checked_and_encoded_as_base64(make_image, tmp_path):
    data = make_image(640, 360)
    path = tmp_path / "frame.png"
    path.write_bytes(data)

    assert base64.b64decode(encode_local_image(path)) == data


def test_a_local_image_given_as_a_file_uri_is_checked_and_encoded(make_image, tmp_path):
    data = make_image(640, 360, "JPEG")
    path = tmp_path / "frame.jpg"
    path.write_bytes(data)

    assert base64.b64decode(encode_local_image(f"file://{path}")) == data


def test_a_local_image_given_as_bytes_is_checked_and_encoded(make_image):
    data = make_image(640, 360)

    assert base64.b64decode(encode_local_image(data)) == data


def test_a_local_image_breaking_a_rule_is_refused_before_encoding(make_image, tmp_path):
    path = tmp_path / "small.png"
    path.write_bytes(make_image(200, 200))

    with pytest.raises(ValueError, match=r"is 200x200 px"):
        encode_local_image(path)


def test_a_missing_local_file_is_refused_naming_the_path(tmp_path):
    missing = tmp_path / "missing.png"

    with pytest.raises(ValueError, match=rf"^cannot read local image {missing}: No such file or directory$"):
        encode_local_image(missing)


@pytest.mark.parametrize("value", [b"raw", Path("frame.png"), "file:///data/frame.png"])
def test_bytes_paths_and_file_uris_are_local_images(value):
    assert is_local_image(value)


@pytest.mark.parametrize("value", ["https://example.com/a.png", "/data/frame.png", None, 5])
def test_urls_plain_strings_and_other_values_are_not_local_images(value):
    assert not is_local_image(value)
