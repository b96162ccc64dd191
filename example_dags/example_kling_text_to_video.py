"""Text to video, deferrable: the task submits, frees its worker slot while Kling renders, then resumes.

Trigger it with a prompt of your own: ``{"prompt": "..."}`` as the run's configuration.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

with DAG(
    dag_id="example_kling_text_to_video",
    schedule=None,
    catchup=False,
    params={"prompt": Param("A red fox trots through fresh snow at dawn, cinematic", type="string")},
    tags=["example", "kling"],
):
    KlingTextToVideoOperator(
        task_id="generate",
        model="kling-v3.0-std-t2v",
        prompt="{{ params.prompt }}",
        duration=5,
        aspect_ratio="16:9",
        sound=False,
        kling_conn_id="kling_default",
        deferrable=True,  # the default: wait on the triggerer, not in a worker slot
        poll_interval=5,  # seconds; backs off while the vendor's eta is far off
        timeout=1800,  # seconds to wait for the video
    )
