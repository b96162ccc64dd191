"""Durable submission: a later try re-attaches to the generation an earlier try paid for.

The earlier try is simulated by a task state store that already holds its ``kling_task_id``; the
vendor's answer about that task decides whether this try re-attaches, returns at once, or pays again.

The task state store exists from Airflow 3.3 only: tests of re-attaching are skipped before that, and
the last section checks what older versions do instead (submit anew, saying so once per try).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _fakes import (
    FAILED,
    PROCESSING,
    QUEUED,
    RESULT_PATH,
    SUCCEED,
    make_context,
    submit_path,
    task_event,
    task_result,
)
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_kling._compat import DURABLE_EXECUTION_SUPPORTED
from airflow_provider_kling.exceptions import KlingError, KlingTransientError
from airflow_provider_kling.operators.kling import KlingTextToVideoOperator
from airflow_provider_kling.triggers.kling import KlingTaskTrigger

MODEL = "kling-v3.0-pro-t2v"
EARLIER_ID = "kt-earlier"
NEW_ID = "kt-new"
STORE_KEY = "kling_task_id"
DEGRADED = "durable=True needs Airflow 3.3+"

needs_task_state_store = pytest.mark.skipif(
    not DURABLE_EXECUTION_SUPPORTED,
    reason="re-attaching needs the task state store of Airflow 3.3+; older versions submit anew (see the "
    "tests of the last section)",
)
before_3_3_only = pytest.mark.skipif(
    DURABLE_EXECUTION_SUPPORTED, reason="Airflow 3.3+ has the task state store: durable execution does not degrade"
)

pytestmark = pytest.mark.usefixtures("kling_conn", "clock")


@pytest.fixture
def submit_route(api):
    return api.post(submit_path(MODEL)).respond(200, json={"task_id": NEW_ID})


@pytest.fixture
def earlier_route(api):
    """The Task Result of the generation the earlier try submitted."""
    return api.get(RESULT_PATH, params={"task_id": EARLIER_ID})


@pytest.fixture
def new_route(api):
    return api.get(RESULT_PATH, params={"task_id": NEW_ID})


def operator(**kwargs: Any) -> KlingTextToVideoOperator:
    return KlingTextToVideoOperator(task_id="generate", model=MODEL, prompt="a lighthouse in a storm", **kwargs)


def retry_context() -> dict[str, Any]:
    return make_context({STORE_KEY: EARLIER_ID})


def earlier(status: str, **kwargs: Any) -> httpx.Response:
    return httpx.Response(200, json=task_result(status, kling_task_id=EARLIER_ID, **kwargs))


# -- the earlier generation is still running ---------------------------------------------------------


@needs_task_state_store
@pytest.mark.parametrize("status", [QUEUED, PROCESSING])
def test_a_retry_reattaches_to_a_running_generation_instead_of_paying_again(submit_route, earlier_route, status):
    earlier_route.side_effect = [earlier(status)]

    with pytest.raises(TaskDeferred) as info:
        operator().execute(retry_context())

    assert not submit_route.called
    assert isinstance(info.value.trigger, KlingTaskTrigger)
    assert info.value.trigger.kling_task_id == EARLIER_ID
    assert info.value.kwargs == {"kling_task_id": EARLIER_ID}


@needs_task_state_store
def test_a_reattached_retry_pushes_the_kling_task_id_again(submit_route, earlier_route):
    earlier_route.side_effect = [earlier(PROCESSING)]
    context = retry_context()

    with pytest.raises(TaskDeferred):
        operator().execute(context)

    assert context["ti"].xcoms["kling_task_id"] == EARLIER_ID


@needs_task_state_store
def test_a_reattached_retry_gets_a_fresh_deadline(clock, submit_route, earlier_route):
    earlier_route.side_effect = [earlier(PROCESSING)]

    with pytest.raises(TaskDeferred) as info:
        operator(timeout=600).execute(retry_context())

    assert info.value.trigger.end_time == clock.now + 600


@needs_task_state_store
def test_a_sync_retry_waits_for_the_running_generation(submit_route, earlier_route):
    earlier_route.side_effect = [earlier(PROCESSING), earlier(PROCESSING), earlier(SUCCEED)]
    context = retry_context()

    summary = operator(deferrable=False).execute(context)

    assert not submit_route.called
    assert summary["kling_task_id"] == EARLIER_ID
    assert summary["status"] == SUCCEED
    assert context["ti"].xcoms["kling_task_id"] == EARLIER_ID


@needs_task_state_store
def test_a_retry_without_wait_for_completion_returns_the_running_generation(submit_route, earlier_route):
    earlier_route.side_effect = [earlier(PROCESSING)]

    returned = operator(wait_for_completion=False).execute(retry_context())

    assert not submit_route.called
    assert returned == {"kling_task_id": EARLIER_ID, "model": MODEL, "status": "SUBMITTED"}


# -- the earlier generation already succeeded --------------------------------------------------------


@needs_task_state_store
@pytest.mark.parametrize("deferrable", [True, False])
def test_a_retry_returns_a_finished_generation_without_submitting_or_deferring(submit_route, earlier_route, deferrable):
    earlier_route.side_effect = [earlier(SUCCEED)]

    summary = operator(deferrable=deferrable).execute(retry_context())  # no TaskDeferred

    assert not submit_route.called
    assert earlier_route.call_count == 1
    assert summary["kling_task_id"] == EARLIER_ID
    assert summary["status"] == SUCCEED
    assert summary["model"] == MODEL


@needs_task_state_store
def test_a_retry_returning_a_finished_generation_pushes_the_kling_task_id_again(submit_route, earlier_route):
    earlier_route.side_effect = [earlier(SUCCEED)]
    context = retry_context()

    operator().execute(context)

    assert context["ti"].xcoms["kling_task_id"] == EARLIER_ID


# -- the earlier generation is gone or failed: pay again ---------------------------------------------


@needs_task_state_store
def test_a_retry_submits_again_when_the_earlier_generation_failed(submit_route, earlier_route):
    earlier_route.side_effect = [earlier(FAILED, reason="render farm error")]
    context = retry_context()

    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)

    assert submit_route.call_count == 1
    assert context["task_state_store"].values[STORE_KEY] == NEW_ID
    assert context["ti"].xcoms["kling_task_id"] == NEW_ID
    assert info.value.trigger.kling_task_id == NEW_ID


@needs_task_state_store
def test_a_retry_submits_again_when_the_vendor_forgot_the_earlier_task(submit_route, earlier_route):
    earlier_route.side_effect = [
        httpx.Response(404, json={"code": 404, "reason": "TASK_NOT_FOUND", "message": "no such task"})
    ]
    context = retry_context()

    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)

    assert submit_route.call_count == 1
    assert context["task_state_store"].values[STORE_KEY] == NEW_ID
    assert info.value.trigger.kling_task_id == NEW_ID


def test_a_sync_retry_after_a_failed_generation_waits_for_the_new_one(submit_route, earlier_route, new_route):
    earlier_route.side_effect = [earlier(FAILED, reason="render farm error")]
    new_route.side_effect = [httpx.Response(200, json=task_result(SUCCEED, kling_task_id=NEW_ID))]

    summary = operator(deferrable=False).execute(retry_context())

    assert submit_route.call_count == 1
    assert summary["kling_task_id"] == NEW_ID
    assert summary["status"] == SUCCEED


@needs_task_state_store
def test_a_retry_does_not_pay_again_for_a_generation_in_an_undocumented_status(submit_route, earlier_route):
    earlier_route.side_effect = [earlier("TASK_STATUS_PAUSED")]
    context = retry_context()

    with pytest.raises(KlingError, match="undocumented status 'TASK_STATUS_PAUSED'") as info:
        operator().execute(context)

    assert not submit_route.called
    assert info.value.kling_task_id == EARLIER_ID
    assert context["task_state_store"].values == {STORE_KEY: EARLIER_ID}


@needs_task_state_store
def test_a_retry_does_not_pay_again_when_the_earlier_generation_cannot_be_checked(submit_route, earlier_route):
    earlier_route.side_effect = lambda request: httpx.Response(503, text="<html>503 Service Unavailable</html>")

    with pytest.raises(KlingTransientError):
        operator().execute(retry_context())

    assert not submit_route.called


# -- the first try -----------------------------------------------------------------------------------


@needs_task_state_store
def test_a_fresh_run_stores_the_kling_task_id_right_after_the_submit_before_deferring(submit_route):
    context = make_context()

    with pytest.raises(TaskDeferred):
        operator().execute(context)

    assert context["task_state_store"].values[STORE_KEY] == NEW_ID
    assert context["ti"].journal[0] == ("xcom_push", "kling_task_id", NEW_ID)
    assert context["ti"].journal[-1] == ("store.set", STORE_KEY, NEW_ID)


@needs_task_state_store
def test_a_fresh_sync_run_stores_the_kling_task_id_before_the_first_poll(submit_route, new_route):
    context = make_context()
    stored_at_first_poll: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        stored_at_first_poll.append(context["task_state_store"].get(STORE_KEY))
        return httpx.Response(200, json=task_result(SUCCEED, kling_task_id=NEW_ID))

    new_route.side_effect = answer

    operator(deferrable=False).execute(context)

    assert stored_at_first_poll == [NEW_ID]


def test_durable_false_ignores_the_task_state_store(submit_route, earlier_route):
    context = retry_context()

    with pytest.raises(TaskDeferred) as info:
        operator(durable=False).execute(context)

    assert submit_route.call_count == 1
    assert not earlier_route.called
    assert context["task_state_store"].values == {STORE_KEY: EARLIER_ID}  # neither read nor written
    assert info.value.trigger.kling_task_id == NEW_ID


def test_without_a_task_state_store_the_run_still_submits_and_defers(submit_route):
    context = make_context()
    del context["task_state_store"]

    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)

    assert submit_route.call_count == 1
    assert info.value.trigger.kling_task_id == NEW_ID


# -- the request changed between tries (a task cleared after an edit) --------------------------------


@needs_task_state_store
def test_a_retry_of_the_same_request_reattaches_when_its_fingerprint_matches(submit_route, earlier_route):
    earlier_route.side_effect = [earlier(PROCESSING)]
    first = make_context()
    with pytest.raises(TaskDeferred):
        operator().execute(first)
    fingerprint = first["task_state_store"].values["kling_request_sha256"]
    context = make_context({STORE_KEY: EARLIER_ID, "kling_request_sha256": fingerprint})
    submit_route.reset()

    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)

    assert not submit_route.called
    assert info.value.trigger.kling_task_id == EARLIER_ID


@needs_task_state_store
def test_a_changed_request_is_submitted_again_instead_of_returning_the_old_video(submit_route, earlier_route):
    earlier_route.side_effect = [earlier(SUCCEED)]
    context = make_context({STORE_KEY: EARLIER_ID, "kling_request_sha256": "fingerprint-of-an-older-prompt"})

    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)

    assert submit_route.call_count == 1
    assert not earlier_route.called
    assert info.value.trigger.kling_task_id == NEW_ID
    assert context["task_state_store"].values[STORE_KEY] == NEW_ID


# -- Airflow before 3.3: no task state store ---------------------------------------------------------


@before_3_3_only
def test_before_3_3_a_retry_submits_anew_even_when_a_store_holds_an_earlier_generation(submit_route, earlier_route):
    context = retry_context()

    with pytest.raises(TaskDeferred) as info:
        operator().execute(context)

    assert submit_route.call_count == 1
    assert not earlier_route.called
    assert info.value.trigger.kling_task_id == NEW_ID


@before_3_3_only
def test_before_3_3_a_deferred_try_says_once_that_durable_is_not_available(submit_route, captured_logs):
    context = make_context()
    del context["task_state_store"]  # as in a real context before 3.3

    with pytest.raises(TaskDeferred):
        operator().execute(context)
    operator().execute_complete(
        context,
        task_event("success", kling_task_id=NEW_ID, result=task_result(SUCCEED, kling_task_id=NEW_ID)),
        kling_task_id=NEW_ID,
    )

    (warning,) = captured_logs.messages(containing=DEGRADED)
    assert "a retry of this task submits (and pays for) a new generation" in warning
    assert "durable=False" in warning
    assert captured_logs.messages("warning", containing=DEGRADED) == [warning]


@before_3_3_only
def test_before_3_3_a_sync_try_says_once_that_durable_is_not_available(submit_route, new_route, captured_logs):
    new_route.side_effect = [
        httpx.Response(200, json=task_result(PROCESSING, kling_task_id=NEW_ID)),
        httpx.Response(200, json=task_result(SUCCEED, kling_task_id=NEW_ID)),
    ]
    context = make_context()
    del context["task_state_store"]

    operator(deferrable=False).execute(context)

    assert len(captured_logs.messages(containing=DEGRADED)) == 1


@before_3_3_only
def test_before_3_3_durable_false_says_nothing_about_it(submit_route, captured_logs):
    with pytest.raises(TaskDeferred):
        operator(durable=False).execute(make_context())

    assert captured_logs.messages(containing="durable") == []


@before_3_3_only
def test_before_3_3_declaring_an_operator_raises_no_python_warning_about_durable(recwarn):
    """The compat stand-in would warn at every DAG parse; the one line belongs in the task log instead."""
    operator()
    operator(durable=True)

    assert [str(warning.message) for warning in recwarn if "durable" in str(warning.message)] == []


@needs_task_state_store
def test_on_3_3_a_durable_try_logs_no_degradation(submit_route, captured_logs):
    with pytest.raises(TaskDeferred):
        operator().execute(make_context())

    assert captured_logs.messages(containing=DEGRADED) == []
