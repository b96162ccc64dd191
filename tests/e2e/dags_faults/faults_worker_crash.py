"""Fault suite: a synchronous wait whose worker process is killed; the retry must re-attach."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

with DAG(
    dag_id="faults_worker_crash",
    schedule=None,
    catchup=False,
    params={"prompt": Param("A paper boat on a rainy street [sandbox:seconds=30]", type="string")},
    tags=["e2e", "faults"],
):
    KlingTextToVideoOperator(
        task_id="generate",
        prompt="{{ params.prompt }}",
        deferrable=False,
        poll_interval=2,
        max_poll_interval=2,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )
