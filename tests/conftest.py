"""Test-wide settings: a throwaway AIRFLOW_HOME and no metadata database for unit tests.

These must be in the environment before anything imports airflow.
"""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="kling-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _home)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("_AIRFLOW_SKIP_DB_TESTS", "true")
