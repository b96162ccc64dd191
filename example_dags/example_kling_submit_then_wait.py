"""Submit now, wait later: the operator returns right after the submit, a sensor waits for the video.

Useful when other work can run while Kling renders, or when the wait belongs to a later part of the DAG.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator
from airflow_provider_kling.sensors.kling import KlingTaskSensor

with DAG(
    dag_id="example_kling_submit_then_wait",
    schedule=None,
    catchup=False,
    params={"prompt": Param("Lanterns rise over a lake at night, slow motion", type="string")},
    tags=["example", "kling"],
):
    submit = KlingTextToVideoOperator(
        task_id="submit",
        prompt="{{ params.prompt }}",
        wait_for_completion=False,  # pushes XCom kling_task_id and returns
    )
    wait = KlingTaskSensor(
        task_id="wait",
        kling_task_id="{{ ti.xcom_pull(task_ids='submit', key='kling_task_id') }}",
        poll_interval=5,
        deferrable=True,
    )
    submit >> wait
