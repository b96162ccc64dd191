"""The bad-input matrix: every bad input is refused before a request leaves the machine.

Each row is what a user would write (an operator in a DAG, a templated value rendered at run time, a
local image, a connection, or a direct hook call), the error type it must raise, and the words the
message must contain: the field and the rule. A catch-all mock records any HTTP request; there must be
none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import respx
from _fakes import FakeTI

from airflow_provider_kling.exceptions import KlingAuthError, KlingValidationError
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.models import TextToVideoRequest
from airflow_provider_kling.operators.kling import (
    KlingImageToVideoOperator,
    KlingMotionControlOperator,
    KlingSubmitOperator,
    KlingTextToVideoOperator,
)

IMAGE_URL = "https://example.com/frames/first.png"
VIDEO_URL = "https://example.com/moves/dance.mp4"
TEN_MB = 10 * 1024 * 1024


@dataclass
class Kit:
    """What a row may use: a scratch folder and an image drawer."""

    tmp_path: Path
    make_image: Callable[..., bytes]

    def file(self, name: str, data: bytes) -> Path:
        path = self.tmp_path / name
        path.write_bytes(data)
        return path


def run(operator: KlingSubmitOperator, **params: Any) -> Any:
    """Render the operator's templates with ``params`` and execute it, as a worker would."""
    context: dict[str, Any] = {"params": params, "ti": FakeTI()}
    operator.render_template_fields(context)
    return operator.execute(context)


def t2v(**kwargs: Any) -> KlingTextToVideoOperator:
    return KlingTextToVideoOperator(task_id="teaser", **{"prompt": "a red fox in the snow", **kwargs})


def pro_t2v(**kwargs: Any) -> KlingTextToVideoOperator:
    return t2v(model="kling-v3.0-pro-t2v", **kwargs)


def i2v(**kwargs: Any) -> KlingImageToVideoOperator:
    return KlingImageToVideoOperator(
        task_id="animate", **{"image": IMAGE_URL, "prompt": "the fox turns its head", **kwargs}
    )


def motion(**kwargs: Any) -> KlingMotionControlOperator:
    return KlingMotionControlOperator(task_id="dance", **{"image": IMAGE_URL, "video": VIDEO_URL, **kwargs})


