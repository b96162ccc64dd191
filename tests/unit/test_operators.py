"""The submit operators: validation, deferral, resuming, the synchronous wait and the request they send."""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fakes import (
    API_KEY,
    FAILED,
    PROCESSING,
    SUCCEED,
    VIDEO_URL,
    make_context,
    result_summary,
    submit_path,
    task_event,
    task_result,
    use_fake_connection,
)
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred
from PIL import Image

from airflow_provider_kling.exceptions import (
    KlingContentPolicyError,
    KlingError,
    KlingTaskFailedError,
    KlingTimeoutError,
    KlingValidationError,
)
from airflow_provider_kling.models import REQUEST_MODELS
from airflow_provider_kling.operators.kling import (
    KlingImageToVideoOperator,
    KlingMotionControlOperator,
    KlingSubmitOperator,
    KlingTextToVideoOperator,
)
from airflow_provider_kling.triggers.kling import KlingTaskTrigger

T2V = "kling-v3.0-std-t2v"
I2V = "kling-v3.0-std-i2v"
MOTION = "kling-v3.0-motion-control"
KLING_TASK_ID = "kt-1"
TYPED_OPERATORS = [KlingTextToVideoOperator, KlingImageToVideoOperator, KlingMotionControlOperator]

pytestmark = pytest.mark.usefixtures("kling_conn")


def text_to_video(**kwargs: Any) -> KlingTextToVideoOperator:
    kwargs.setdefault("task_id", "generate")
    kwargs.setdefault("prompt", "a red fox running through fresh snow")
    return KlingTextToVideoOperator(**kwargs)


def png(tmp_path: Path, width: int, height: int, name: str = "frame.png") -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format="PNG")
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


def sent_body(route: Any) -> dict[str, Any]:
    return json.loads(route.calls.last.request.content)


def defer(operator: KlingSubmitOperator, context: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as info:
        operator.execute(context)
    return info.value


# -- validation at construction ----------------------------------------------------------------------


def test_a_literal_bad_duration_is_rejected_at_construction():
    with pytest.raises(KlingValidationError, match=r"duration=16: must be between 3 and 15 seconds"):
        text_to_video(duration=16)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("duration", 2, "must be between 3 and 15 seconds"),
        ("cfg_scale", 1.5, "must be between 0 and 1"),
        ("aspect_ratio", "4:3", "must be one of"),
        ("prompt", "x" * 2501, "must be at most 2500 characters"),
        ("negative_prompt", "x" * 2501, "must be at most 2500 characters"),
    ],
)
def test_a_literal_bad_value_names_the_field_and_the_rule(field, value, rule):
    with pytest.raises(KlingValidationError) as info:
        text_to_video(**{field: value})

    assert field in str(info.value)
    assert rule in str(info.value)


def test_end_image_with_multi_prompt_is_rejected_at_construction():
    with pytest.raises(KlingValidationError, match="end_image and multi_prompt"):
        KlingImageToVideoOperator(
            task_id="animate",
            image="https://example.com/first.png",
            end_image="https://example.com/last.png",
            prompt="the cat turns its head",
            multi_prompt=[{"prompt": "close-up", "duration": 3}],
        )


def test_templated_fields_are_not_validated_at_construction():
    operator = text_to_video(prompt="{{ params.p }}", duration="{{ params.d }}", cfg_scale="{{ params.c }}")

    assert operator.prompt == "{{ params.p }}"


def test_literal_fields_are_checked_even_when_others_are_templated():
    with pytest.raises(KlingValidationError, match="duration=16"):
        text_to_video(prompt="{{ params.p }}", duration=16)


def test_a_templated_bad_value_is_rejected_at_execute_naming_the_field(api, submit_route):
    operator = text_to_video(prompt="{{ params.p }}", duration="{{ params.d }}")
    operator.render_template_fields({"params": {"p": "a fox", "d": 16}})

    with pytest.raises(KlingValidationError) as info:
        operator.execute(make_context())

    assert "duration='16'" in str(info.value)
    assert "must be between 3 and 15 seconds" in str(info.value)
    assert not submit_route.called


