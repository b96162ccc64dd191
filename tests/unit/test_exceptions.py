"""One exception hierarchy: what each error is, what it carries, and how it reads in a log."""

from __future__ import annotations

import pickle

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_kling import exceptions

ALL_ERRORS = [
    exceptions.KlingError,
    exceptions.KlingValidationError,
    exceptions.KlingAuthError,
    exceptions.KlingNotFoundError,
    exceptions.KlingRequestError,
    exceptions.KlingTransientError,
    exceptions.KlingConnectionError,
    exceptions.KlingRateLimitError,
    exceptions.KlingSubmitUncertainError,
    exceptions.KlingTimeoutError,
    exceptions.KlingTaskFailedError,
    exceptions.KlingContentPolicyError,
]


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_every_error_is_a_kling_error_and_an_airflow_exception(cls):
    assert issubclass(cls, exceptions.KlingError)
    assert issubclass(cls, AirflowException)


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (exceptions.KlingConnectionError, exceptions.KlingTransientError),
        (exceptions.KlingRateLimitError, exceptions.KlingTransientError),
        (exceptions.KlingContentPolicyError, exceptions.KlingTaskFailedError),
    ],
)
def test_specific_errors_refine_their_family(cls, parent):
    assert issubclass(cls, parent)


def test_a_validation_error_is_also_a_value_error():
    assert issubclass(exceptions.KlingValidationError, ValueError)


@pytest.mark.parametrize(
    "cls", [exceptions.KlingSubmitUncertainError, exceptions.KlingContentPolicyError, exceptions.KlingValidationError]
)
def test_errors_a_retry_would_pay_for_again_or_meet_again_are_not_retried_by_airflow(cls):
    assert issubclass(cls, AirflowFailException)


@pytest.mark.parametrize(
    "cls",
    [
        exceptions.KlingTransientError,
        exceptions.KlingRateLimitError,
        exceptions.KlingTaskFailedError,
        exceptions.KlingTimeoutError,
    ],
)
def test_errors_a_retry_may_cure_are_left_to_airflow_retries(cls):
    assert not issubclass(cls, AirflowFailException)


@pytest.mark.parametrize(
    "cls",
    [exceptions.KlingTransientError, exceptions.KlingConnectionError, exceptions.KlingRateLimitError],
)
def test_transient_errors_are_not_permanent_ones(cls):
    assert not issubclass(
        cls,
        (
            exceptions.KlingAuthError,
            exceptions.KlingRequestError,
            exceptions.KlingNotFoundError,
            exceptions.KlingValidationError,
        ),
    )


def test_str_is_one_line_with_status_reason_and_task_id():
    error = exceptions.KlingRequestError(
        "prompt refused", http_status=400, reason="ILLEGAL_PROMPT", kling_task_id="kt-7"
    )

    assert str(error) == "prompt refused [HTTP 400, ILLEGAL_PROMPT, kling_task_id=kt-7]"


def test_str_leaves_out_facts_that_are_not_known():
    assert str(exceptions.KlingTimeoutError("not ready", kling_task_id="kt-7")) == "not ready [kling_task_id=kt-7]"
    assert str(exceptions.KlingValidationError("duration=16: must be between 3 and 15 seconds")) == (
        "duration=16: must be between 3 and 15 seconds"
    )


def test_the_fields_are_attributes():
    error = exceptions.KlingAuthError("refused", http_status=403, reason="INVALID_API_KEY", kling_task_id="kt-7")

    assert (error.message, error.http_status, error.reason, error.kling_task_id) == (
        "refused",
        403,
        "INVALID_API_KEY",
        "kt-7",
    )


def test_a_rate_limit_error_carries_retry_after():
    assert exceptions.KlingRateLimitError("slow down", retry_after=7.0, http_status=429).retry_after == 7.0


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
    copy = pickle.loads(pickle.dumps(exceptions.KlingRateLimitError("slow down", retry_after=7.0, http_status=429)))

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
    assert exceptions.is_content_policy_reason(reason)


@pytest.mark.parametrize(
    "reason", [None, "", "TASK_FAILED", "BILLING_BALANCE_NOT_ENOUGH", "internal error, please retry", "timeout"]
)
def test_other_reasons_are_not_content_policy(reason):
    assert not exceptions.is_content_policy_reason(reason)
