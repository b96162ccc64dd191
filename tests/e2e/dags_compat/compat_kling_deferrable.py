"""One deferrable generation, written to parse on every supported Airflow (2.11, 3.0 to 3.3).

Airflow is imported only through ``airflow.providers.common.compat.sdk``, as the provider itself does:
on 2.11 ``DAG`` and ``Param`` are ``airflow.models``' classes, on 3.x the Task SDK's.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

with DAG(
    dag_id="compat_kling_deferrable",
    schedule=None,
    catchup=False,
    params={"prompt": Param("A paper boat drifts down a rain gutter", type="string")},
    tags=["e2e", "compat"],
):
    KlingTextToVideoOperator(
        task_id="generate",
        model="kling-v3.0-std-t2v",
        prompt="{{ params.prompt }}",
        duration=5,
        kling_conn_id="kling_default",
        deferrable=True,
        # The default (durable=True) on purpose: before 3.3 the task log must say, in one line, that a
        # retry would pay for a new generation.
        poll_interval=2,
        timeout=600,
    )