def test_a_prompt_that_renders_empty_is_rejected_at_execute(api, submit_route):
    operator = text_to_video(prompt="{{ params.p }}")
    operator.render_template_fields({"params": {"p": ""}})

    with pytest.raises(KlingValidationError, match="prompt='': must not be empty"):
        operator.execute(make_context())
    assert not submit_route.called


def test_an_output_path_storage_cannot_open_fails_before_paying(api, submit_route, monkeypatch, tmp_path):
    import airflow_provider_kling.delivery as delivery

    def refuse(uri: str) -> Any:
        raise TypeError("ObjectStoragePath(...) detected protocol file which is incompatible with ObjectStoragePath.")

    monkeypatch.setattr(delivery, "ObjectStoragePath", refuse)
    operator = text_to_video(prompt="a fox", output_path=f"{tmp_path}/fox.mp4")

    with pytest.raises(KlingValidationError, match=r"universal-pathlib<0\.3"):
        operator.execute(make_context())
    assert not submit_route.called


def test_rendered_templates_are_what_is_submitted(clock, submit_route):
    operator = text_to_video(prompt="{{ params.p }}", duration="{{ params.d }}", wait_for_completion=False)
    operator.render_template_fields({"params": {"p": "a fox in snow", "d": 5}})

    operator.execute(make_context())

    assert sent_body(submit_route) == {"prompt": "a fox in snow", "duration": 5}


@pytest.mark.parametrize(
    ("operator_class", "kwargs"),
    [
        (KlingTextToVideoOperator, {"prompt": "a fox", "model": I2V}),
        (KlingImageToVideoOperator, {"image": "https://example.com/a.png", "prompt": "a fox", "model": T2V}),
        (
            KlingMotionControlOperator,
            {"image": "https://example.com/a.png", "video": "https://example.com/d.mp4", "model": T2V},
        ),
    ],
    ids=["t2v-given-i2v", "i2v-given-t2v", "motion-given-t2v"],
)
def test_a_typed_operator_refuses_another_endpoint(operator_class, kwargs):
    with pytest.raises(KlingValidationError) as info:
        operator_class(task_id="generate", **kwargs)

    assert f"model={kwargs['model']!r}" in str(info.value)
    assert operator_class.__name__ in str(info.value)


@pytest.mark.parametrize("model", KlingTextToVideoOperator.allowed_models)
def test_text_to_video_takes_std_pro_and_4k(model):
    assert text_to_video(model=model).model == model


@pytest.mark.parametrize("model", KlingImageToVideoOperator.allowed_models)
def test_image_to_video_takes_std_pro_and_4k(model):
    operator = KlingImageToVideoOperator(task_id="animate", image="https://example.com/a.png", prompt="x", model=model)

    assert operator.model == model


def test_multi_prompt_is_refused_on_std_text_to_video():
    with pytest.raises(KlingValidationError, match="multi_prompt"):
        text_to_video(model=T2V, multi_prompt=[{"prompt": "shot one", "duration": 3}])


def test_the_base_operator_accepts_a_model_released_after_this_provider():
    operator = KlingSubmitOperator(task_id="future", model="kling-v3.1-std-t2v", payload={"anything": 1})

    assert operator.model == "kling-v3.1-std-t2v"


def test_the_base_operator_validates_a_known_model_payload_at_construction():
    with pytest.raises(KlingValidationError, match="duration=16"):
        KlingSubmitOperator(task_id="raw", model=T2V, payload={"prompt": "a fox", "duration": 16})


@pytest.mark.parametrize(("name", "value"), [("poll_interval", 0), ("timeout", 0), ("timeout", timedelta(0))])
def test_a_non_positive_poll_interval_or_timeout_is_rejected(name, value):
    with pytest.raises(KlingValidationError, match=name):
        text_to_video(**{name: value})


@pytest.mark.parametrize("operator_class", TYPED_OPERATORS)
def test_every_request_field_is_a_parameter_and_a_template_field(operator_class):
    endpoint_fields = {field for model in operator_class.allowed_models for field in REQUEST_MODELS[model].model_fields}

    assert set(operator_class.request_fields) == endpoint_fields
    assert endpoint_fields | {"model", "payload", "kling_conn_id"} <= set(operator_class.template_fields)


# -- deferrable execute ------------------------------------------------------------------------------


def test_execute_submits_once_and_defers_to_a_kling_task_trigger(clock, submit_route, result_route):
    deferred = defer(text_to_video(), make_context())

    assert submit_route.call_count == 1
    assert not result_route.called  # waiting is the trigger's job
    assert isinstance(deferred.trigger, KlingTaskTrigger)
    assert deferred.method_name == "execute_complete"
    assert deferred.kwargs == {"kling_task_id": KLING_TASK_ID}


def test_execute_pushes_the_kling_task_id_before_deferring(clock, submit_route):
    context = make_context()

    defer(text_to_video(), context)

    assert context["ti"].xcoms["kling_task_id"] == KLING_TASK_ID
    assert context["ti"].journal[0] == ("xcom_push", "kling_task_id", KLING_TASK_ID)


def test_the_trigger_gets_the_connection_poll_settings_and_a_deadline_of_now_plus_timeout(
    monkeypatch, clock, submit_route
):
    use_fake_connection(monkeypatch, "kling_other")
    operator = text_to_video(
        kling_conn_id="kling_other", poll_interval=5, max_poll_interval=40, timeout=timedelta(minutes=15)
    )

    deferred = defer(operator, make_context())

    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "airflow_provider_kling.triggers.kling.KlingTaskTrigger"
    assert kwargs == {
        "kling_task_id": KLING_TASK_ID,
        "end_time": clock.now + 900,
        "kling_conn_id": "kling_other",
        "poll_interval": 5.0,
        "max_poll_interval": 40.0,
        "max_attempts": 6,
        "submitted_at": clock.now,  # the not-found grace window counts from the submit
        "not_found_grace": 120.0,
        "progress_log_interval": 300.0,
    }


def test_a_timeout_in_seconds_works_like_a_timedelta(clock, submit_route):
    deferred = defer(text_to_video(timeout=120), make_context())

    assert deferred.trigger.end_time == clock.now + 120


def test_airflow_gives_up_on_the_deferral_only_after_the_trigger_deadline(clock, submit_route):
    deferred = defer(text_to_video(timeout=timedelta(minutes=30)), make_context())

    trigger_budget = timedelta(seconds=deferred.trigger.end_time - clock.now)
    assert deferred.timeout is not None
    assert deferred.timeout > trigger_budget


def test_the_request_sent_is_the_validated_body_without_unset_fields(clock, submit_route):
    defer(text_to_video(duration=5, aspect_ratio="9:16", sound=True), make_context())

    request = submit_route.calls.last.request
    assert json.loads(request.content) == {
        "prompt": "a red fox running through fresh snow",
        "duration": 5,
        "aspect_ratio": "9:16",
        "sound": True,
    }
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"


def test_motion_control_sends_its_own_body(clock, api):
    route = api.post(submit_path(MOTION)).respond(200, json={"task_id": KLING_TASK_ID})
    fields = {
        "image": "https://example.com/mascot.png",
        "video": "https://example.com/dance.mp4",
        "character_orientation": "video",
        "keep_original_sound": True,
    }

    defer(KlingMotionControlOperator(task_id="dance", **fields), make_context())

    assert sent_body(route) == fields


# -- execute_complete --------------------------------------------------------------------------------


def test_execute_complete_returns_the_result_summary_on_success():
    summary = text_to_video().execute_complete(
        make_context(), event=task_event("success", result=task_result(SUCCEED)), kling_task_id=KLING_TASK_ID
    )

    assert summary["kling_task_id"] == KLING_TASK_ID
    assert summary["model"] == T2V
    assert summary["status"] == SUCCEED
    assert summary["videos"] == [{"url": VIDEO_URL, "ttl": 3600, "type": "mp4"}]


def test_execute_complete_raises_a_content_policy_error_that_airflow_does_not_retry():
    event = task_event("failed", result=task_result(FAILED, reason="ILLEGAL_PROMPT"))

    with pytest.raises(KlingContentPolicyError, match="ILLEGAL_PROMPT") as info:
        text_to_video().execute_complete(make_context(), event=event, kling_task_id=KLING_TASK_ID)

    assert isinstance(info.value, AirflowFailException)
    assert info.value.kling_task_id == KLING_TASK_ID


