"""A content pipeline: one short video per prompt, all rendering at the same time (``make demo`` runs it).

The prompts are a run parameter: edit them when triggering from the UI, or pass
``{"prompts": ["...", "..."]}``. ``.expand()`` makes one mapped task per prompt; each submits and then
defers, so two worker slots keep any number of videos in flight.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

DEFAULT_PROMPTS = [
    "A hummingbird hovers at a red flower, slow motion, shallow depth of field",
    "Waves roll onto a black sand beach at sunset, aerial shot",
    "A barista pours latte art in a cosy cafe, close-up",
]

with DAG(
    dag_id="example_kling_content_pipeline",
    schedule=None,
    catchup=False,
    params={"prompts": Param(DEFAULT_PROMPTS, type="array", items={"type": "string"}, minItems=1)},
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
    ).expand(prompt=plan_prompts())

    @task
    def publish(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One line per video: where it landed (a signed URL, valid about an hour)."""
        published = []
        for result in results:
            url = result["videos"][0]["url"]
            print(f"Kling task {result['kling_task_id']}: {url}")
            published.append({"kling_task_id": result["kling_task_id"], "url": url})
        return published

    publish(videos.output)
