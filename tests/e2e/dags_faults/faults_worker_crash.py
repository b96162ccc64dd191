"""Fault suite: a synchronous wait whose worker process is killed; the retry must re-attach."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

# The test triggers it without conf: the prompt is fixed, its marker gives try 1 time to be killed mid-wait.
with DAG(dag_id="faults_worker_crash", schedule=None, catchup=False, tags=["e2e", "faults"]):
    KlingTextToVideoOperator(
        task_id="generate",
        prompt="A paper boat on a rainy street [sandbox:seconds=30]",
        deferrable=False,
        poll_interval=2,
        max_poll_interval=2,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )
