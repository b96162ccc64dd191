"""A plain ``pip install airflow-provider-kling`` has no web server: the sandbox is the ``[sandbox]`` extra."""

from __future__ import annotations

import email.parser
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import airflow_provider_kling

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_DISTRIBUTIONS = {"fastapi", "starlette", "uvicorn", "pydantic-settings"}

# Run first in a fresh interpreter: an import of the server's libraries asked for by the provider's own code
# fails as if they were not installed. Airflow's own imports are let through: Airflow 3.0 to 3.2 import
# FastAPI themselves (the task SDK), so on those versions the libraries are there anyway, and what is
# proven is that the provider never needs them.
REFUSE_SERVER_IMPORTS = textwrap.dedent(
    """
    import sys

    class RefuseServer:
        BLOCKED = ("fastapi", "starlette", "uvicorn", "pydantic_settings")
        refused = []

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] not in self.BLOCKED:
                return None
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
                frame = frame.f_back
            spec = frame.f_globals.get("__spec__") if frame is not None else None
            # __spec__ names a module run as __main__ (python -m) by its real name.
            importer = spec.name if spec is not None else (frame.f_globals.get("__name__", "") if frame else "")
            if importer.split(".")[0] == "airflow_provider_kling":
                self.refused.append(f"{importer} -> {name}")
                raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
            return None

    sys.meta_path.insert(0, RefuseServer())
    """
)


def run_without_server(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REFUSE_SERVER_IMPORTS + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )


def test_every_public_module_imports_without_the_server_libraries():
    result = run_without_server(
        """
        import json, pkgutil
        import airflow_provider_kling

        imported = []
        for module in pkgutil.walk_packages(airflow_provider_kling.__path__, "airflow_provider_kling."):
            if (module.name + ".").startswith("airflow_provider_kling.sandbox."):
                continue
            __import__(module.name)
            imported.append(module.name)
        print(json.dumps({"imported": imported, "refused": RefuseServer.refused}))
        """
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The walk reached the whole product, not an empty package.
    assert {
        "airflow_provider_kling.hooks.kling",
        "airflow_provider_kling.operators.kling",
        "airflow_provider_kling.sensors.kling",
        "airflow_provider_kling.triggers.kling",
        "airflow_provider_kling.delivery",
        "airflow_provider_kling.get_provider_info",
    } <= set(report["imported"])
    assert report["refused"] == []


def test_the_refusal_is_real():
    # Guards the test above: the finder does refuse the server libraries to the provider's code.
    result = run_without_server('exec("import fastapi", {"__name__": "airflow_provider_kling.probe"})')
    assert result.returncode != 0
    assert "refused by the test" in result.stderr


@pytest.mark.parametrize("entry", ["runpy", "console_script"])
def test_sandbox_command_without_the_extra_names_it(entry):
    if entry == "runpy":
        code = "import runpy; runpy.run_module('airflow_provider_kling.sandbox', run_name='__main__')"
    else:
        code = "from airflow_provider_kling.sandbox.__main__ import main; main(['--help'])"
    result = run_without_server(code)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "airflow-provider-kling[sandbox]" in lines[0]
    assert "fastapi" in lines[0]


@pytest.fixture(scope="module")
def wheel_metadata(tmp_path_factory) -> email.message.Message:
    """The METADATA hatchling writes for the wheel, from this checkout's pyproject.toml."""
    out = tmp_path_factory.mktemp("metadata")
    code = f"from hatchling.build import prepare_metadata_for_build_wheel as p; print(p({str(out)!r}))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True, timeout=300
    )
    dist_info = out / result.stdout.strip().splitlines()[-1]
    return email.parser.Parser().parsestr((dist_info / "METADATA").read_text())


def _extra_of(requirement: Requirement) -> str | None:
    if requirement.marker is None:
        return None
    match = re.search(r'extra\s*==\s*"([^"]+)"', str(requirement.marker))
    return match[1] if match else None


def test_wheel_lists_the_server_only_under_the_sandbox_extra(wheel_metadata):
    requirements = [Requirement(line) for line in wheel_metadata.get_all("Requires-Dist") or []]
    plain = {req.name.lower() for req in requirements if _extra_of(req) is None}
    sandbox = {req.name.lower() for req in requirements if _extra_of(req) == "sandbox"}
    assert "sandbox" in (wheel_metadata.get_all("Provides-Extra") or [])
    assert sandbox >= SERVER_DISTRIBUTIONS
    assert not plain & SERVER_DISTRIBUTIONS
    assert {"apache-airflow", "httpx", "pydantic", "tenacity", "pendulum"} <= plain


def test_wheel_version_is_the_package_version(wheel_metadata):
    assert wheel_metadata["Version"] == airflow_provider_kling.__version__


def test_provider_info_reports_the_package_version():
    from airflow_provider_kling.get_provider_info import get_provider_info

    assert get_provider_info()["versions"] == [airflow_provider_kling.__version__]
