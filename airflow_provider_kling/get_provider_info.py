"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_kling import __version__
from airflow_provider_kling.connection_form import CONNECTION_FORM_FIELDS, CONNECTION_UI_BEHAVIOUR

_INTEGRATION = "Kling AI"


def get_provider_info() -> dict[str, Any]:
    """Describe this provider to Airflow: connection type, hooks, operators, sensors, triggers, links."""
    return {
        "package-name": "airflow-provider-kling",
        "name": "Kling AI",
        "description": "Kling v3.0 AI video generation (text and image to video) through the Novita API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://novita.ai/docs",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_kling.hooks.kling"]}],
        "operators": [{"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_kling.operators.kling"]}],
        "sensors": [{"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_kling.sensors.kling"]}],
        "triggers": [{"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_kling.triggers.kling"]}],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_kling.hooks.kling.KlingHook",
                "hook-name": "Kling AI (Novita)",
                "connection-type": "kling",
                "conn-fields": CONNECTION_FORM_FIELDS,
                "ui-field-behaviour": CONNECTION_UI_BEHAVIOUR,
            }
        ],
        "extra-links": ["airflow_provider_kling.links.KlingVideoLink"],
    }
