"""The example DAGs parse: Airflow's own DagBag loads every file in ``example_dags/`` without an error.

``airflow.dag_processing.dagbag.DagBag`` parses files without the metadata database on Airflow 3.3, so
this runs under ``_AIRFLOW_SKIP_DB_TESTS``. Running the examples for real is ``tests/e2e``'s job.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

try:  # Airflow 3.1+
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2.11 and 3.0
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
EXAMPLE_FILES = sorted(path for path in EXAMPLE_DAGS.glob("*.py") if not path.name.startswith("_"))
#: Example files written against the Airflow 3 Task SDK (``airflow.sdk``), which Airflow 2 does not have.
SDK_ONLY_FILES = [
    path for path in EXAMPLE_FILES if re.search(r"^\s*(from|import) airflow\.sdk\b", path.read_text(), re.M)
]
HAS_TASK_SDK = importlib.util.find_spec("airflow.sdk") is not None
#: Why an example cannot parse here; the test of that file is skipped saying so.
SKIP_REASON = (
    "imports airflow.sdk, which Airflow 2 does not have; importing DAG, Param and task from "
    "airflow.providers.common.compat.sdk would make it parse on every version"
)


def parseable_here(path: Path) -> bool:
    """Whether this Airflow can parse ``path`` at all (an example may use the Airflow 3 Task SDK)."""
    return HAS_TASK_SDK or path not in SDK_ONLY_FILES


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> DagBag:
    """The example DAGs this Airflow can parse, loaded by Airflow's own DagBag."""
    if all(parseable_here(path) for path in EXAMPLE_FILES):
        return DagBag(dag_folder=str(EXAMPLE_DAGS))
    folder = tmp_path_factory.mktemp("example_dags")
    for path in EXAMPLE_FILES:
        if parseable_here(path):
            shutil.copy(path, folder / path.name)
    return DagBag(dag_folder=str(folder))


def test_the_example_dags_load_without_import_errors(dagbag):
    assert dagbag.import_errors == {}, "\n\n".join(f"{path}:\n{error}" for path, error in dagbag.import_errors.items())


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(path, marks=[] if parseable_here(path) else pytest.mark.skip(reason=f"{path.name} {SKIP_REASON}"))
        for path in EXAMPLE_FILES
    ],
    ids=[path.name for path in EXAMPLE_FILES],
)
def test_every_example_file_defines_at_least_one_dag(dagbag, path):
    dags_in_file = [dag_id for dag_id, dag in dagbag.dags.items() if Path(dag.fileloc).name == path.name]

    assert dags_in_file, f"{path.name} defines no DAG (or was skipped by the DAG parser's safe mode)"


def test_every_example_dag_has_tasks(dagbag):
    assert {dag_id for dag_id, dag in dagbag.dags.items() if not dag.tasks} == set()


def test_a_broken_dag_file_is_reported_as_an_import_error(tmp_path):
    """Guards the guard: the DagBag above would catch an example that no longer validates."""
    (tmp_path / "broken_kling_dag.py").write_text(
        "from airflow.providers.common.compat.sdk import DAG\n"
        "from airflow_provider_kling.operators.kling import KlingTextToVideoOperator\n"
        "with DAG('broken_kling_dag', schedule=None):\n"
        "    KlingTextToVideoOperator(task_id='t', prompt='a fox', duration=16)\n"
    )

    errors = DagBag(dag_folder=str(tmp_path)).import_errors

    assert len(errors) == 1
    assert "duration=16: must be between 3 and 15 seconds" in next(iter(errors.values()))
