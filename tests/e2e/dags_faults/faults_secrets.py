"""Fault suite: runs that touch the API key on every path that can fail, for the secret scan.

A success, a generation that fails on both tries (the retry pays again: the first one failed), a key the
vendor refuses (``kling_refused``, an auth error on both tries), and the run's ``canary``, rendered into a
prompt and returned by a task: a value the scan must find in rendered templates, XCom and the database,
which proves it looks there.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

with DAG(
    dag_id="faults_secrets",
    schedule=None,
    catchup=False,
    params={"canary": Param("no canary", type="string")},
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
    tags=["e2e", "faults"],
):
    KlingTextToVideoOperator(
        task_id="succeed",
        prompt="A kite over dunes ({{ params.canary }}) [sandbox:seconds=10]",
        poll_interval=2,
        max_poll_interval=2,
    )
    KlingTextToVideoOperator(
        task_id="fail_twice",
        prompt="A storm at sea [sandbox:seconds=10] [sandbox:fail=TASK_FAILED: render node lost]",
        poll_interval=2,
        max_poll_interval=2,
    )
    KlingTextToVideoOperator(
        task_id="refused_key",
        prompt="A cat on a piano",
        kling_conn_id="kling_refused",
        deferrable=False,
    )

    @task
    def canary(params: dict[str, Any] | None = None) -> str:
        return str((params or {})["canary"])

    canary()
