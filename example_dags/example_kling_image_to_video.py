"""Image to video with several shots: the first frame comes from a URL, ``multi_prompt`` sets the shots.

Replace the image URL with one of yours (jpg or png, at least 300 px a side); ``multi_prompt`` cannot be
combined with ``end_image``.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_provider_kling.operators.kling import KlingImageToVideoOperator

with DAG(
    dag_id="example_kling_image_to_video",
    schedule=None,
    catchup=False,
    params={
        "image_url": Param("https://example.com/kling/first-frame.png", type="string"),
        "prompt": Param("A ceramic mug on a wooden table, morning light", type="string"),
        "first_shot": Param("slow push-in on the mug", type="string"),
        "second_shot": Param("steam rises from the mug, close-up", type="string"),
    },
    tags=["example", "kling"],
):
    KlingImageToVideoOperator(
        task_id="animate",
        model="kling-v3.0-std-i2v",
        image="{{ params.image_url }}",
        prompt="{{ params.prompt }}",
        multi_prompt=[
            {"prompt": "{{ params.first_shot }}", "duration": 3},
            {"prompt": "{{ params.second_shot }}", "duration": 4},
        ],
        poll_interval=5,
    )
