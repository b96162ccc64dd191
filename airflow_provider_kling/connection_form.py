"""The ``kling`` connection form: labels, hints and defaults, declared once for every Airflow version.

Airflow 3.2+ reads the declarative form (``conn-fields`` and ``ui-field-behaviour`` in
``get_provider_info``). Older versions (2.11 to 3.1) call the hook's ``get_connection_form_widgets`` and
``get_ui_field_behaviour`` instead; :func:`connection_form_widgets` and :func:`legacy_ui_field_behaviour`
build those from the same data, so the two forms cannot drift apart.

The data is plain, with no module-level imports, because Airflow reads it through ``get_provider_info``
while it is still starting up (importing Airflow from here would be circular).
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
    "rate_limit_storage_uri": {
        "label": "Redis URI of a poll rate limit shared by the whole deployment (optional)",
        "description": "e.g. redis://redis:6379/0: every triggerer and worker then shares max_polls_per_second",
        "schema": {"type": ["string", "null"], "default": None},
    },
}
CONNECTION_UI_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "extra"],
    "relabeling": {"host": "Base URL", "password": "API key", "port": "Port (optional)"},
    "placeholders": {"host": DEFAULT_BASE_URL, "password": "your Novita API key"},
}


def legacy_ui_field_behaviour() -> dict[str, Any]:
    """:data:`CONNECTION_UI_BEHAVIOUR` as ``get_ui_field_behaviour`` must return it.

    The hook method's keys are snake_case (``hidden_fields``): Airflow before 3.2 validates them
    against a schema that requires that spelling, and would drop the kebab-case keys of
    ``get_provider_info`` with a warning.
    """
    return {key.replace("-", "_"): value for key, value in CONNECTION_UI_BEHAVIOUR.items()}


def connection_form_widgets() -> dict[str, Any]:
    """The WTForms fields of :data:`CONNECTION_FORM_FIELDS`, for Airflow before 3.2.

    Those versions only accept text, password, integer and boolean fields, so a number is a text field:
    the connection settings parse it (and an empty field means the default). flask-appbuilder and WTForms
    are imported here, not at module level: Airflow 3 runs without them, and the API server of 3.0 and
    3.1 calls this method with stand-ins patched over these very names, so only the keyword arguments
    those stand-ins take are used (label, validators, description, default, widget).
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, StringField
    from wtforms.validators import Optional

    widgets: dict[str, Any] = {}
    for name, field in CONNECTION_FORM_FIELDS.items():
        schema = field.get("schema", {})
        types = schema.get("type", "string")
        label = lazy_gettext(field.get("label", name))
        description = field.get("description", "")
        default = schema.get("default")
        if "boolean" in ({types} if isinstance(types, str) else set(types)):
            widgets[name] = BooleanField(label, description=description, default=bool(default))
        else:
            widgets[name] = StringField(
                label,
                widget=BS3TextFieldWidget(),
                validators=[Optional()],
                description=description,
                default=None if default is None else str(default),
            )
    return widgets
