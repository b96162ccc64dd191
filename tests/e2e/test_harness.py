"""The harness itself: a real stack runs a deferrable task through the triggerer and stops cleanly.

Uses only the standard provider, so a failure here points at the stack, not at the Kling provider.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.airflow_stack import StackFactory, alive, log_text

pytestmark = pytest.mark.e2e

HARNESS_DAGS = Path(__file__).parent / "dags"


def test_deferrable_sensor_defers_to_the_triggerer_and_succeeds_then_stop_leaves_no_process(
    airflow_stack_factory: StackFactory,
) -> None:
    stack = airflow_stack_factory(dags_folder=HARNESS_DAGS)

    result = stack.run("harness_deferrable_sensor")

    assert result.state == "success", result.states_seen
    assert result.ti("wait").state == "success"
    assert stack.deferred_tries(result.dag_id, result.run_id, "wait") == [1], "no trigger log written"
    trigger_events = log_text(stack.trigger_log(result.dag_id, result.run_id, "wait"))
    assert "Trigger fired event" in trigger_events
    running = stack.pids()
    assert len(running) >= 4, running  # four components, plus what they forked
    stack.stop()
    assert [pid for pid in running if alive(pid)] == []
