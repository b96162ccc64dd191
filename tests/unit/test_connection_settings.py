"""How a ``kling`` connection becomes client settings: base URL, API key, extras, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_kling.connection_form import (
    CONNECTION_FORM_FIELDS,
    CONNECTION_UI_BEHAVIOUR,
    DEFAULT_BASE_URL,
)
from airflow_provider_kling.exceptions import KlingAuthError, KlingValidationError
from airflow_provider_kling.hooks.connection import ConnectionSettings, settings_from_connection
from airflow_provider_kling.hooks.kling import KlingHook

KEY = "nv-test-key-0123456789"


def settings(
    host: str | None = None,
    *,
    port: int | None = None,
    password: str | None = KEY,
    extra: dict[str, Any] | None = None,
    conn_id: str = "kling_test",
) -> ConnectionSettings:
    return settings_from_connection(conn_id, host=host, port=port, password=password, extra=extra or {})


def base_url(host: str | None, **kwargs: Any) -> str:
    return settings(host, **kwargs).base_url


# -- base URL ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [None, "", "   "])
def test_an_empty_host_means_the_vendor(host):
    assert base_url(host) == DEFAULT_BASE_URL == "https://api.novita.ai"


def test_a_bare_host_gets_https():
    assert base_url("api.highwayapi.ai") == "https://api.highwayapi.ai"


def test_the_port_field_is_appended():
    assert base_url("api.example.com", port=8443) == "https://api.example.com:8443"


def test_a_port_in_the_host_wins_over_the_port_field():
    assert base_url("https://api.example.com:9443", port=8443) == "https://api.example.com:9443"


@pytest.mark.parametrize("host", ["https://api.novita.ai/", "api.novita.ai/", "https://api.novita.ai//"])
def test_a_trailing_slash_is_stripped(host):
    assert base_url(host) == "https://api.novita.ai"


def test_a_path_prefix_is_kept_for_gateways_that_mount_the_api_below_one():
    assert base_url("https://gateway.example.com/novita/") == "https://gateway.example.com/novita"


def test_plain_http_to_a_remote_host_is_refused_because_the_key_would_travel_in_clear():
    with pytest.raises(KlingValidationError) as caught:
        base_url("http://api.example.com")

    message = str(caught.value)
    assert "connection 'kling_test': host='http://api.example.com': must use https" in message
    assert '"allow_insecure_http": true' in message


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("http://127.0.0.1", 8089, "http://127.0.0.1:8089"),
        ("http://localhost:8089/", None, "http://localhost:8089"),
        ("http://[::1]:8089", None, "http://[::1]:8089"),
    ],
)
def test_plain_http_to_a_loopback_address_is_allowed_for_the_sandbox(host, port, expected):
    assert base_url(host, port=port) == expected


def test_a_host_merely_named_like_localhost_is_not_loopback():
    with pytest.raises(KlingValidationError, match="must use https"):
        base_url("http://localhost.example.com")


@pytest.mark.parametrize("allow", [True, "true"])
def test_plain_http_to_a_remote_host_is_allowed_when_the_extra_says_so(allow):
    assert base_url("http://10.0.0.5:8089", extra={"allow_insecure_http": allow}) == "http://10.0.0.5:8089"


@pytest.mark.parametrize("host", ["ftp://api.example.com", "https://", "ws://api.example.com"])
def test_a_host_that_is_not_an_http_url_is_refused(host):
    with pytest.raises(KlingValidationError, match=r"must be an http\(s\) base URL such as https://api.novita.ai"):
        base_url(host)


def test_a_host_with_a_non_numeric_port_is_refused_naming_the_rule():
    with pytest.raises(KlingValidationError, match=r"the port must be a number"):
        base_url("https://api.example.com:abc", port=443)


# -- API key -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", [None, "", "   \n"])
def test_an_empty_api_key_is_refused_naming_the_connection_and_the_field(password):
    with pytest.raises(KlingAuthError) as caught:
        settings(password=password, conn_id="kling_prod")

    assert "connection 'kling_prod': password (the API key) is empty" in str(caught.value)


def test_whitespace_around_the_key_is_dropped():
    assert settings(password=f"  {KEY}\n").api_key.get_secret_value() == KEY


def test_every_call_sends_the_bearer_key_and_json_content_type():
    headers = settings().auth_headers

    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("render", [repr, str, lambda s: s.model_dump_json(), lambda s: str(s.model_dump())])
def test_the_key_never_shows_when_settings_are_printed_or_dumped(render):
    assert KEY not in render(settings())


# -- extras --------------------------------------------------------------------------------------------


def test_extras_default_to_a_30_second_timeout_and_20_polls_per_second():
    parsed = settings()

    assert (parsed.timeout, parsed.max_polls_per_second) == (30.0, 20.0)


def test_extras_given_as_strings_by_the_form_are_read_as_numbers():
    parsed = settings(extra={"timeout": "5", "max_polls_per_second": "0.5"})

    assert (parsed.timeout, parsed.max_polls_per_second) == (5.0, 0.5)


def test_unknown_extras_are_ignored():
    assert settings(extra={"webhook": "https://example.com/hook"}).timeout == 30.0


def test_extras_saved_by_an_older_airflow_2_form_under_prefixed_keys_are_read():
    parsed = settings(
        "http://10.0.0.5:8089",
        extra={
            "extra__kling__timeout": "7",
            "extra__kling__max_polls_per_second": "2",
            "extra__kling__allow_insecure_http": True,
        },
    )

    assert (parsed.timeout, parsed.max_polls_per_second, parsed.base_url) == (7.0, 2.0, "http://10.0.0.5:8089")


def test_a_plain_extra_key_wins_over_its_prefixed_twin():
    assert settings(extra={"timeout": "9", "extra__kling__timeout": "7"}).timeout == 9.0


def test_an_empty_plain_extra_key_falls_back_to_its_prefixed_twin():
    assert settings(extra={"timeout": "", "extra__kling__timeout": "7"}).timeout == 7.0


@pytest.mark.parametrize("empty", ["", None], ids=["empty-text-field", "null"])
def test_a_cleared_form_field_means_the_default(empty):
    parsed = settings(extra={"timeout": empty, "max_polls_per_second": empty, "allow_insecure_http": empty})

    assert (parsed.timeout, parsed.max_polls_per_second) == (30.0, 20.0)


def test_a_bad_prefixed_extra_is_refused_naming_the_field():
    with pytest.raises(KlingValidationError, match=r"extra: timeout='abc': Input should be a valid number"):
        settings(extra={"extra__kling__timeout": "abc"})


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"timeout": 0}, "timeout=0: Input should be greater than 0"),
        ({"timeout": "abc"}, "timeout='abc': Input should be a valid number"),
        ({"max_polls_per_second": -1}, "max_polls_per_second=-1: Input should be greater than 0"),
        ({"allow_insecure_http": "maybe"}, "allow_insecure_http='maybe': Input should be a valid boolean"),
    ],
)
def test_a_bad_extra_value_is_refused_naming_the_connection_and_the_field(extra, expected):
    with pytest.raises(KlingValidationError) as caught:
        settings(extra=extra)

    assert str(caught.value).startswith(f"connection 'kling_test' extra: {expected}")


# -- through the hook ----------------------------------------------------------------------------------


def test_the_hook_reads_its_settings_from_the_airflow_connection(kling_conn):
    kling_conn("kling_clone", host="api.jiekou.ai", password=KEY, extra={"timeout": 12})

    parsed = KlingHook("kling_clone").settings

    assert (parsed.conn_id, parsed.base_url, parsed.timeout) == ("kling_clone", "https://api.jiekou.ai", 12.0)
    assert parsed.api_key.get_secret_value() == KEY


def test_the_hook_refuses_a_connection_without_a_key(kling_conn):
    kling_conn("kling_no_key", password=None)

    with pytest.raises(KlingAuthError, match=r"connection 'kling_no_key': password \(the API key\) is empty"):
        KlingHook("kling_no_key").settings  # noqa: B018


def test_the_hook_refuses_a_missing_connection_saying_how_to_create_it(kling_conn):
    with pytest.raises(KlingAuthError, match=r"connection 'kling_nowhere' is not defined: create a connection"):
        KlingHook("kling_nowhere").settings  # noqa: B018


# -- connection form -----------------------------------------------------------------------------------


def test_the_connection_form_labels_host_as_base_url_and_password_as_api_key():
    behaviour = KlingHook.get_ui_field_behaviour()

    assert behaviour["relabeling"]["host"] == "Base URL"
    assert behaviour["relabeling"]["password"] == "API key"
    assert {"schema", "login", "extra"} <= set(behaviour["hidden_fields"])


def test_the_hook_method_spells_the_declarative_form_behaviour_in_snake_case():
    """Airflow before 3.2 requires ``hidden_fields``; 3.2+ reads ``hidden-fields`` from provider info."""
    assert KlingHook.get_ui_field_behaviour() == {
        key.replace("-", "_"): value for key, value in CONNECTION_UI_BEHAVIOUR.items()
    }


def test_the_connection_form_offers_the_documented_extras_with_their_defaults():
    fields = KlingHook.get_connection_form_fields()

    assert fields is CONNECTION_FORM_FIELDS
    assert {name: spec["schema"]["default"] for name, spec in fields.items()} == {
        "timeout": 30.0,
        "max_polls_per_second": 20.0,
        "allow_insecure_http": False,
        "rate_limit_storage_uri": None,
    }


def test_the_hook_declares_the_kling_connection_type():
    assert (KlingHook.conn_type, KlingHook.conn_name_attr, KlingHook.default_conn_name) == (
        "kling",
        "kling_conn_id",
        "kling_default",
    )
