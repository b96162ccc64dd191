"""A deferrable sensor from the standard provider: proves the harness without the Kling provider."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.sensors.time_delta import WaitSensor
from airflow.sdk import DAG

with DAG(dag_id="harness_deferrable_sensor", schedule=None, catchup=False, tags=["e2e"]):
    # WaitSensor counts from the task's own start, so it defers however late the task starts (a
    # TimeDeltaSensor counts from the run and returns at once when started after its target). Longer than
    # the ~5 s window of the 3.3.2 defer/resume race.
    WaitSensor(task_id="wait", time_to_wait=timedelta(seconds=7), deferrable=True)
