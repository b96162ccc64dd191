"""Every documented request rule, per endpoint, as :func:`build_request` enforces it.

Messages are part of the contract: each names the field, the value and the rule it broke.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from airflow_provider_kling.exceptions import KlingValidationError
from airflow_provider_kling.models import (
    KNOWN_MODELS,
    REQUEST_MODELS,
    ImageToVideoRequest,
    MotionControlRequest,
    ProTextToVideoRequest,
    TextToVideoRequest,
    build_request,
)
from airflow_provider_kling.models.requests import check_resolved_fields

STD_T2V = "kling-v3.0-std-t2v"
PRO_T2V = "kling-v3.0-pro-t2v"
K4_T2V = "kling-v3.0-4k-t2v"
STD_I2V = "kling-v3.0-std-i2v"
MOTION = "kling-v3.0-motion-control"
IMAGE_URL = "https://example.com/frames/first.png"
VIDEO_URL = "https://example.com/moves/dance.mp4"


def refused(model: str, body: dict[str, Any]) -> str:
    """The one-line message of the validation error ``body`` raises for ``model``."""
    with pytest.raises(KlingValidationError) as caught:
        build_request(model, body)
    return str(caught.value)


def t2v(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a red fox in the snow", **fields}


def i2v(**fields: Any) -> dict[str, Any]:
    return {"image": IMAGE_URL, "prompt": "the fox turns its head", **fields}


def motion(**fields: Any) -> dict[str, Any]:
    return {"image": IMAGE_URL, "video": VIDEO_URL, **fields}


# -- endpoints -----------------------------------------------------------------------------------------


def test_every_documented_endpoint_has_a_request_model():
    assert set(KNOWN_MODELS) == {
        "kling-v3.0-std-t2v",
        "kling-v3.0-pro-t2v",
        "kling-v3.0-4k-t2v",
        "kling-v3.0-std-i2v",
        "kling-v3.0-pro-i2v",
        "kling-v3.0-4k-i2v",
        "kling-v3.0-motion-control",
    }


@pytest.mark.parametrize(
    ("model", "request_model"),
    [
        (STD_T2V, TextToVideoRequest),
        (K4_T2V, TextToVideoRequest),
        (PRO_T2V, ProTextToVideoRequest),
        (STD_I2V, ImageToVideoRequest),
        ("kling-v3.0-pro-i2v", ImageToVideoRequest),
        ("kling-v3.0-4k-i2v", ImageToVideoRequest),
        (MOTION, MotionControlRequest),
    ],
)
def test_each_endpoint_is_validated_by_its_own_body(model, request_model):
    assert REQUEST_MODELS[model] is request_model


def test_an_unknown_model_is_refused_naming_the_model_and_the_known_ones():
    message = refused("kling-v3.0-ultra-t2v", t2v())

    assert "model='kling-v3.0-ultra-t2v': unknown Kling model" in message
    assert "kling-v3.0-std-t2v" in message
    assert "KlingSubmitOperator" in message


def test_a_typed_request_is_returned_as_is_for_its_endpoint():
    request = TextToVideoRequest(prompt="a red fox")

    assert build_request(STD_T2V, request) is request


def test_a_typed_request_for_another_endpoint_is_refused():
    with pytest.raises(KlingValidationError, match=r"a TextToVideoRequest is not a body for kling-v3.0-std-i2v"):
        build_request(STD_I2V, TextToVideoRequest(prompt="a red fox"))


# -- prompt and negative_prompt ------------------------------------------------------------------------


def test_a_minimal_text_to_video_request_is_accepted():
    assert build_request(STD_T2V, t2v()).to_payload() == {"prompt": "a red fox in the snow"}


def test_a_prompt_of_exactly_2500_characters_is_accepted():
    assert build_request(STD_T2V, t2v(prompt="p" * 2500)).to_payload()["prompt"] == "p" * 2500


def test_a_prompt_longer_than_2500_characters_is_refused_with_the_limit():
    message = refused(STD_T2V, t2v(prompt="p" * 2501))

    assert "prompt='ppp" in message
    assert "(2501 chars): must be at most 2500 characters" in message


def test_an_over_long_value_is_shortened_in_the_message():
    assert len(refused(STD_T2V, t2v(prompt="p" * 3000))) < 200


def test_a_negative_prompt_longer_than_2500_characters_is_refused():
    assert "negative_prompt='nnn" in refused(STD_T2V, t2v(negative_prompt="n" * 2501))
    assert "must be at most 2500 characters" in refused(STD_T2V, t2v(negative_prompt="n" * 2501))


def test_an_empty_prompt_is_refused():
    assert "prompt='': must not be empty" in refused(STD_T2V, t2v(prompt=""))


def test_a_whitespace_only_prompt_is_refused_as_empty():
    assert "prompt='   ': must not be empty or only whitespace" in refused(STD_T2V, t2v(prompt="   "))


def test_a_missing_prompt_is_refused_as_required():
    assert "prompt: is required" in refused(STD_T2V, {})


def test_an_empty_negative_prompt_is_sent_as_given():
    assert build_request(STD_T2V, t2v(negative_prompt="")).to_payload()["negative_prompt"] == ""


# -- duration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [3, 5, 15])
def test_a_duration_between_3_and_15_seconds_is_accepted(duration):
    assert build_request(STD_T2V, t2v(duration=duration)).to_payload()["duration"] == duration


@pytest.mark.parametrize("duration", [2, 16])
def test_a_duration_outside_3_to_15_seconds_is_refused(duration):
    assert f"duration={duration}: must be between 3 and 15 seconds" in refused(STD_T2V, t2v(duration=duration))


def test_a_duration_given_as_a_numeric_string_is_sent_as_an_integer():
    # A templated "{{ params.duration }}" renders to a string.
    assert build_request(STD_T2V, t2v(duration="5")).to_payload()["duration"] == 5


def test_a_duration_string_outside_the_range_is_refused():
    assert "duration='16': must be between 3 and 15 seconds" in refused(STD_T2V, t2v(duration="16"))


def test_a_fractional_duration_is_refused_as_not_whole_seconds():
    message = refused(STD_T2V, t2v(duration=5.5))

    assert "duration=5.5: must be a whole number of seconds between 3 and 15" in message


def test_a_non_numeric_duration_is_refused():
    assert "duration='five': must be a whole number of seconds" in refused(STD_T2V, t2v(duration="five"))


# -- cfg_scale, sound, aspect_ratio --------------------------------------------------------------------


@pytest.mark.parametrize("cfg_scale", [0, 0.5, 1])
def test_a_cfg_scale_between_0_and_1_is_accepted(cfg_scale):
    assert build_request(STD_T2V, t2v(cfg_scale=cfg_scale)).to_payload()["cfg_scale"] == cfg_scale


@pytest.mark.parametrize("cfg_scale", [-0.1, 1.5])
def test_a_cfg_scale_outside_0_to_1_is_refused(cfg_scale):
    assert f"cfg_scale={cfg_scale}: must be between 0 and 1" in refused(STD_T2V, t2v(cfg_scale=cfg_scale))


def test_a_non_numeric_cfg_scale_is_refused():
    assert "cfg_scale='high': must be a number between 0 and 1" in refused(STD_T2V, t2v(cfg_scale="high"))


def test_sound_must_be_a_boolean():
    assert "sound='loud'" in refused(STD_T2V, t2v(sound="loud"))


@pytest.mark.parametrize("aspect_ratio", ["16:9", "9:16", "1:1"])
def test_each_documented_aspect_ratio_is_accepted(aspect_ratio):
    assert build_request(K4_T2V, t2v(aspect_ratio=aspect_ratio)).to_payload()["aspect_ratio"] == aspect_ratio


@pytest.mark.parametrize("aspect_ratio", ["4:3", "16:10", "square", ""])
def test_an_undocumented_aspect_ratio_is_refused_listing_the_allowed_ones(aspect_ratio):
    message = refused(STD_T2V, t2v(aspect_ratio=aspect_ratio))

    assert f"aspect_ratio={aspect_ratio!r}: must be one of '16:9', '9:16' or '1:1'" in message


# -- multi_prompt --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [STD_T2V, K4_T2V])
def test_std_and_4k_text_to_video_refuse_multi_prompt(model):
    message = refused(model, t2v(multi_prompt=[{"prompt": "close-up", "duration": 3}]))

    assert "multi_prompt=" in message
    assert "is not a field of this endpoint" in message


def test_pro_text_to_video_accepts_multi_prompt_as_objects():
    shots = [{"prompt": "close-up", "duration": 3}, {"prompt": "wide shot", "duration": 4}]

    assert build_request(PRO_T2V, t2v(multi_prompt=shots)).to_payload()["multi_prompt"] == shots


def test_pro_text_to_video_accepts_multi_prompt_as_plain_strings():
    # The item type on the pro variants is unconfirmed by the vendor: strings are sent as given.
    assert build_request(PRO_T2V, t2v(multi_prompt=["close-up", "wide shot"])).to_payload()["multi_prompt"] == [
        "close-up",
        "wide shot",
    ]


def test_a_shot_object_without_duration_is_sent_without_it():
    payload = build_request(PRO_T2V, t2v(multi_prompt=[{"prompt": "close-up"}])).to_payload()

    assert payload["multi_prompt"] == [{"prompt": "close-up"}]


def test_an_empty_multi_prompt_list_is_refused():
    assert "multi_prompt=[]: must not be empty" in refused(PRO_T2V, t2v(multi_prompt=[]))


def test_a_shot_duration_outside_3_to_15_seconds_is_refused_naming_the_shot():
    message = refused(PRO_T2V, t2v(multi_prompt=[{"prompt": "close-up", "duration": 16}]))

    assert message.endswith("multi_prompt.0.duration=16: must be between 3 and 15 seconds")


def test_an_empty_shot_prompt_is_refused_naming_the_shot():
    message = refused(PRO_T2V, t2v(multi_prompt=["close-up", ""]))

    assert message.endswith("multi_prompt.1='': must not be empty")


def test_a_shot_without_a_prompt_is_refused():
    assert "multi_prompt.0.prompt: is required" in refused(PRO_T2V, t2v(multi_prompt=[{"duration": 3}]))


def test_a_shot_with_an_unknown_key_is_refused():
    message = refused(PRO_T2V, t2v(multi_prompt=[{"prompt": "close-up", "camera": "pan"}]))

    assert "multi_prompt.0.camera='pan': is not a field of this endpoint" in message


def test_a_shot_that_is_neither_an_object_nor_a_string_is_refused():
    message = refused(PRO_T2V, t2v(multi_prompt=[5]))

    assert "multi_prompt.0: must be an object {prompt, duration} or a prompt string" in message


# -- image to video ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["kling-v3.0-std-i2v", "kling-v3.0-pro-i2v", "kling-v3.0-4k-i2v"])
def test_a_minimal_image_to_video_request_is_accepted(model):
    assert build_request(model, i2v()).to_payload() == {"image": IMAGE_URL, "prompt": "the fox turns its head"}


def test_image_to_video_requires_an_image():
    assert "image: is required" in refused(STD_I2V, {"prompt": "the fox turns its head"})


def test_image_to_video_requires_a_prompt():
    assert "prompt: is required" in refused(STD_I2V, {"image": IMAGE_URL})


def test_image_to_video_has_no_aspect_ratio():
    assert "aspect_ratio='16:9': is not a field of this endpoint" in refused(STD_I2V, i2v(aspect_ratio="16:9"))


def test_an_end_image_alone_is_accepted():
    assert build_request(STD_I2V, i2v(end_image=IMAGE_URL)).to_payload()["end_image"] == IMAGE_URL


def test_multi_prompt_alone_is_accepted_on_image_to_video():
    shots = [{"prompt": "close-up", "duration": 3}]

    assert build_request(STD_I2V, i2v(multi_prompt=shots)).to_payload()["multi_prompt"] == shots


def test_end_image_together_with_multi_prompt_is_refused():
    message = refused(STD_I2V, i2v(end_image=IMAGE_URL, multi_prompt=[{"prompt": "close-up", "duration": 3}]))

    assert "end_image and multi_prompt cannot be used together" in message


def test_image_to_video_applies_the_duration_rule():
    assert "duration=16: must be between 3 and 15 seconds" in refused(STD_I2V, i2v(duration=16))


# -- image references ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.png",
        "https://example.com/a.JPG",
        "https://example.com/a.jpeg?X-Amz-Signature=1.2.3",
        "https://example.com/render/12345",  # no extension: cannot be judged, sent as given
        "http://127.0.0.1:8089/a.png",
    ],
)
def test_an_http_url_of_a_jpeg_or_png_is_accepted(url):
    assert build_request(STD_I2V, i2v(image=url)).to_payload()["image"] == url


@pytest.mark.parametrize("url", ["https://example.com/a.gif", "https://example.com/a.webp?sig=1"])
def test_an_image_url_of_another_format_is_refused(url):
    assert f"image={url!r}: must be a .jpg, .jpeg or .png image" in refused(STD_I2V, i2v(image=url))


def test_the_end_image_follows_the_same_rules():
    message = refused(STD_I2V, i2v(end_image="https://example.com/last.gif"))

    assert "end_image='https://example.com/last.gif': must be a .jpg, .jpeg or .png image" in message


def test_a_data_uri_of_a_valid_png_is_accepted(make_image):
    uri = "data:image/png;base64," + base64.b64encode(make_image(640, 360)).decode()

    assert build_request(STD_I2V, i2v(image=uri)).to_payload()["image"] == uri


def test_bare_base64_of_a_valid_jpeg_is_accepted(make_image):
    data = base64.b64encode(make_image(640, 360, "JPEG")).decode()

    assert build_request(STD_I2V, i2v(image=data)).to_payload()["image"] == data


def test_a_data_uri_of_a_too_small_image_is_refused_with_its_size(make_image):
    uri = "data:image/png;base64," + base64.b64encode(make_image(100, 100)).decode()

    assert "is 100x100 px: width and height must be at least 300 px" in refused(STD_I2V, i2v(image=uri))


def test_a_data_uri_that_is_not_an_image_is_refused():
    uri = "data:text/plain;base64," + base64.b64encode(b"hello, not an image").decode()

    assert "is not an image: must be a JPEG or PNG file" in refused(STD_I2V, i2v(image=uri))


@pytest.mark.parametrize("path", ["/data/frames/first.png", "frames/first.png", "C:\\frames\\first.png"])
def test_a_local_path_string_is_refused_with_a_hint_to_pass_a_path_or_bytes(path):
    message = refused(STD_I2V, i2v(image=path))

    assert f"image={path!r}: must be an http(s) URL, a data:image URI or base64 data" in message
    assert "give a local file as a pathlib.Path or bytes" in message


def test_another_url_scheme_is_refused():
    assert "must be an http(s) URL" in refused(STD_I2V, i2v(image="ftp://example.com/a.png"))


# -- motion control ------------------------------------------------------------------------------------


def test_a_minimal_motion_control_request_is_accepted():
    assert build_request(MOTION, motion()).to_payload() == {"image": IMAGE_URL, "video": VIDEO_URL}


def test_a_full_motion_control_request_is_sent_as_given():
    body = motion(
        model_name="kling-v3-0-pro",
        character_orientation="video",
        prompt="dance",
        negative_prompt="blur",
        keep_original_sound=True,
    )

    assert build_request(MOTION, body).to_payload() == body


@pytest.mark.parametrize("video", ["https://example.com/a.mp4", "https://example.com/a.MOV?sig=1", VIDEO_URL])
def test_a_motion_video_url_of_an_mp4_or_mov_is_accepted(video):
    assert build_request(MOTION, motion(video=video)).to_payload()["video"] == video


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        (
            {"video": "https://example.com/dance.avi"},
            "video='https://example.com/dance.avi': must be an .mp4 or .mov video",
        ),
        ({"video": "/data/dance.mp4"}, "video='/data/dance.mp4': must be an http(s) URL of an .mp4 or .mov video"),
        (
            {"model_name": "kling-v3-0-4k"},
            "model_name='kling-v3-0-4k': must be one of 'kling-v3-0-std' or 'kling-v3-0-pro'",
        ),
        ({"character_orientation": "left"}, "character_orientation='left': must be one of 'image' or 'video'"),
    ],
)
def test_a_motion_control_field_against_its_rule_is_refused(fields, rule):
    assert rule in refused(MOTION, motion(**fields))


def test_motion_control_requires_a_video():
    assert "video: is required" in refused(MOTION, {"image": IMAGE_URL})


def test_motion_control_prompt_is_at_most_2500_characters():
    assert "must be at most 2500 characters" in refused(MOTION, motion(prompt="p" * 2501))


def test_motion_control_has_no_duration():
    assert "duration=5: is not a field of this endpoint" in refused(MOTION, motion(duration=5))


def test_motion_control_image_follows_the_image_rules():
    assert "give a local file as a pathlib.Path or bytes" in refused(MOTION, motion(image="/data/mascot.png"))


# -- the body as a whole -------------------------------------------------------------------------------


def test_an_unknown_field_is_refused_so_a_typo_does_not_silently_fall_back_to_a_default():
    assert "durration=5: is not a field of this endpoint" in refused(STD_T2V, t2v(durration=5))


def test_several_broken_rules_are_reported_in_one_line():
    message = refused(STD_T2V, t2v(duration=16, cfg_scale=1.5))

    assert "\n" not in message
    assert message.startswith("invalid request for kling-v3.0-std-t2v: ")
    assert "duration=16: must be between 3 and 15 seconds; cfg_scale=1.5: must be between 0 and 1" in message


def test_to_payload_leaves_out_fields_that_are_none():
    payload = TextToVideoRequest(prompt="a red fox", duration=None, negative_prompt=None).to_payload()

    assert payload == {"prompt": "a red fox"}


def test_to_payload_keeps_false_and_zero():
    payload = TextToVideoRequest(prompt="a red fox", sound=False, cfg_scale=0).to_payload()

    assert payload == {"prompt": "a red fox", "sound": False, "cfg_scale": 0.0}


def test_a_request_is_immutable_once_validated():
    request = TextToVideoRequest(prompt="a red fox")

    with pytest.raises(ValueError, match="frozen"):
        request.prompt = "something else"  # type: ignore[misc]


# -- check_resolved_fields (parse-time validation of partly templated requests) ------------------------


def test_parse_time_check_ignores_the_fields_still_to_be_templated():
    check_resolved_fields(STD_T2V, {"prompt": "{{ params.prompt }}", "duration": "{{ params.d }}"}, {"duration"})


def test_parse_time_check_reports_a_known_bad_field_next_to_a_templated_one():
    with pytest.raises(KlingValidationError, match=r"duration=16: must be between 3 and 15 seconds"):
        check_resolved_fields(STD_T2V, {"prompt": "{{ params.prompt }}", "duration": 16}, {"prompt"})


def test_parse_time_check_refuses_an_unknown_model():
    with pytest.raises(KlingValidationError, match=r"unknown Kling model"):
        check_resolved_fields("kling-v9-t2v", {"prompt": "a red fox"}, set())
