"""The ``kling`` connection: how an Airflow connection becomes validated client settings.

host = base URL (empty means the vendor, ``https://api.novita.ai``), password = API key, extra holds
optional tuning (``timeout``, ``max_polls_per_second``, ``allow_insecure_http``,
``rate_limit_storage_uri``). The settings are a
pydantic model with the key as a ``SecretStr``, so printing or logging them never shows it.

The extra is read the way every Airflow version's connection form may have written it: plain keys
(``timeout``), the ``extra__kling__timeout`` keys of connections saved by older Airflow 2 forms, string
numbers from a text field, and empty or null values for a cleared field (which mean "the default").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from airflow_provider_kling.connection_form import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_POLLS_PER_SECOND,
    DEFAULT_TIMEOUT_SECONDS,
)
from airflow_provider_kling.exceptions import KlingAuthError, KlingValidationError
from airflow_provider_kling.models.requests import format_validation_error


class ConnectionExtra(BaseModel):
    """The optional settings kept in the connection's extra."""

    model_config = ConfigDict(extra="ignore")

    timeout: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0)
    max_polls_per_second: float = Field(default=DEFAULT_MAX_POLLS_PER_SECOND, gt=0)
    allow_insecure_http: bool = False
    #: Redis URI of the deployment-wide poll rate limit (:mod:`airflow_provider_kling.hooks.rate_limit`).
    rate_limit_storage_uri: SecretStr | None = None


class ConnectionSettings(BaseModel):
    """Everything the hook needs from a connection, checked once."""

    model_config = ConfigDict(frozen=True)

    conn_id: str
    base_url: str
    api_key: SecretStr
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_polls_per_second: float = DEFAULT_MAX_POLLS_PER_SECOND
    #: Redis URI of the deployment-wide poll rate limit, or ``None`` (this process's limit only).
    rate_limit_storage_uri: str | None = Field(default=None, repr=False)

    @property
    def auth_headers(self) -> dict[str, str]:
        """The headers every call sends (the vendor wants Content-Type on GETs too)."""
        return {
            "Authorization": f"Bearer {self.api_key.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }


def settings_from_connection(
    conn_id: str,
    *,
    host: str | None,
    port: int | None,
    password: str | None,
    extra: dict[str, Any],
) -> ConnectionSettings:
    """Build :class:`ConnectionSettings` from a connection's fields, refusing unusable ones.

    Raises :class:`KlingAuthError` for an empty API key and :class:`KlingValidationError` for a bad base
    URL or extra, each naming the connection and the field.
    """
    if not password or not password.strip():
        raise KlingAuthError(
            f"connection {conn_id!r}: password (the API key) is empty; put your Novita API key in the "
            "connection's password field"
        )
    try:
        options = ConnectionExtra.model_validate(extra_options(extra))
    except ValidationError as err:
        detail = format_validation_error(err).removeprefix("invalid request: ")
        raise KlingValidationError(f"connection {conn_id!r} extra: {detail}") from None
    base_url = normalise_base_url(conn_id, host, port, allow_insecure_http=options.allow_insecure_http)
    return ConnectionSettings(
        conn_id=conn_id,
        base_url=base_url,
        api_key=SecretStr(password.strip()),
        timeout=options.timeout,
        max_polls_per_second=options.max_polls_per_second,
        rate_limit_storage_uri=_storage_uri(conn_id, options.rate_limit_storage_uri),
    )


def _storage_uri(conn_id: str, value: SecretStr | None) -> str | None:
    from airflow_provider_kling.hooks.rate_limit import check_storage_uri

    return check_storage_uri(conn_id, value.get_secret_value() if value is not None else None)


#: Prefix of the extra keys older Airflow 2 connection forms wrote (``extra__kling__timeout``).
LEGACY_EXTRA_PREFIX = "extra__kling__"


def extra_options(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The connection extra with every form's spelling of a field folded into its plain key.

    A plain key wins over its ``extra__kling__`` twin, as in Airflow 2's own form. An empty string or
    ``None`` means the field was left empty: the twin, or else the default, applies.
    """
    items = [(key, value) for key, value in (extra or {}).items() if value is not None and value != ""]
    options = {key: value for key, value in items if not key.startswith(LEGACY_EXTRA_PREFIX)}
    for key, value in items:
        if key.startswith(LEGACY_EXTRA_PREFIX):
            options.setdefault(key.removeprefix(LEGACY_EXTRA_PREFIX), value)
    return options


def normalise_base_url(conn_id: str, host: str | None, port: int | None, *, allow_insecure_http: bool = False) -> str:
    """Return ``scheme://host[:port][/path]`` without a trailing slash.

    A bare host gets ``https://``. Plain ``http://`` is refused unless the host is a loopback address
    (the bundled sandbox) or the connection sets ``allow_insecure_http``: the API key travels in a
    header, and over plain HTTP anyone on the path could read it.
    """
    raw = (host or "").strip() or DEFAULT_BASE_URL
    if "://" not in raw:
        raw = f"https://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KlingValidationError(
            f"connection {conn_id!r}: host={raw!r}: must be an http(s) base URL such as {DEFAULT_BASE_URL}"
        )
    try:
        host_port = parts.port
    except ValueError:
        raise KlingValidationError(
            f"connection {conn_id!r}: host={raw!r}: the port must be a number between 0 and 65535"
        ) from None
    if parts.scheme == "http" and not (allow_insecure_http or _is_loopback(parts.hostname)):
        raise KlingValidationError(
            f"connection {conn_id!r}: host={raw!r}: must use https (the API key would travel in clear); "
            'only loopback addresses may use http, unless the extra sets "allow_insecure_http": true'
        )
    netloc = parts.netloc
    if port and host_port is None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
