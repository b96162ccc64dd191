"""A local, Novita-compatible Kling v3.0 server for tests and offline development.

Run it with ``kling-sandbox`` (or ``python -m airflow_provider_kling.sandbox``), or start one from a test
with :class:`SandboxProcess`. It imports nothing from Airflow. See ``docs/sandbox.md``.

Example::

    from airflow_provider_kling.sandbox import SandboxProcess

    with SandboxProcess(generation_seconds=2) as sandbox:
        print(sandbox.url)  # http://127.0.0.1:<port>
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_kling.sandbox.app import create_app
    from airflow_provider_kling.sandbox.process import SandboxProcess, peak_in_flight
    from airflow_provider_kling.sandbox.settings import SandboxSettings, Scenario

__all__ = ["SandboxProcess", "SandboxSettings", "Scenario", "create_app", "peak_in_flight"]

# Loaded on first use, so a test that only starts a SandboxProcess does not import FastAPI.
_LAZY = {
    "create_app": "airflow_provider_kling.sandbox.app",
    "SandboxProcess": "airflow_provider_kling.sandbox.process",
    "peak_in_flight": "airflow_provider_kling.sandbox.process",
    "SandboxSettings": "airflow_provider_kling.sandbox.settings",
    "Scenario": "airflow_provider_kling.sandbox.settings",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
