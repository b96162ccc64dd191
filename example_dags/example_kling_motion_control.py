"""Motion control: the character in an image performs the motion of a reference video.

Replace both URLs with yours: the image (jpg or png) and the reference clip (mp4 or mov, 3 to 30 s).
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from airflow_provider_kling.operators.kling import KlingMotionControlOperator

with DAG(
    dag_id="example_kling_motion_control",
    schedule=None,
    catchup=False,
    params={
        "image_url": Param("https://example.com/kling/mascot.png", type="string"),
        "video_url": Param("https://example.com/kling/dance.mp4", type="string"),
    },
    tags=["example", "kling"],
):
    KlingMotionControlOperator(
        task_id="dance",
        image="{{ params.image_url }}",
        video="{{ params.video_url }}",
        character_orientation="video",  # keep the orientation of the reference video
        prompt="the mascot dances on a stage",
        poll_interval=5,
    )
