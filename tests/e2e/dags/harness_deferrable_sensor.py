"""A deferrable sensor from the standard provider: proves the harness without the Kling provider."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import DAG

with DAG(dag_id="harness_deferrable_sensor", schedule=None, catchup=False, tags=["e2e"]):
    # Longer than the ~5 s window of the 3.3.2 defer/resume race (see AIRFLOW_RUNTIME notes).
    TimeDeltaSensor(task_id="wait", delta=timedelta(seconds=7), deferrable=True)
