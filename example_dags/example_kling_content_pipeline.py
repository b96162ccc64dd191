"""A content pipeline: one short video per prompt, all rendering at once, stored in your own folder.

``make demo`` runs it. The prompts are a run parameter: edit them when triggering from the UI, or pass
``{"prompts": ["...", "..."]}``. ``.expand()`` makes one mapped task per prompt; each submits, defers
(two worker slots keep any number of videos in flight), then copies its video and a JSON sidecar to
``<output_folder>/<run id>/<map index>.mp4`` before the vendor's signed URL expires.

**Review** (Airflow 3.1+): a person approves or rejects each stored video before it is published. One
``review`` task per video (the standard provider's ``HITLOperator``) shows its prompt and where it is
stored, and waits for "Publish" or "Reject" in the UI (Required actions) or over the REST API
(``PATCH .../taskInstances/review/<map index>/hitlDetails``). The run parameter ``review`` set to false
skips the step and publishes every video (``make demo`` does, to run unattended). Before Airflow 3.1
there are no human-in-the-loop operators: the step is left out, every video is published, and
``catalog`` logs why.

Once every video is stored (and reviewed), ``catalog`` updates the ``kling_videos`` asset once, listing
the approved videos in the event's extra; that schedules ``example_kling_publish_videos``, which
publishes exactly those.

Where the videos go: the run parameter ``output_folder``, else the Airflow Variable
``kling_output_folder``, else ``$AIRFLOW_HOME/kling_videos``. Any absolute path or Airflow object storage
URI works; for S3 install ``airflow-provider-kling[s3]`` and give ``s3://aws_default@my-bucket/kling``
(the connection to write with goes before the ``@``; see docs/delivery.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, get_current_context, task

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

try:
    from airflow.providers.standard.operators.hitl import HITLOperator
except Exception as unavailable:  # ImportError without the standard provider; its own error before 3.1
    HITLOperator = None  # type: ignore[misc,assignment]
    REVIEW_UNAVAILABLE: str | None = f"the review step needs Airflow 3.1+ human-in-the-loop operators ({unavailable})"
else:
    REVIEW_UNAVAILABLE = None

DEFAULT_PROMPTS = [
    "A hummingbird hovers at a red flower, slow motion, shallow depth of field",
    "Waves roll onto a black sand beach at sunset, aerial shot",
    "A barista pours latte art in a cosy cafe, close-up",
]
# Nothing is created at parse time: the task creates the folders it writes to.
DEFAULT_OUTPUT_FOLDER = str(Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "kling_videos")
OUTPUT_FOLDER = "{{ params.output_folder or var.value.get('kling_output_folder', default_output_folder) }}"

KLING_VIDEOS = Asset("kling_videos")
PUBLISH = "Publish"
REJECT = "Reject"


def review_request(generation: tuple[dict[str, Any], str]) -> dict[str, Any]:
    """What the reviewer sees for one generation (its result and prompt): the prompt, where it is stored."""
    result, prompt = generation
    stored = result["stored"]
    lines = [f"**Prompt:** {prompt}", "", f"**Kling task:** `{result['kling_task_id']}`", ""]
    lines += [
        f"- stored at `{video['uri']}` ({video['size_bytes']} bytes, sidecar `{video['sidecar_uri']}`)"
        for video in stored
    ]
    short = prompt if len(prompt) <= 60 else prompt[:59] + "\u2026"
    return {"subject": f"Publish this video? {short}", "body": "\n".join(lines)}


def review_decision(map_index: int) -> str:
    """The reviewer's choice for one generation; every video counts as approved without a review step."""
    if HITLOperator is None:
        print(f"Not reviewed: {REVIEW_UNAVAILABLE}")
        return "published without review"
    ti = get_current_context()["ti"]
    answer = ti.xcom_pull(task_ids="review", map_indexes=map_index)
    if not answer:  # the run asked for no review (the review tasks were skipped)
        return "published without review (review=false)"
    return str(answer["chosen_options"][0])


with DAG(
    dag_id="example_kling_content_pipeline",
    schedule=None,
    catchup=False,
    params={
        "prompts": Param(DEFAULT_PROMPTS, type="array", items={"type": "string"}, minItems=1),
        "output_folder": Param("", type="string", description="Where to store the videos (default: see the DAG)"),
        "review": Param(True, type="boolean", description="Ask a person to approve each video before publishing"),
    },
    user_defined_macros={"default_output_folder": DEFAULT_OUTPUT_FOLDER},
    # Shown in the UI: on an Airflow without the review step, the DAG's page says why.
    doc_md=__doc__ + (f"\n\n**Review step skipped here:** {REVIEW_UNAVAILABLE}." if REVIEW_UNAVAILABLE else ""),
    tags=["example", "kling"],
):

    @task
    def plan_prompts(params: dict[str, Any] | None = None) -> list[str]:
        """The prompts of this run (Airflow passes the run's ``params``)."""
        return [str(prompt) for prompt in (params or {})["prompts"]]

    prompts = plan_prompts()
    videos = KlingTextToVideoOperator.partial(
        task_id="generate",
        model="kling-v3.0-std-t2v",
        duration=5,
        aspect_ratio="9:16",
        poll_interval=5,
        output_path=OUTPUT_FOLDER + "/{{ run_id }}/{{ ti.map_index }}.mp4",
        # The grid names each mapped video by the start of its prompt (the operators' default).
        map_index_template="{{ task.map_index_label }}",
    ).expand(prompt=prompts)

    # One asset event after the fan-in rather than outlets on the mapped task: Airflow 3.3 can leave the
    # events of mapped tasks that finish together unconsumed until a later event (apache/airflow#54659).
    # none_failed: it also runs when the review step was skipped.
    @task(outlets=[KLING_VIDEOS], trigger_rule="none_failed")
    def catalog(results: list[dict[str, Any]], outlet_events: Any = None) -> list[dict[str, Any]]:
        """List the videos to publish (all, or the approved ones) in this task's ``kling_videos`` event."""
        approved = []
        for index, result in enumerate(results):
            decision = review_decision(index)
            for video in result["stored"]:
                print(f"Kling task {video['kling_task_id']}: {video['uri']} ({video['size_bytes']} bytes): {decision}")
                if decision != REJECT:
                    approved.append(video)
        outlet_events[KLING_VIDEOS].extra["kling_videos"] = approved
        return approved

    stored = videos.output
    if HITLOperator is None:
        catalog(stored)
    else:
        # Only the review tasks are skipped when the run asks for no review: catalog runs either way.
        @task.short_circuit(ignore_downstream_trigger_rules=False)
        def review_requested(params: dict[str, Any] | None = None) -> bool:
            """Whether this run's videos wait for a person (run parameter ``review``)."""
            return bool((params or {}).get("review", True))

        review = HITLOperator.partial(
            task_id="review",
            options=[PUBLISH, REJECT],
            # A person decides: no default, no timeout.
            map_index_template="{{ task.subject }}",
        ).expand_kwargs(stored.zip(prompts).map(review_request))
        review_requested() >> review
        review >> catalog(stored)
