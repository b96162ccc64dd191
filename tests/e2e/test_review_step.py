"""The content pipeline's review step, run for real on Airflow 3.3: a person approves one video and rejects one.

The "person" answers through the REST API, as the UI's Required actions page does
(``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/review/{map_index}/hitlDetails``). Only the
approved video reaches the ``kling_videos`` asset event, so only it is published by
``example_kling_publish_videos``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools.airflow_stack import TERMINAL_RUN_STATES, AirflowStack

pytestmark = pytest.mark.e2e

PIPELINE = "example_kling_content_pipeline"
PUBLISH_DAG = "example_kling_publish_videos"
PROMPTS = ["A red kite over green hills", "A neon sign flickers in the rain"]
# Generous: the stack shares two cores with whatever else runs on the machine.
WAIT_SECONDS = 300.0
#: Where a review task waits for its answer: parked on Airflow 3.3, deferred to a trigger before.
WAITING_STATES = ("awaiting_input", "deferred")


@pytest.fixture
def api(airflow_stack: AirflowStack) -> Iterator[httpx.Client]:
    """The stack's REST API (every user is an admin there, so no token is needed)."""
    with httpx.Client(base_url=f"{airflow_stack.base_url}/api/v2", timeout=30.0) as client:
        yield client


def wait_until(condition: Any, what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not seen after {timeout:.0f}s")
        time.sleep(1.0)


def hitl_detail(stack: AirflowStack, api: httpx.Client, run_id: str, map_index: int) -> dict[str, Any] | None:
    """The review request of one video, once its review task is parked waiting and Airflow knows it.

    Two moments a person never hits but a script can: the task writes the request a moment before it
    parks (an answer given in between is stored but resumes nothing), and the scheduler hears that the
    parked try's process ended a moment after it parked. Airflow 3.3.2 fails a task resumed by an answer
    before that news arrives ("finished with state success, but the task instance's state attribute is
    queued"). So the reviewer answers a task that waits, once the scheduler has logged its parked try.
    """
    ti = api.get(f"/dags/{PIPELINE}/dagRuns/{run_id}/taskInstances/review/{map_index}")
    if ti.status_code != 200 or ti.json()["state"] not in WAITING_STATES:
        return None
    parked = f"TaskInstance Finished: dag_id={PIPELINE}, task_id=review, run_id={run_id}, map_index={map_index},"
    scheduler_log = stack.log_path("scheduler").read_text(errors="replace")
    if not any(parked in line and "state=awaiting_input" in line for line in scheduler_log.splitlines()):
        return None
    response = api.get(f"/dags/{PIPELINE}/dagRuns/{run_id}/taskInstances/review/{map_index}/hitlDetails")
    return response.json() if response.status_code == 200 else None


def publish_runs(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get(f"/dags/{PUBLISH_DAG}/dagRuns", params={"limit": 100})
    return list(response.json()["dag_runs"]) if response.status_code == 200 else []


def test_a_person_approves_one_video_and_rejects_the_other(
    airflow_stack: AirflowStack, api: httpx.Client, tmp_path: Path
) -> None:
    publish_runs_before = {run["dag_run_id"] for run in publish_runs(api)}
    airflow_stack.wait_for_dag(PIPELINE)
    run_id = airflow_stack.trigger(PIPELINE, {"prompts": PROMPTS, "output_folder": str(tmp_path), "review": True})

    details = [
        wait_until(lambda i=i: hitl_detail(airflow_stack, api, run_id, i), f"the review request of video {i}")
        for i in (0, 1)
    ]
    results = [airflow_stack.xcom(PIPELINE, run_id, "generate", map_index=i) for i in (0, 1)]
    for prompt, detail, result in zip(PROMPTS, details, results, strict=True):
        # The reviewer sees what was asked for and where the video is, before anything is published.
        assert detail["options"] == ["Publish", "Reject"]
        assert prompt in detail["subject"]
        assert prompt in detail["body"]
        assert result["stored"][0]["uri"] in detail["body"]
        assert result["kling_task_id"] in detail["body"]
        assert detail["response_received"] is False
    assert airflow_stack.run_state(PIPELINE, run_id) == "running"  # waiting for the person, not done

    for map_index, choice in ((0, "Publish"), (1, "Reject")):
        response = api.patch(
            f"/dags/{PIPELINE}/dagRuns/{run_id}/taskInstances/review/{map_index}/hitlDetails",
            json={"chosen_options": [choice], "params_input": {}},
        )
        assert response.status_code == 200, response.text
        assert response.json()["chosen_options"] == [choice]

    result = airflow_stack.wait_for_run(PIPELINE, run_id, timeout=WAIT_SECONDS)

    assert result.state == "success", result.states_seen
    assert [result.ti("review", i).state for i in (0, 1)] == ["success", "success"]  # a rejection is an answer
    catalogued = airflow_stack.xcom(PIPELINE, run_id, "catalog")
    assert [video["uri"] for video in catalogued] == [results[0]["stored"][0]["uri"]]
    # Only the approved video is published: the asset event lists it alone.
    new_runs = wait_until(
        lambda: [
            run
            for run in publish_runs(api)
            if run["dag_run_id"] not in publish_runs_before and run["state"] in TERMINAL_RUN_STATES
        ],
        f"a finished run of {PUBLISH_DAG}",
    )
    published = [
        video for run in new_runs for video in airflow_stack.xcom(PUBLISH_DAG, run["dag_run_id"], "publish") or []
    ]
    assert all(run["state"] == "success" for run in new_runs), new_runs
    assert [video["uri"] for video in published] == [results[0]["stored"][0]["uri"]]
    assert published[0]["prompt"] == PROMPTS[0]


def test_without_review_every_video_is_catalogued_and_the_review_tasks_are_skipped(
    airflow_stack: AirflowStack, tmp_path: Path
) -> None:
    result = airflow_stack.run(
        PIPELINE, conf={"prompts": PROMPTS, "output_folder": str(tmp_path), "review": False}, timeout=WAIT_SECONDS
    )

    assert result.state == "success", result.states_seen
    assert {ti.state for ti in result.task_instances if ti.task_id == "review"} == {"skipped"}
    catalogued = airflow_stack.xcom(PIPELINE, result.run_id, "catalog")
    assert len(catalogued) == len(PROMPTS)
