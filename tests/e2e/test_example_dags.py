"""The example DAGs, run for real: Airflow 3.3 (LocalExecutor, 2 worker slots) against the sandbox.

Each test triggers one DAG from ``example_dags/`` over the REST API and then checks three witnesses:
Airflow's own record (task states, XCom, task and trigger log files), and the vendor's side as the
sandbox saw it (its task list and request journal).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_provider_kling.sandbox.process import SandboxProcess, peak_in_flight
from tools.airflow_stack import AirflowStack, RunResult, log_text

pytestmark = pytest.mark.e2e

SUCCEED = "TASK_STATUS_SUCCEED"
IN_FLIGHT = {"TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING"}
# What the trigger and the synchronous wait log on every poll (airflow_provider_kling.polling).
POLL_LINE = re.compile(r"Kling task (?P<id>\S+): status=(?P<status>\S+) progress=(?P<progress>\S+) eta=")


def polls(log: str, kling_task_id: str) -> list[str]:
    """The statuses logged by successive polls of one Kling task, in order."""
    return [m["status"] for m in POLL_LINE.finditer(log) if m["id"] == kling_task_id]


def sandbox_task(sandbox: SandboxProcess, kling_task_id: str) -> dict[str, Any]:
    """The sandbox's record of one generation (model, markers, timestamps, outcome)."""
    (task,) = [t for t in sandbox.tasks() if t["task_id"] == kling_task_id]
    return task


def submits(sandbox: SandboxProcess, kling_task_id: str) -> list[dict[str, Any]]:
    """Submit requests the sandbox answered for this generation (one means: never paid twice)."""
    return sandbox.journal(task_id=kling_task_id, kind="submit")


def assert_succeeded(result: RunResult) -> None:
    failed = {key: states for key, states in result.states_seen.items() if states[-1:] != ["success"]}
    assert result.state == "success", f"run {result.run_id} {result.state}; task states: {failed}"


def test_deferrable_text_to_video_waits_on_the_triggerer_and_returns_the_video(
    airflow_stack: AirflowStack, sandbox: SandboxProcess
) -> None:
    result = airflow_stack.run("example_kling_text_to_video", conf={"prompt": "A fox in the snow"})

    assert_succeeded(result)
    dag_id, run_id = result.dag_id, result.run_id
    assert airflow_stack.deferred_tries(dag_id, run_id, "generate") == [1]
    kling_task_id = airflow_stack.xcom(dag_id, run_id, "generate", key="kling_task_id")
    returned = airflow_stack.xcom(dag_id, run_id, "generate")
    assert returned["kling_task_id"] == kling_task_id
    assert returned["status"] == SUCCEED
    assert returned["videos"][0]["url"].startswith(sandbox.url)
    # The trigger ran in the triggerer process: its log file is the triggerer's, and shows the polls.
    assert airflow_stack.trigger_log_files(dag_id, run_id, "generate")
    statuses = polls(log_text(airflow_stack.trigger_log(dag_id, run_id, "generate")), kling_task_id)
    assert IN_FLIGHT & set(statuses[:-1]), statuses  # at least one poll before the video was ready
    assert statuses[-1] == SUCCEED, statuses
    assert len(submits(sandbox, kling_task_id)) == 1


def test_image_to_video_sends_every_multi_prompt_shot(airflow_stack: AirflowStack, sandbox: SandboxProcess) -> None:
    # A sandbox marker only in the second shot: its seed coming back proves the shots reached the vendor.
    conf = {"second_shot": "steam rises from the mug [sandbox:seed=4242]"}
    result = airflow_stack.run("example_kling_image_to_video", conf=conf)

    assert_succeeded(result)
    returned = airflow_stack.xcom(result.dag_id, result.run_id, "animate")
    assert returned["status"] == SUCCEED
    assert returned["seed"] == 4242
    task = sandbox_task(sandbox, returned["kling_task_id"])
    assert task["model"] == "kling-v3.0-std-i2v"
    rendered = result.ti("animate").raw["rendered_fields"]
    assert [shot["prompt"] for shot in rendered["multi_prompt"]] == [
        "slow push-in on the mug",
        conf["second_shot"],
    ]


def test_motion_control_transfers_the_reference_motion(airflow_stack: AirflowStack, sandbox: SandboxProcess) -> None:
    result = airflow_stack.run("example_kling_motion_control")

    assert_succeeded(result)
    assert airflow_stack.deferred_tries(result.dag_id, result.run_id, "dance") == [1]
    returned = airflow_stack.xcom(result.dag_id, result.run_id, "dance")
    assert returned["status"] == SUCCEED
    assert returned["videos"]
    assert sandbox_task(sandbox, returned["kling_task_id"])["model"] == "kling-v3.0-motion-control"
    assert result.ti("dance").raw["rendered_fields"]["character_orientation"] == "video"


