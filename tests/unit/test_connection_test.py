"""The connection form's Test button (``KlingHook.test_connection``): one probe, messages a user can act on.

Airflow's UI tests a connection under a random, throwaway connection id, and a person is waiting: the
messages never name that id, and the probe is one request, not a retry loop.
"""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_kling.hooks.kling import KlingHook

RESULT = "/v3/async/task-result"


@pytest.fixture(autouse=True)
def _no_real_waiting(fake_clock):
    """A retry would show up as a fake sleep; none is expected."""


def _error(status: int, reason: str) -> httpx.Response:
    return httpx.Response(status, json={"code": status, "reason": reason, "message": "m", "metadata": {}})


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(httpx.Response(200, html="<html><body>Welcome to nginx!</body></html>"), id="200 HTML page"),
        pytest.param(httpx.Response(200, content=b"\xff\xfe\x00garbage"), id="200 unreadable body"),
        pytest.param(httpx.Response(200, json={"hello": "world"}), id="200 JSON that is not a Task Result"),
        pytest.param(httpx.Response(404, html="<h1>Not Found</h1>"), id="404 HTML"),
        pytest.param(httpx.Response(401, html="<h1>Please log in</h1>"), id="401 login wall"),
        pytest.param(httpx.Response(403, text="Forbidden"), id="403 plain text"),
        pytest.param(httpx.Response(502, html="<h1>502 Bad Gateway</h1>"), id="502 proxy page"),
        pytest.param(httpx.Response(503, content=b""), id="503 empty body"),
        pytest.param(httpx.Response(429, text="slow down"), id="429 plain text"),
    ],
)
def test_a_host_that_does_not_answer_with_the_kling_json_is_named_as_not_the_kling_api(
    kling_conn, kling_api, kling_base_url, fake_clock, answer
):
    kling_conn()
    route = kling_api.get(RESULT).mock(return_value=answer)

    ok, message = KlingHook().test_connection()

    assert ok is False
    assert message.startswith(f"{kling_base_url} does not answer like the Kling API: ")
    assert "Expecting value" not in message
    assert route.call_count == 1
    assert fake_clock.sleeps == []


def test_the_vendor_not_finding_the_made_up_task_means_the_key_is_accepted(kling_conn, kling_api, kling_base_url):
    kling_conn()
    kling_api.get(RESULT).mock(return_value=_error(404, "TASK_NOT_FOUND"))

    assert KlingHook().test_connection() == (True, f"Connected to {kling_base_url}: the API key is accepted.")


def test_a_refused_key_is_reported_with_the_vendor_reason(kling_conn, kling_api):
    kling_conn()
    kling_api.get(RESULT).mock(return_value=_error(401, "INVALID_API_KEY"))

    ok, message = KlingHook().test_connection()

    assert ok is False
    assert message.startswith("The API key was refused: ")
    assert "INVALID_API_KEY" in message


def test_a_vendor_outage_is_reported_as_it_is_after_one_attempt(kling_conn, kling_api, fake_clock):
    kling_conn()
    route = kling_api.get(RESULT).mock(return_value=_error(503, "SERVICE_UNAVAILABLE"))

    ok, message = KlingHook().test_connection()

    assert ok is False
    assert "HTTP 503" in message
    assert "SERVICE_UNAVAILABLE" in message
    assert "does not answer like the Kling API" not in message
    assert route.call_count == 1


@pytest.mark.parametrize("password", ["", "   ", None])
def test_an_empty_key_names_the_field_not_the_throwaway_connection_id(kling_conn, kling_api, password):
    conn_id = kling_conn("KGqqmsFt", password=password)
    catch_all = kling_api.route().respond(200)

    ok, message = KlingHook(conn_id).test_connection()

    assert ok is False
    assert message == (
        'this connection has no API key; put your Novita API key in the connection\'s "API key" field '
        "(its password) and save it"
    )
    assert catch_all.call_count == 0


def test_outside_a_connection_test_an_empty_key_names_the_connection(kling_conn):
    from airflow_provider_kling.exceptions import KlingAuthError

    kling_conn("kling_prod", password="")

    with pytest.raises(KlingAuthError) as caught:
        KlingHook("kling_prod").get_conn()

    assert str(caught.value).startswith("connection 'kling_prod': password (the API key) is empty; ")
    assert '"API key" field' in str(caught.value)