def test_execute_complete_raises_a_retryable_task_failed_error_for_an_ordinary_failure():
    event = task_event("failed", result=task_result(FAILED, reason="internal render error"))

    with pytest.raises(KlingTaskFailedError, match="internal render error") as info:
        text_to_video().execute_complete(make_context(), event=event, kling_task_id=KLING_TASK_ID)

    assert not isinstance(info.value, AirflowFailException)
    assert info.value.reason == "internal render error"


def test_execute_complete_raises_a_timeout_that_names_the_kling_task():
    with pytest.raises(KlingTimeoutError) as info:
        text_to_video().execute_complete(make_context(), event=task_event("timeout"), kling_task_id=KLING_TASK_ID)

    assert f"kling_task_id={KLING_TASK_ID}" in str(info.value)
    assert "keeps running" in str(info.value)


def test_execute_complete_raises_the_trigger_error_message():
    event = {"status": "error", "kling_task_id": KLING_TASK_ID, "message": "HTTP 403 INVALID_API_KEY"}

    with pytest.raises(KlingError, match="HTTP 403 INVALID_API_KEY"):
        text_to_video().execute_complete(make_context(), event=event, kling_task_id=KLING_TASK_ID)


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        {"status": "success"},
        {"status": "done", "kling_task_id": KLING_TASK_ID, "message": "?"},
        {"status": "success", "kling_task_id": KLING_TASK_ID, "message": "ok", "unexpected": 1},
    ],
    ids=["none", "empty", "no-task-id", "unknown-status", "unknown-key"],
)
def test_execute_complete_refuses_a_malformed_event(event):
    with pytest.raises(KlingError, match="malformed trigger event"):
        text_to_video().execute_complete(make_context(), event=event, kling_task_id=KLING_TASK_ID)


def test_execute_complete_refuses_an_event_for_another_kling_task():
    event = task_event("success", kling_task_id="kt-other", result=task_result(SUCCEED, kling_task_id="kt-other"))

    with pytest.raises(KlingError, match="expected 'kt-1'"):
        text_to_video().execute_complete(make_context(), event=event, kling_task_id=KLING_TASK_ID)


@pytest.mark.parametrize(
    "result",
    [None, task_result(PROCESSING), task_result(SUCCEED, videos=[])],
    ids=["no-result", "not-finished", "no-video"],
)
def test_execute_complete_never_takes_a_hollow_success_for_a_success(result):
    with pytest.raises(KlingError):
        text_to_video().execute_complete(
            make_context(), event=task_event("success", result=result), kling_task_id=KLING_TASK_ID
        )


# -- synchronous and fire-and-forget -----------------------------------------------------------------


def test_sync_mode_polls_until_ready_and_returns_the_summary(clock, submit_route, result_route):
    result_route.side_effect = [
        httpx.Response(200, json=task_result(PROCESSING, eta=30, progress=40)),
        httpx.Response(200, json=task_result(SUCCEED)),
    ]

    summary = text_to_video(deferrable=False, poll_interval=10).execute(make_context())

    assert summary == result_summary(T2V)
    assert json.loads(json.dumps(summary)) == summary
    assert clock.sleeps == [15.0]  # half the eta, no real sleeping
    assert submit_route.call_count == 1


def test_sync_mode_pushes_the_kling_task_id_before_the_first_poll(clock, submit_route, result_route):
    context = make_context()
    seen_at_first_poll: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen_at_first_poll.append(context["ti"].xcoms.get("kling_task_id"))
        return httpx.Response(200, json=task_result(SUCCEED))

    result_route.side_effect = answer

    text_to_video(deferrable=False).execute(context)

    assert seen_at_first_poll == [KLING_TASK_ID]


def test_sync_mode_fails_with_the_vendor_reason(clock, submit_route, result_route):
    result_route.respond(200, json=task_result(FAILED, reason="render farm error"))

    with pytest.raises(KlingTaskFailedError, match="render farm error"):
        text_to_video(deferrable=False).execute(make_context())


def test_sync_mode_times_out_naming_the_kling_task(clock, submit_route, result_route):
    result_route.respond(200, json=task_result(PROCESSING))

    with pytest.raises(KlingTimeoutError) as info:
        text_to_video(deferrable=False, poll_interval=10, timeout=60).execute(make_context())

    assert info.value.kling_task_id == KLING_TASK_ID
    assert sum(clock.sleeps) <= 60


