"""One exception hierarchy: what each error is, what it carries, and how it reads in a log."""

from __future__ import annotations

import pickle

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_kling.exceptions import (
    KlingAuthError,
    KlingConnectionError,
    KlingContentPolicyError,
    KlingError,
    KlingNotFoundError,
    KlingRateLimitError,
    KlingRequestError,
    KlingSubmitUncertainError,
    KlingTaskFailedError,
    KlingTimeoutError,
    KlingTransientError,
    KlingValidationError,
    is_content_policy_reason,
)

ALL_ERRORS = [
    KlingError,
    KlingValidationError,
    KlingAuthError,
    KlingNotFoundError,
    KlingRequestError,
    KlingTransientError,
    KlingConnectionError,
    KlingRateLimitError,
    KlingSubmitUncertainError,
    KlingTimeoutError,
    KlingTaskFailedError,
    KlingContentPolicyError,
]


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_every_error_is_a_kling_error_and_an_airflow_exception(cls):
    assert issubclass(cls, KlingError)
    assert issubclass(cls, AirflowException)


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (KlingConnectionError, KlingTransientError),
        (KlingRateLimitError, KlingTransientError),
        (KlingContentPolicyError, KlingTaskFailedError),
    ],
)
def test_specific_errors_refine_their_family(cls, parent):
    assert issubclass(cls, parent)


def test_a_validation_error_is_also_a_value_error():
    assert issubclass(KlingValidationError, ValueError)


@pytest.mark.parametrize("cls", [KlingSubmitUncertainError, KlingContentPolicyError, KlingValidationError])
def test_errors_a_retry_would_pay_for_again_or_meet_again_are_not_retried_by_airflow(cls):
    assert issubclass(cls, AirflowFailException)


@pytest.mark.parametrize("cls", [KlingTransientError, KlingRateLimitError, KlingTaskFailedError, KlingTimeoutError])
def test_errors_a_retry_may_cure_are_left_to_airflow_retries(cls):
    assert not issubclass(cls, AirflowFailException)


@pytest.mark.parametrize(
    "cls",
    [KlingTransientError, KlingConnectionError, KlingRateLimitError],
)
def test_transient_errors_are_not_permanent_ones(cls):
    assert not issubclass(cls, (KlingAuthError, KlingRequestError, KlingNotFoundError, KlingValidationError))


def test_str_is_one_line_with_status_reason_and_task_id():
    error = KlingRequestError("prompt refused", http_status=400, reason="ILLEGAL_PROMPT", kling_task_id="kt-7")

    assert str(error) == "prompt refused [HTTP 400, ILLEGAL_PROMPT, kling_task_id=kt-7]"


def test_str_leaves_out_facts_that_are_not_known():
    assert str(KlingTimeoutError("not ready", kling_task_id="kt-7")) == "not ready [kling_task_id=kt-7]"
    assert str(KlingValidationError("duration=16: must be between 3 and 15 seconds")) == (
        "duration=16: must be between 3 and 15 seconds"
    )


def test_the_fields_are_attributes():
    error = KlingAuthError("refused", http_status=403, reason="INVALID_API_KEY", kling_task_id="kt-7")

    assert (error.message, error.http_status, error.reason, error.kling_task_id) == (
        "refused",
        403,
        "INVALID_API_KEY",
        "kt-7",
    )


def test_a_rate_limit_error_carries_retry_after():
    assert KlingRateLimitError("slow down", retry_after=7.0, http_status=429).retry_after == 7.0


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_pickling_keeps_the_type_and_every_field(cls):
    # Errors cross process boundaries (task runner, triggerer): keyword-only fields must survive.
    error = cls("boom", http_status=503, reason="GET_RESULT_FAILED", kling_task_id="kt-7")

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is cls
    assert (copy.message, copy.http_status, copy.reason, copy.kling_task_id) == (
        "boom",
        503,
        "GET_RESULT_FAILED",
        "kt-7",
    )
    assert str(copy) == str(error)


def test_pickling_keeps_retry_after():
    copy = pickle.loads(pickle.dumps(KlingRateLimitError("slow down", retry_after=7.0, http_status=429)))

    assert (copy.retry_after, copy.http_status) == (7.0, 429)


@pytest.mark.parametrize(
    "reason",
    [
        "ILLEGAL_PROMPT",
        "ILLEGAL_IMAGE_CONTENT",
        "The prompt violates our content policy",
        "Rejected by moderation",
        "NSFW content detected",
        "contains sensitive content",
    ],
)
def test_a_content_policy_reason_is_recognised(reason):
    assert is_content_policy_reason(reason)


@pytest.mark.parametrize(
    "reason", [None, "", "TASK_FAILED", "BILLING_BALANCE_NOT_ENOUGH", "internal error, please retry", "timeout"]
)
def test_other_reasons_are_not_content_policy(reason):
    assert not is_content_policy_reason(reason)