def test_synchronous_mode_polls_from_the_worker_and_never_defers(
    airflow_stack: AirflowStack, sandbox: SandboxProcess
) -> None:
    result = airflow_stack.run("example_kling_text_to_video_sync")

    assert_succeeded(result)
    dag_id, run_id = result.dag_id, result.run_id
    assert airflow_stack.deferred_tries(dag_id, run_id, "generate") == []
    returned = airflow_stack.xcom(dag_id, run_id, "generate")
    assert returned["status"] == SUCCEED
    statuses = polls(log_text(airflow_stack.task_log(dag_id, run_id, "generate")), returned["kling_task_id"])
    assert IN_FLIGHT & set(statuses[:-1]), statuses
    assert statuses[-1] == SUCCEED, statuses


def test_submit_now_wait_later_with_the_sensor_pays_for_one_generation(
    airflow_stack: AirflowStack, sandbox: SandboxProcess
) -> None:
    # The sensor starts a few seconds after the submit: a longer render keeps its trigger from firing
    # within the ~5 s defer/resume race window of Airflow 3.3.2.
    result = airflow_stack.run(
        "example_kling_submit_then_wait", conf={"prompt": "Lanterns over a lake [sandbox:seconds=15]"}
    )

    assert_succeeded(result)
    dag_id, run_id = result.dag_id, result.run_id
    kling_task_id = airflow_stack.xcom(dag_id, run_id, "submit", key="kling_task_id")
    submitted = airflow_stack.xcom(dag_id, run_id, "submit")
    assert submitted == {"kling_task_id": kling_task_id, "model": "kling-v3.0-std-t2v", "status": "SUBMITTED"}
    assert airflow_stack.deferred_tries(dag_id, run_id, "submit") == []
    # The sensor checks once, then defers while the video is still rendering. Whether it still was
    # depends on how soon the sensor started, so the first poll (in the task's log) says which path ran.
    first_poll, *_ = polls(log_text(airflow_stack.task_log(dag_id, run_id, "wait")), kling_task_id)
    if first_poll in IN_FLIGHT:
        assert airflow_stack.deferred_tries(dag_id, run_id, "wait") == [1]
        assert polls(log_text(airflow_stack.trigger_log(dag_id, run_id, "wait")), kling_task_id)[-1] == SUCCEED
    else:
        assert first_poll == SUCCEED
        assert airflow_stack.deferred_tries(dag_id, run_id, "wait") == []
    waited = airflow_stack.xcom(dag_id, run_id, "wait")
    assert waited["kling_task_id"] == kling_task_id
    assert waited["status"] == SUCCEED
    assert len(submits(sandbox, kling_task_id)) == 1


def test_failed_generation_fails_the_task_with_the_vendors_reason(
    airflow_stack: AirflowStack, sandbox: SandboxProcess
) -> None:
    reason = "TASK_FAILED: the render node ran out of memory"
    result = airflow_stack.run("example_kling_text_to_video", conf={"prompt": f"A storm [sandbox:fail={reason}]"})

    assert result.state == "failed"
    assert result.ti("generate").state == "failed"
    assert airflow_stack.deferred_tries(result.dag_id, result.run_id, "generate") == [1]
    kling_task_id = airflow_stack.xcom(result.dag_id, result.run_id, "generate", key="kling_task_id")
    assert sandbox_task(sandbox, kling_task_id)["outcome"] == "TASK_STATUS_FAILED"
    task_log = log_text(airflow_stack.task_log(result.dag_id, result.run_id, "generate"))
    assert reason in task_log, task_log[-3000:]


# Each generation lasts long enough for the next tasks to submit while it renders.
FAN_OUT_SECONDS = 30


def test_twenty_mapped_generations_run_more_at_once_than_there_are_worker_slots(
    airflow_stack: AirflowStack, sandbox: SandboxProcess
) -> None:
    assert airflow_stack.parallelism == 2
    prompts = [f"Postcard {n} of a seaside town [sandbox:seconds={FAN_OUT_SECONDS}]" for n in range(20)]

    result = airflow_stack.run(
        "example_kling_content_pipeline", conf={"prompts": prompts, "review": False}, timeout=600
    )

    assert_succeeded(result)
    mapped = sorted((ti for ti in result.task_instances if ti.task_id == "generate"), key=lambda t: t.map_index)
    assert [ti.map_index for ti in mapped] == list(range(20))
    deferred = {
        ti.map_index: airflow_stack.deferred_tries(result.dag_id, result.run_id, "generate", ti.map_index)
        for ti in mapped
    }
    assert deferred == {ti.map_index: [1] for ti in mapped}
    ids = {airflow_stack.xcom(result.dag_id, result.run_id, "generate", "kling_task_id", ti.map_index) for ti in mapped}
    generations = [t for t in sandbox.tasks() if t["task_id"] in ids]
    assert len(generations) == 20
    # The vendor's clock, not ours: more generations were running at one moment than there are worker
    # slots, which only waits that free their slot (deferral) allow. How many, and how fast the fan-out
    # is, depends on the machine: benchmarks/worker_slots.py measures that.
    peak = peak_in_flight(generations)
    first_submit = min(t["created_at"] for t in generations)
    span = max(t["completes_at"] for t in generations) - first_submit
    print(f"fan-out: peak {peak} of 20 generations of {FAN_OUT_SECONDS}s in flight at once, spanning {span:.1f}s")
    assert peak > airflow_stack.parallelism
    stored = airflow_stack.xcom(result.dag_id, result.run_id, "catalog")
    assert {video["kling_task_id"] for video in stored} == ids
