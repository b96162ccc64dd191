"""Text to video, synchronous: the task polls from its worker slot until the video is ready.

Use it where no triggerer runs; otherwise prefer the deferrable default, which holds no slot.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

with DAG(
    dag_id="example_kling_text_to_video_sync",
    schedule=None,
    catchup=False,
    params={"prompt": Param("A paper boat drifts down a rainy street, macro lens", type="string")},
    tags=["example", "kling"],
):
    KlingTextToVideoOperator(
        task_id="generate",
        prompt="{{ params.prompt }}",
        duration=5,
        deferrable=False,
        poll_interval=5,
    )
