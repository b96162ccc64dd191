"""Fault suite: generations waited for on the triggerer (mapped) and on the worker, with no Airflow retry.

``retries=0``: when a run survives a fault (a triggerer killed, the vendor down, flaky polls), the
provider rode it out itself; a second, paid try cannot have hidden it. Prompts are run parameters, so a
test scripts each generation with sandbox markers (``[sandbox:seconds=40]``); an empty list skips that
path.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

PROMPTS = Param(["A lighthouse at dusk"], type="array", items={"type": "string"})

with DAG(
    dag_id="faults_waits",
    schedule=None,
    catchup=False,
    params={"deferred": PROMPTS, "synchronous": Param([], type="array", items={"type": "string"})},
    default_args={"retries": 0},
    tags=["e2e", "faults"],
):

    @task
    def deferred_prompts(params: dict[str, Any] | None = None) -> list[str]:
        return [str(prompt) for prompt in (params or {})["deferred"]]

    @task
    def synchronous_prompts(params: dict[str, Any] | None = None) -> list[str]:
        return [str(prompt) for prompt in (params or {})["synchronous"]]

    # Poll every 2 s: enough polls per generation for chaos to hit, and a restart to fall mid-wait.
    KlingTextToVideoOperator.partial(task_id="deferred", poll_interval=2, max_poll_interval=2).expand(
        prompt=deferred_prompts()
    )
    KlingTextToVideoOperator.partial(
        task_id="synchronous", deferrable=False, poll_interval=2, max_poll_interval=2
    ).expand(prompt=synchronous_prompts())
