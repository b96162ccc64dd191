"""The CI matrix's end-to-end leg: one deferrable generation on a real stack of *this* interpreter's Airflow.

``make e2e-2.11`` and ``make e2e-3.0`` run this file (marker ``compat_e2e``) in ``.venv-2.11`` and
``.venv-3.0``; in ``.venv`` it runs with the rest of the suite on Airflow 3.3. The stack is the one a
small install of that version runs (``tools.airflow_stack.make_stack``):

* Airflow 3.x: api-server, scheduler, dag-processor, triggerer; LocalExecutor; SQLite; REST API v2.
* Airflow 2.11: webserver, scheduler (which parses the DAGs), triggerer; SequentialExecutor; SQLite;
  REST API v1 with basic auth.

The DAG is the text-to-video example itself (``example_dags/example_kling_text_to_video.py``), its one
Airflow import taken from ``airflow.providers.common.compat.sdk`` instead of ``airflow.sdk`` (which Airflow
2.11 lacks), so the same file parses on every version. Besides the run itself, the test checks the degradations that
``docs/compatibility.md`` promises for that version: each one said once, in the log where it applies, and
never on a version that has the feature.
"""

from __future__ import annotations

import re

import pytest

from airflow_provider_kling.sandbox.process import SandboxProcess
from tools.airflow_stack import REPO_ROOT, AirflowStack, log_text

pytestmark = [pytest.mark.e2e, pytest.mark.compat_e2e]

EXAMPLE = REPO_ROOT / "example_dags" / "example_kling_text_to_video.py"
DAG_ID = "example_kling_text_to_video"
#: The example's Airflow import, and the version-neutral one the test puts in its place.
SDK_IMPORT = "from airflow.sdk import DAG, Param\n"
COMPAT_IMPORT = "from airflow.providers.common.compat.sdk import DAG, Param\n"

SUCCEED = "TASK_STATUS_SUCCEED"
IN_FLIGHT = {"TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING"}
# What the trigger logs on every poll (airflow_provider_kling.polling).
POLL_LINE = re.compile(r"Kling task (?P<id>\S+): status=(?P<status>\S+) progress=(?P<progress>\S+) eta=")
# The degradation lines of docs/compatibility.md ("what you see where it degrades").
DURABLE_WARNING = "durable=True needs Airflow 3.3+ (task state store)"
THREAD_LOOKUP_INFO = "Kling connections are read in a worker thread"


@pytest.fixture(scope="module")
def airflow_stack_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The module's stack parses only the example, made version-neutral (and boots the stack of this Airflow)."""
    source = EXAMPLE.read_text()
    assert source.count(SDK_IMPORT) == 1, f"{EXAMPLE.name} no longer imports Airflow as this test expects"
    dags = tmp_path_factory.mktemp("compat-dags")
    (dags / EXAMPLE.name).write_text(source.replace(SDK_IMPORT, COMPAT_IMPORT))
    return {"dags_folder": dags}


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_deferrable_generation_waits_on_the_triggerer_and_returns_the_video(
    airflow_stack: AirflowStack, sandbox: SandboxProcess
) -> None:
    version = airflow_stack.airflow_version
    label = ".".join(map(str, version))

    # The shared sandbox renders for 8 s: longer than the window of the defer/resume race of some
    # Airflow 3 releases (see the README).
    result = airflow_stack.run(DAG_ID, conf={"prompt": f"A paper boat on Airflow {label}"}, timeout=300)

    dag_id, run_id = result.dag_id, result.run_id
    assert result.state == "success", f"Airflow {label}: run {run_id} {result.state}; states {result.states_seen}"
    assert result.ti("generate").state == "success"
    assert airflow_stack.deferred_tries(dag_id, run_id, "generate") == [1]

    # XCom: the id pushed at submit time, and the return value built from the trigger's event.
    kling_task_id = airflow_stack.xcom(dag_id, run_id, "generate", key="kling_task_id")
    returned = airflow_stack.xcom(dag_id, run_id, "generate")
    assert isinstance(kling_task_id, str)
    assert kling_task_id
    assert returned["kling_task_id"] == kling_task_id
    assert returned["model"] == "kling-v3.0-std-t2v"
    assert returned["status"] == SUCCEED
    assert returned["videos"][0]["url"].startswith(sandbox.url)

    # The trigger ran in the triggerer: its own log file next to the task's, with the polls in it.
    assert airflow_stack.trigger_log_files(dag_id, run_id, "generate"), f"no trigger log on Airflow {label}"
    trigger_log = log_text(airflow_stack.trigger_log(dag_id, run_id, "generate"))
    statuses = [m["status"] for m in POLL_LINE.finditer(trigger_log) if m["id"] == kling_task_id]
    assert IN_FLIGHT & set(statuses[:-1]), statuses  # at least one poll before the video was ready
    assert statuses[-1] == SUCCEED, statuses

    # The vendor's side: one submission, one finished generation.
    assert len(sandbox.journal(task_id=kling_task_id, kind="submit")) == 1
    (generation,) = [t for t in sandbox.tasks() if t["task_id"] == kling_task_id]
    assert generation["outcome"] == SUCCEED

    # Degradations: one line each where the feature is missing, none where it is there.
    task_log = log_text(airflow_stack.task_log(dag_id, run_id, "generate"))
    durable = lines_with(task_log, DURABLE_WARNING)
    thread_lookup = lines_with(trigger_log, THREAD_LOOKUP_INFO)
    if version[:2] < (3, 3):
        # Once per try, when the task starts: not again when it resumes after the deferral.
        assert len(durable) == 1, durable
        assert f"on Airflow {label} a retry" in durable[0]
    else:
        assert durable == []
    if version < (3, 3, 2):
        assert len(thread_lookup) == 1, thread_lookup
        assert f"Airflow {label}:" in thread_lookup[0]
    else:
        assert thread_lookup == []
