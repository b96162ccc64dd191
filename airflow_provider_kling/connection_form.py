"""The ``kling`` connection form: labels, hints and defaults.

Plain data with no imports, because Airflow reads it through ``get_provider_info`` while it is still
starting up (importing Airflow from here would be circular).
"""

from __future__ import annotations

from typing import Any

DEFAULT_BASE_URL = "https://api.novita.ai"
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_POLLS_PER_SECOND = 20.0

#: Labels and hints for the connection form, shared by the hook and ``get_provider_info``.
CONNECTION_FORM_FIELDS: dict[str, Any] = {
    "timeout": {
        "label": "HTTP timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": DEFAULT_TIMEOUT_SECONDS},
    },
    "max_polls_per_second": {
        "label": "Max Task Result polls per second (per triggerer process)",
        "schema": {"type": ["number", "null"], "default": DEFAULT_MAX_POLLS_PER_SECOND},
    },
    "allow_insecure_http": {
        "label": "Allow a plain-HTTP base URL that is not loopback",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
}
CONNECTION_UI_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "extra"],
    "relabeling": {"host": "Base URL", "password": "API key", "port": "Port (optional)"},
    "placeholders": {"host": DEFAULT_BASE_URL, "password": "your Novita API key"},
}
