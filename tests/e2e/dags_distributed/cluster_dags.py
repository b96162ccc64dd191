"""DAGs of ``tests/e2e/test_distributed.py`` and ``benchmarks/distributed.py``: generations on a cluster.

Every DAG maps one Kling generation per prompt of its run's ``conf``: ``count`` prompts, each carrying
sandbox markers (``[sandbox:seconds=N]`` for how long it renders, ``[sandbox:seed=S]`` with ``seed``
plus the map index, so the sandbox's task list tells which mapped task submitted what).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

PARAMS = {
    "count": Param(1, type="integer"),
    "seconds": Param(20, type="number"),
    "seed": Param(1, type="integer"),
    "bucket": Param("", type="string"),
}


@task
def prompts(params: dict[str, Any] | None = None) -> list[str]:
    """``count`` prompts, each with its render time and its own seed."""
    assert params is not None
    return [
        f"Clip {n} [sandbox:seconds={params['seconds']}] [sandbox:seed={params['seed'] + n}]"
        for n in range(params["count"])
    ]


def generations(dag_id: str, **operator_kwargs: Any) -> DAG:
    """A DAG mapping :class:`KlingTextToVideoOperator` over its run's prompts."""
    with DAG(dag_id=dag_id, schedule=None, catchup=False, params=PARAMS, max_active_tasks=1000) as dag:
        KlingTextToVideoOperator.partial(task_id="generate", **{"poll_interval": 2, **operator_kwargs}).expand(
            prompt=prompts()
        )
    return dag


#: Fan-out, triggerer failover and duplicate triggers: deferrable generations on the default connection.
generations("cluster_generations")
#: Worker failover: the wait happens on the worker (sync mode); one retry.
generations("cluster_sync_wait", deferrable=False, retries=1, retry_delay=timedelta(seconds=1))
#: Delivery from the Celery workers to S3.
generations(
    "cluster_to_s3",
    output_path="s3://{{ params.bucket }}/cluster/{{ run_id }}/{{ ti.map_index }}.mp4",
    output_conn_id="aws_default",
)
#: A vendor concurrency quota as a pool counting deferred tasks (the test creates the pool).
generations("cluster_pool", pool="kling_quota")
#: The cluster-wide poll rate limit: a connection whose extra names the shared store; one poll a second.
generations("cluster_rate_limit", kling_conn_id="kling_limited", poll_interval=1, max_poll_interval=1)
