"""DAGs of ``tests/e2e/test_delivery.py``: storing to S3, and copying after the signed URL has expired.

The test copies this file next to the example content pipeline and publish DAGs into the stack's DAGs
folder.
"""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import DAG, Asset, AssetAlias, Param

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

#: The sandbox's video links of the expiring generation live this long (``[sandbox:ttl=N]``).
URL_TTL_SECONDS = 1


def let_the_signed_url_expire(context: Any) -> None:
    """Before the task resumes to copy its video, wait until the trigger's signed URL is certainly dead.

    A resumed try already pushed its ``kling_task_id``; the first start (the submit) has not.
    """
    ti = context["ti"]
    if ti.xcom_pull(task_ids=ti.task_id, key="kling_task_id"):
        # The sandbox signs links valid until ceil(now + ttl): dead at most ttl + 1 s after the last poll.
        time.sleep(URL_TTL_SECONDS + 2)


with DAG(
    dag_id="delivery_expired_url",
    schedule=None,
    catchup=False,
    params={"output_folder": Param(type="string"), "prompt": Param(type="string")},
):
    KlingTextToVideoOperator(
        task_id="generate",
        prompt="{{ params.prompt }}",
        poll_interval=2,
        output_path="{{ params.output_folder }}/{{ run_id }}/clip.mp4",
        pre_execute=let_the_signed_url_expire,
        outlets=[Asset("kling_delivery_checks")],
    )


with DAG(
    dag_id="delivery_to_s3",
    schedule=None,
    catchup=False,
    params={"bucket": Param(type="string")},
):
    KlingTextToVideoOperator.partial(
        task_id="generate",
        poll_interval=2,
        output_path="s3://{{ params.bucket }}/kling/{{ run_id }}/{{ ti.map_index }}.mp4",
        output_conn_id="aws_default",
        outlets=[AssetAlias("kling_s3_videos")],
    ).expand(prompt=["A red kite over the dunes", "Rain on a tin roof, close-up"])
