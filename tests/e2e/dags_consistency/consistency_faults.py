"""Eventual-consistency faults: generations whose prompts script the sandbox's answers, with no Airflow retry.

``retries=0``: a run that survives a fault did so inside the provider; a second, paid try cannot hide
it. ``consistency_rotation`` uses ``kling_rotating``, a connection kept in the metadata database (the
test creates it and rotates its key through the REST API). The waits on both paths are the fault
suite's ``faults_waits`` DAG, which the test puts beside this file.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

with DAG(
    dag_id="consistency_rotation",
    schedule=None,
    catchup=False,
    params={"prompts": Param(["A lighthouse at dusk"], type="array", items={"type": "string"})},
    default_args={"retries": 0},
    tags=["e2e", "faults"],
):

    @task
    def rotation_prompts(params: dict[str, Any] | None = None) -> list[str]:
        return [str(prompt) for prompt in (params or {})["prompts"]]

    KlingTextToVideoOperator.partial(
        task_id="deferred", kling_conn_id="kling_rotating", poll_interval=2, max_poll_interval=2
    ).expand(prompt=rotation_prompts())
