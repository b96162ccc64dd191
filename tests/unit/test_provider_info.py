"""Provider registration: what Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest

from airflow_provider_kling import __version__
from airflow_provider_kling._compat import AIRFLOW_V_3_2_PLUS
from airflow_provider_kling.connection_form import CONNECTION_FORM_FIELDS
from airflow_provider_kling.get_provider_info import get_provider_info
from airflow_provider_kling.hooks.kling import KlingHook

AIRFLOW_DIR = Path(airflow.__file__).parent


def schema(name: str) -> dict[str, Any]:
    return json.loads((AIRFLOW_DIR / name).read_text())


def import_object(path: str) -> Any:
    module_name, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def listed_modules(info: dict[str, Any]) -> list[str]:
    return [
        module
        for section in ("hooks", "operators", "sensors", "triggers")
        for entry in info.get(section, [])
        for module in entry["python-modules"]
    ]


def test_provider_info_validates_against_airflows_schema():
    jsonschema.validate(get_provider_info(), schema("provider_info.schema.json"))


def test_provider_info_names_the_distribution_and_its_version():
    info = get_provider_info()

    assert info["package-name"] == "airflow-provider-kling"
    assert info["versions"] == [__version__]


def test_the_entry_point_points_at_get_provider_info():
    (entry,) = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider")]

    assert entry.load() is get_provider_info


def test_the_kling_connection_type_is_served_by_an_importable_kling_hook():
    (connection,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "kling"]

    hook_class = import_object(connection["hook-class-name"])
    assert hook_class is KlingHook
    assert hook_class.conn_type == "kling"
    assert connection["hook-name"] == KlingHook.hook_name


def test_every_listed_module_is_importable_and_each_section_is_listed():
    info = get_provider_info()
    modules = listed_modules(info)

    assert {section for section in ("hooks", "operators", "sensors", "triggers") if info.get(section)} == {
        "hooks",
        "operators",
        "sensors",
        "triggers",
    }
    for module in modules:
        importlib.import_module(module)


@pytest.mark.parametrize("integration_section", ["hooks", "operators", "sensors", "triggers"])
def test_every_section_refers_to_a_declared_integration(integration_section):
    info = get_provider_info()
    integrations = {entry["integration-name"] for entry in info["integrations"]}

    assert {entry["integration-name"] for entry in info[integration_section]} <= integrations


def test_every_extra_link_is_an_importable_operator_link():
    from airflow.providers.common.compat.sdk import BaseOperatorLink

    for path in get_provider_info().get("extra-links", []):
        assert issubclass(import_object(path), BaseOperatorLink)


def test_the_connection_form_relabels_host_as_base_url_and_password_as_api_key():
    behaviour = KlingHook.get_ui_field_behaviour()

    assert behaviour["relabeling"]["host"] == "Base URL"
    assert behaviour["relabeling"]["password"] == "API key"
    assert "login" in behaviour["hidden_fields"]


def test_the_connection_form_behaviour_is_the_one_airflow_reads_from_provider_info():
    (connection,) = get_provider_info()["connection-types"]

    declarative = {key.replace("-", "_"): value for key, value in connection["ui-field-behaviour"].items()}
    assert declarative == KlingHook.get_ui_field_behaviour()
    assert connection["conn-fields"] == KlingHook.get_connection_form_fields()


def test_the_hook_form_behaviour_validates_against_airflows_schema_as_it_is():
    """Airflow before 3.2 validates the hook method's answer unchanged, and drops it if invalid."""
    jsonschema.validate(KlingHook.get_ui_field_behaviour(), schema("customized_form_field_behaviours.schema.json"))


class _Field:
    """A stand-in WTForms field that remembers how it was built."""

    def __init__(self, label: str, **kwargs: Any) -> None:
        self.label = label
        self.kwargs = kwargs


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


@pytest.fixture
def fake_form_libraries(monkeypatch):
    """flask-appbuilder, flask-babel and WTForms stand-ins, whether or not the real ones are installed."""
    fields = {kind: type(kind, (_Field,), {}) for kind in ("StringField", "BooleanField")}
    modules = {
        "wtforms": _module("wtforms", **fields),
        "wtforms.validators": _module("wtforms.validators", Optional=type("Optional", (), {})),
        "flask_babel": _module("flask_babel", lazy_gettext=lambda text: f"i18n:{text}"),
        "flask_appbuilder": _module("flask_appbuilder"),
        "flask_appbuilder.fieldwidgets": _module(
            "flask_appbuilder.fieldwidgets",
            BS3TextFieldWidget=type("BS3TextFieldWidget", (), {}),
        ),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return fields


def test_the_widget_form_of_older_airflow_has_one_field_per_declarative_field(fake_form_libraries):
    widgets = KlingHook.get_connection_form_widgets()

    assert list(widgets) == list(CONNECTION_FORM_FIELDS)
    for name, widget in widgets.items():
        assert widget.label == f"i18n:{CONNECTION_FORM_FIELDS[name]['label']}"


def test_the_widget_form_takes_numbers_as_text_with_the_declared_default(fake_form_libraries):
    """Airflow before 3.2 only accepts text, password, integer and boolean fields: a float is text."""
    widgets = KlingHook.get_connection_form_widgets()

    assert type(widgets["timeout"]).__name__ == "StringField"
    assert widgets["timeout"].kwargs["default"] == "30.0"
    assert type(widgets["max_polls_per_second"]).__name__ == "StringField"
    assert type(widgets["allow_insecure_http"]).__name__ == "BooleanField"
    assert widgets["allow_insecure_http"].kwargs["default"] is False


def _form_libraries_missing() -> str:
    missing = [name for name in ("wtforms", "flask_appbuilder") if importlib.util.find_spec(name) is None]
    return ", ".join(missing)


@pytest.mark.skipif(
    not AIRFLOW_V_3_2_PLUS and bool(_form_libraries_missing()),
    reason=f"Airflow before 3.2 builds connection forms with flask-appbuilder and WTForms, and "
    f"{_form_libraries_missing() or 'they'} are not installed here: it then shows no provider's extra "
    "fields (the FAB provider brings them)",
)
def test_airflows_providers_manager_registers_the_kling_hook_and_form():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()

    assert "airflow-provider-kling" in manager.providers
    assert manager.field_behaviours["kling"]["relabeling"]["password"] == "API key"
    assert {"extra__kling__timeout", "extra__kling__max_polls_per_second"} <= set(manager.connection_form_widgets)