@pytest.mark.parametrize("deferrable", [True, False])
def test_without_wait_for_completion_returns_right_after_the_submit(clock, submit_route, result_route, deferrable):
    context = make_context()

    returned = text_to_video(wait_for_completion=False, deferrable=deferrable).execute(context)

    assert returned == {"kling_task_id": KLING_TASK_ID, "model": T2V, "status": "SUBMITTED"}
    assert context["ti"].xcoms["kling_task_id"] == KLING_TASK_ID
    assert not result_route.called


# -- raw payloads and local images -------------------------------------------------------------------


def test_the_base_operator_sends_a_raw_payload_for_an_unknown_model(clock, api):
    route = api.post(submit_path("kling-v3.1-std-t2v")).respond(200, json={"task_id": KLING_TASK_ID})
    payload = {"prompt": "a fox", "duration": 20, "new_field": {"nested": [1, 2]}}
    operator = KlingSubmitOperator(
        task_id="future", model="kling-v3.1-std-t2v", payload=payload, wait_for_completion=False
    )

    operator.execute(make_context())

    assert sent_body(route) == payload


def test_the_base_operator_renders_a_templated_payload(clock, api):
    route = api.post(submit_path("kling-v3.1-std-t2v")).respond(200, json={"task_id": KLING_TASK_ID})
    operator = KlingSubmitOperator(
        task_id="future",
        model="kling-v3.1-std-t2v",
        payload={"prompt": "{{ params.p }}"},
        wait_for_completion=False,
    )
    operator.render_template_fields({"params": {"p": "a heron at dawn"}})

    operator.execute(make_context())

    assert sent_body(route) == {"prompt": "a heron at dawn"}


def test_a_model_name_that_is_not_an_endpoint_name_is_refused_before_sending(clock, api):
    operator = KlingSubmitOperator(task_id="raw", model="../admin", payload={"prompt": "x"})

    with pytest.raises(KlingValidationError, match="model="):
        operator.execute(make_context())
    assert not api.calls


@pytest.mark.parametrize("form", ["path", "file-uri", "bytes"])
def test_a_local_image_is_checked_then_sent_as_base64(clock, api, tmp_path, form):
    route = api.post(submit_path(I2V)).respond(200, json={"task_id": KLING_TASK_ID})
    path = png(tmp_path, 640, 480)
    image: Any = {"path": path, "file-uri": f"file://{path}", "bytes": path.read_bytes()}[form]
    operator = KlingImageToVideoOperator(
        task_id="animate", image=image, prompt="the camera circles", wait_for_completion=False
    )

    operator.execute(make_context())

    assert base64.b64decode(sent_body(route)["image"]) == path.read_bytes()


def test_a_local_end_image_is_encoded_too(clock, api, tmp_path):
    route = api.post(submit_path(I2V)).respond(200, json={"task_id": KLING_TASK_ID})
    last = png(tmp_path, 480, 640, "last.png")
    operator = KlingImageToVideoOperator(
        task_id="animate",
        image="https://example.com/first.png",
        end_image=last,
        prompt="a turn",
        wait_for_completion=False,
    )

    operator.execute(make_context())

    body = sent_body(route)
    assert body["image"] == "https://example.com/first.png"
    assert base64.b64decode(body["end_image"]) == last.read_bytes()


def test_a_too_small_local_image_is_refused_at_execute_before_sending(clock, api, tmp_path):
    small = png(tmp_path, 200, 200)
    operator = KlingImageToVideoOperator(task_id="animate", image=small, prompt="x")  # not read at parse time

    with pytest.raises(KlingValidationError) as info:
        operator.execute(make_context())

    assert "image" in str(info.value)
    assert "at least 300 px" in str(info.value)
    assert not api.calls


def test_a_missing_local_image_is_refused_at_execute_naming_the_field(clock, api, tmp_path):
    operator = KlingImageToVideoOperator(task_id="animate", image=tmp_path / "nope.png", prompt="x")

    with pytest.raises(KlingValidationError, match="image: cannot read local image"):
        operator.execute(make_context())
    assert not api.calls
