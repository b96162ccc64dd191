"""A content pipeline: one short video per prompt, all rendering at once, stored in your own folder.

``make demo`` runs it. The prompts are a run parameter: edit them when triggering from the UI, or pass
``{"prompts": ["...", "..."]}``. ``.expand()`` makes one mapped task per prompt; each submits, defers
(two worker slots keep any number of videos in flight), then copies its video and a JSON sidecar to
``<output_folder>/<run id>/<map index>.mp4`` before the vendor's signed URL expires.

Once every video is stored, ``catalog`` updates the ``kling_videos`` asset once, listing them all in
the event's extra; that schedules ``example_kling_publish_videos``.

Where the videos go: the run parameter ``output_folder``, else the Airflow Variable
``kling_output_folder``, else ``$AIRFLOW_HOME/kling_videos``. Any absolute path or Airflow object storage
URI works; for S3 install ``airflow-provider-kling[s3]`` and give ``s3://aws_default@my-bucket/kling``
(the connection to write with goes before the ``@``; see docs/delivery.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

DEFAULT_PROMPTS = [
    "A hummingbird hovers at a red flower, slow motion, shallow depth of field",
    "Waves roll onto a black sand beach at sunset, aerial shot",
    "A barista pours latte art in a cosy cafe, close-up",
]
# Nothing is created at parse time: the task creates the folders it writes to.
DEFAULT_OUTPUT_FOLDER = str(Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "kling_videos")
OUTPUT_FOLDER = "{{ params.output_folder or var.value.get('kling_output_folder', default_output_folder) }}"

KLING_VIDEOS = Asset("kling_videos")

with DAG(
    dag_id="example_kling_content_pipeline",
    schedule=None,
    catchup=False,
    params={
        "prompts": Param(DEFAULT_PROMPTS, type="array", items={"type": "string"}, minItems=1),
        "output_folder": Param("", type="string", description="Where to store the videos (default: see the DAG)"),
    },
    user_defined_macros={"default_output_folder": DEFAULT_OUTPUT_FOLDER},
    tags=["example", "kling"],
):

    @task
    def plan_prompts(params: dict[str, Any] | None = None) -> list[str]:
        """The prompts of this run (Airflow passes the run's ``params``)."""
        return [str(prompt) for prompt in (params or {})["prompts"]]

    videos = KlingTextToVideoOperator.partial(
        task_id="generate",
        model="kling-v3.0-std-t2v",
        duration=5,
        aspect_ratio="9:16",
        poll_interval=5,
        output_path=OUTPUT_FOLDER + "/{{ run_id }}/{{ ti.map_index }}.mp4",
        # The grid names each mapped video by the start of its prompt (the operators' default).
        map_index_template="{{ task.map_index_label }}",
    ).expand(prompt=plan_prompts())

    # One asset event after the fan-in rather than outlets on the mapped task: Airflow 3.3 can leave the
    # events of mapped tasks that finish together unconsumed until a later event (apache/airflow#54659).
    @task(outlets=[KLING_VIDEOS])
    def catalog(results: list[dict[str, Any]], outlet_events: Any = None) -> list[dict[str, Any]]:
        """List where every video was stored, in this task's ``kling_videos`` event too."""
        stored = [video for result in results for video in result["stored"]]
        for video in stored:
            print(f"Kling task {video['kling_task_id']}: {video['uri']} ({video['size_bytes']} bytes)")
        outlet_events[KLING_VIDEOS].extra["kling_videos"] = stored
        return stored

    catalog(videos.output)
