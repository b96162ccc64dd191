"""Fault suite: the trigger's own timeout fails try 1; try 2 re-attaches to the same generation.

Two tasks cover both ways a retry finds the generation (one run, in parallel: deferred tasks hold no
worker slot). Timings are chosen so each task takes its path whatever the scheduler's latency:

* ``reattach_running``: 46 s generation, 25 s timeout, retry after 1 s. Try 1 times out at 25 s; try 2
  defers again 3 to 12 s later (measured: 4 s), so at least 9 s before the video is ready (clear of
  Airflow 3.3.2's defer/resume race) and with its new 25 s deadline at least 7 s after it.
* ``reattach_finished``: 18 s generation, 10 s timeout, retry after 12 s. Try 2 cannot start before
  10 + 12 = 22 s, when the video is ready: it returns it without waiting.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_kling.operators.kling import KlingTextToVideoOperator

# Both poll every 2 s and get one retry; each has its own timeout and retry delay (see above).
with DAG(
    dag_id="faults_trigger_timeout",
    schedule=None,
    catchup=False,
    default_args={"poll_interval": 2, "max_poll_interval": 2, "retries": 1},
    tags=["e2e", "faults"],
):
    KlingTextToVideoOperator(
        task_id="reattach_running",
        prompt="A glacier calving into the sea [sandbox:seconds=46]",
        timeout=25,
        retry_delay=timedelta(seconds=1),
    )
    KlingTextToVideoOperator(
        task_id="reattach_finished",
        prompt="A hot air balloon over vineyards [sandbox:seconds=18]",
        timeout=10,
        retry_delay=timedelta(seconds=12),
    )