def data_uri(data: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(data).decode()


@dataclass
class Row:
    act: Callable[[Kit], Any]
    error: type[Exception]
    says: tuple[str, ...]


ROWS: dict[str, Row] = {
    # -- literal values: refused when the DAG is parsed -----------------------------------------------
    "prompt over 2500 characters": Row(
        lambda kit: t2v(prompt="p" * 2501),
        KlingValidationError,
        ("prompt='ppp", "(2501 chars): must be at most 2500 characters"),
    ),
    "negative_prompt over 2500 characters": Row(
        lambda kit: t2v(negative_prompt="n" * 2501),
        KlingValidationError,
        ("negative_prompt='nnn", "must be at most 2500 characters"),
    ),
    "empty prompt": Row(lambda kit: t2v(prompt=""), KlingValidationError, ("prompt='': must not be empty",)),
    "whitespace prompt": Row(
        lambda kit: t2v(prompt="  \n"), KlingValidationError, ("prompt='  \\n': must not be empty",)
    ),
    "duration 2": Row(
        lambda kit: t2v(duration=2), KlingValidationError, ("duration=2: must be between 3 and 15 seconds",)
    ),
    "duration 16": Row(
        lambda kit: t2v(duration=16), KlingValidationError, ("duration=16: must be between 3 and 15 seconds",)
    ),
    "duration 5.5": Row(
        lambda kit: t2v(duration=5.5),
        KlingValidationError,
        ("duration=5.5: must be a whole number of seconds between 3 and 15",),
    ),
    "cfg_scale -0.1": Row(
        lambda kit: t2v(cfg_scale=-0.1), KlingValidationError, ("cfg_scale=-0.1: must be between 0 and 1",)
    ),
    "cfg_scale 1.5": Row(
        lambda kit: t2v(cfg_scale=1.5), KlingValidationError, ("cfg_scale=1.5: must be between 0 and 1",)
    ),
    "unknown aspect ratio": Row(
        lambda kit: t2v(aspect_ratio="4:3"),
        KlingValidationError,
        ("aspect_ratio='4:3': must be one of '16:9', '9:16' or '1:1'",),
    ),
    "multi_prompt on std text to video": Row(
        lambda kit: t2v(multi_prompt=[{"prompt": "close-up", "duration": 3}]),
        KlingValidationError,
        ("multi_prompt=", "is not a field of this endpoint"),
    ),
    "empty multi_prompt list": Row(
        lambda kit: pro_t2v(multi_prompt=[]), KlingValidationError, ("multi_prompt=[]: must not be empty",)
    ),
    "shot duration 20": Row(
        lambda kit: pro_t2v(multi_prompt=[{"prompt": "close-up", "duration": 20}]),
        KlingValidationError,
        ("multi_prompt.0.duration=20: must be between 3 and 15 seconds",),
    ),
    "end_image with multi_prompt": Row(
        lambda kit: i2v(end_image=IMAGE_URL, multi_prompt=[{"prompt": "close-up", "duration": 3}]),
        KlingValidationError,
        ("end_image and multi_prompt cannot be used together",),
    ),
    "local path given as a string": Row(
        lambda kit: i2v(image="/data/frames/first.png"),
        KlingValidationError,
        ("image='/data/frames/first.png'", "give a local file as a pathlib.Path or bytes"),
    ),
    "image URL of a GIF": Row(
        lambda kit: i2v(image="https://example.com/first.gif"),
        KlingValidationError,
        ("image='https://example.com/first.gif': must be a .jpg, .jpeg or .png image",),
    ),
    "data URI of a 100 px image": Row(
        lambda kit: i2v(image=data_uri(kit.make_image(100, 100))),
        KlingValidationError,
        ("image='data:image/png;base64,", "is 100x100 px: width and height must be at least 300 px"),
    ),
    "unknown model for the text operator": Row(
        lambda kit: t2v(model="kling-v3.0-ultra-t2v"),
        KlingValidationError,
        ("model='kling-v3.0-ultra-t2v': KlingTextToVideoOperator takes one of kling-v3.0-std-t2v",),
    ),
    "misspelt field in a raw payload": Row(
        lambda kit: KlingSubmitOperator(
            task_id="raw", model="kling-v3.0-std-t2v", payload={"prompt": "a red fox", "durration": 5}
        ),
        KlingValidationError,
        ("durration=5: is not a field of this endpoint",),
    ),
    "motion video that is an AVI": Row(
        lambda kit: motion(video="https://example.com/dance.avi"),
        KlingValidationError,
        ("video='https://example.com/dance.avi': must be an .mp4 or .mov video",),
    ),
    "unknown character orientation": Row(
        lambda kit: motion(character_orientation="left"),
        KlingValidationError,
        ("character_orientation='left': must be one of 'image' or 'video'",),
    ),
    "unknown motion model_name": Row(
        lambda kit: motion(model_name="kling-v3-0-4k"),
        KlingValidationError,
        ("model_name='kling-v3-0-4k': must be one of 'kling-v3-0-std' or 'kling-v3-0-pro'",),
    ),
    "poll_interval 0": Row(
        lambda kit: t2v(poll_interval=0), KlingValidationError, ("poll_interval=0: must be more than 0 seconds",)
    ),
    "negative timeout": Row(
        lambda kit: t2v(timeout=-5), KlingValidationError, ("timeout=-5: must be more than 0 seconds",)
    ),
    # -- local images: checked at execute, before the submit ------------------------------------------
    "local image under 300 px": Row(
        lambda kit: run(i2v(image=kit.file("small.png", kit.make_image(200, 200)))),
        KlingValidationError,
        ("image: is 200x200 px: width and height must be at least 300 px",),
    ),
    "local image over 10 MB": Row(
        lambda kit: run(i2v(image=kit.make_image(640, 360).ljust(TEN_MB + 1, b"\0"))),
        KlingValidationError,
        ("image: is 10.0 MB: must be at most 10 MB",),
    ),
    "local image of 1:3": Row(
        lambda kit: run(i2v(image=kit.file("tall.png", kit.make_image(300, 900)))),
        KlingValidationError,
        ("image: is 300x900 px: aspect ratio must be between 1:2.5 and 2.5:1",),
    ),
    "end image that is not an image": Row(
        lambda kit: run(i2v(end_image=f"file://{kit.file('notes.png', b'just some notes')}")),
        KlingValidationError,
        ("end_image: is not an image: must be a JPEG or PNG file",),
    ),
    "local GIF": Row(
        lambda kit: run(i2v(image=kit.make_image(640, 360, "GIF"))),
        KlingValidationError,
        ("image: is a GIF image: must be JPEG or PNG",),
    ),
    "local image that does not exist": Row(
        lambda kit: run(i2v(image=kit.tmp_path / "missing.png")),
        KlingValidationError,
        ("image: cannot read local image", "missing.png"),
    ),
    "motion character image under 300 px": Row(
        lambda kit: run(motion(image=kit.make_image(120, 120))),
        KlingValidationError,
        ("image: is 120x120 px: width and height must be at least 300 px",),
    ),
    # -- templated values: checked at execute, after rendering ----------------------------------------
    "templated prompt rendered over 2500 characters": Row(
        lambda kit: run(t2v(prompt="{{ params.prompt }}"), prompt="p" * 2501),
        KlingValidationError,
        ("prompt='ppp", "must be at most 2500 characters"),
    ),
    "templated duration rendered as 16": Row(
        lambda kit: run(t2v(duration="{{ params.duration }}"), duration=16),
        KlingValidationError,
        ("duration='16': must be between 3 and 15 seconds",),
    ),
    "templated aspect ratio rendered as 4:3": Row(
        lambda kit: run(t2v(aspect_ratio="{{ params.ratio }}"), ratio="4:3"),
        KlingValidationError,
        ("aspect_ratio='4:3': must be one of",),
    ),
    "templated model rendered to another kind": Row(
        lambda kit: run(t2v(model="{{ params.model }}"), model="kling-v3.0-std-i2v"),
        KlingValidationError,
        ("model='kling-v3.0-std-i2v': KlingTextToVideoOperator takes one of",),
    ),
    "raw model name that leaves the endpoint path": Row(
        lambda kit: run(KlingSubmitOperator(task_id="raw", model="../task-result", payload={"prompt": "x"})),
        KlingValidationError,
        ("model='../task-result': must be a Kling endpoint name",),
    ),
    # -- direct hook calls ---------------------------------------------------------------------------
    "typed request for an unknown model": Row(
        lambda kit: KlingHook().submit("kling-v3.1-std-t2v", TextToVideoRequest(prompt="a red fox")),
        KlingValidationError,
        ("model='kling-v3.1-std-t2v': unknown Kling model",),
    ),
    "image field sent to text to video": Row(
        lambda kit: KlingHook().submit("kling-v3.0-std-t2v", {"prompt": "a red fox", "image": IMAGE_URL}),
        KlingValidationError,
        ("image='https://example.com/frames/first.png': is not a field of this endpoint",),
    ),
    # -- the connection ------------------------------------------------------------------------------
    "missing connection": Row(
        lambda kit: run(t2v(kling_conn_id="kling_missing", deferrable=False)),
        KlingAuthError,
        ("connection 'kling_missing' is not defined",),
    ),
    "empty API key": Row(
        lambda kit: run(t2v(kling_conn_id="kling_no_key", deferrable=False)),
        KlingAuthError,
        ("connection 'kling_no_key': password (the API key) is empty",),
    ),
    "non-HTTPS base URL": Row(
        lambda kit: run(t2v(kling_conn_id="kling_plain_http", deferrable=False)),
        KlingValidationError,
        ("connection 'kling_plain_http': host='http://api.example.com': must use https",),
    ),
    "bad connection extra": Row(
        lambda kit: KlingHook("kling_bad_extra").get_task_result("kt-1"),
        KlingValidationError,
        ("connection 'kling_bad_extra' extra: timeout=0: Input should be greater than 0",),
    ),
}


@pytest.fixture
def network() -> Iterator[respx.MockRouter]:
    """Any HTTP request, to any host, lands here (and would fail the row)."""
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route().respond(200, json={"task_id": "must-not-be-created"})
        yield router


@pytest.fixture
def connections(kling_conn, monkeypatch) -> None:
    kling_conn("kling_no_key", password="")
    kling_conn("kling_plain_http", host="http://api.example.com")
    kling_conn("kling_bad_extra", extra={"timeout": 0})
    monkeypatch.delenv("AIRFLOW_CONN_KLING_MISSING", raising=False)


def test_the_matrix_has_at_least_25_bad_inputs():
    assert len(ROWS) >= 25


def test_the_catch_all_does_see_a_request_that_leaves(kling_conn, network):
    # The control for the matrix: a good request through the same path is seen by the catch-all.
    KlingHook().submit("kling-v3.0-std-t2v", {"prompt": "a red fox in the snow"})

    assert network.calls.call_count == 1


@pytest.mark.parametrize("name", list(ROWS))
def test_a_bad_input_is_refused_naming_the_field_and_the_rule_before_any_request(
    name, connections, network, tmp_path, make_image
):
    row = ROWS[name]

    with pytest.raises(row.error) as caught:
        row.act(Kit(tmp_path, make_image))

    assert type(caught.value) is row.error
    message = str(caught.value)
    for words in row.says:
        assert words in message
    assert "\n" not in message
    assert network.calls.call_count == 0
