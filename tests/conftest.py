"""Test-wide settings: a throwaway AIRFLOW_HOME, and where the metadata database may be used.

These must be in the environment before anything imports airflow, so the Airflow version is read from
the installed distribution's metadata, not from ``airflow`` itself.

* Airflow 3.3+: no metadata database. ``_AIRFLOW_SKIP_DB_TESTS`` makes any access raise, which keeps
  the unit tests honest.
* Older versions: Airflow's own connection lookup asks the metadata database when a connection is not
  in the environment (a missing connection is a behaviour the unit tests check), so those legs get a
  real, empty SQLite database in the throwaway home, created once per session by
  ``tests/unit/conftest.py``. The URL is set unconditionally: a developer's configured database is never
  touched.
"""

from __future__ import annotations

import os
import tempfile
from importlib import metadata

from packaging.version import Version

_home = tempfile.mkdtemp(prefix="kling-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _home)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


def _airflow_version() -> Version:
    """The installed Airflow's version, without importing it (Airflow 3 can be installed as core alone)."""
    try:
        return Version(metadata.version("apache-airflow"))
    except metadata.PackageNotFoundError:
        return Version(metadata.version("apache-airflow-core"))


#: Whether this Airflow runs the unit tests without any metadata database (only verified on 3.3+).
DB_FREE_AIRFLOW = _airflow_version().release[:2] >= (3, 3)

if DB_FREE_AIRFLOW:
    os.environ.setdefault("_AIRFLOW_SKIP_DB_TESTS", "true")
else:
    os.environ.pop("_AIRFLOW_SKIP_DB_TESTS", None)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/unit-tests.db"
    os.environ["AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS"] = "False"
