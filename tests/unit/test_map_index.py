"""Mapped generations are named in the grid by the start of their prompt (``map_index_template``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_kling.operators.kling import (
    DEFAULT_MAP_INDEX_TEMPLATE,
    MAP_INDEX_LABEL_LENGTH,
    KlingImageToVideoOperator,
    KlingSubmitOperator,
    KlingTextToVideoOperator,
    short_label,
)

LONG_PROMPT = "A hummingbird hovers at a red flower, slow motion, shallow depth of field"


def render_map_index(task: KlingSubmitOperator, map_index: int) -> str:
    """Render the task's map_index_template as Airflow does: the DAG's Jinja environment, the task's context."""
    context = {"task": task, "ti": SimpleNamespace(map_index=map_index, task=task)}
    assert task.map_index_template is not None
    return task.dag.get_template_env().from_string(task.map_index_template).render(context)


@pytest.fixture
def dag():
    with DAG(dag_id="kling_map_index", schedule=None) as dag:
        yield dag


def test_a_mapped_generation_is_named_by_the_start_of_its_prompt(dag):
    task = KlingTextToVideoOperator(task_id="generate", prompt=LONG_PROMPT)

    label = render_map_index(task, map_index=0)

    assert label == "A hummingbird hovers at a red flower…"
    assert len(label) <= MAP_INDEX_LABEL_LENGTH


def test_partial_passes_airflows_default_of_none_and_still_gets_the_prompt_label(dag):
    task = KlingTextToVideoOperator(task_id="generate", prompt="a fox", map_index_template=None)

    assert task.map_index_template == DEFAULT_MAP_INDEX_TEMPLATE
    assert render_map_index(task, map_index=2) == "a fox"


def test_an_unmapped_task_gets_no_label(dag):
    task = KlingTextToVideoOperator(task_id="generate", prompt="a fox")

    assert render_map_index(task, map_index=-1) == ""


def test_the_dag_can_name_its_own_field(dag):
    task = KlingTextToVideoOperator(
        task_id="generate", prompt=LONG_PROMPT, aspect_ratio="9:16", map_index_template="{{ task.aspect_ratio }}"
    )

    assert render_map_index(task, map_index=0) == "9:16"


def test_the_label_follows_the_rendered_prompt_and_the_raw_payload(dag):
    task = KlingSubmitOperator(task_id="future", model="kling-v9-t2v", payload={"prompt": "{{ params.p }}"})
    task.payload = {"prompt": "a rendered\n  prompt"}  # what Airflow's templating leaves before the render

    assert render_map_index(task, map_index=0) == "a rendered prompt"


def test_only_shots_name_the_generation_by_the_first_shot(dag):
    task = KlingImageToVideoOperator(
        task_id="shots",
        model="kling-v3.0-pro-i2v",
        image="https://example.com/a.png",
        prompt="{{ params.none }}",
        multi_prompt=[{"prompt": "first shot", "duration": 3}, {"prompt": "second", "duration": 3}],
    )
    task.prompt = ""  # rendered empty: the shots carry the prompts

    assert task.map_index_label == "first shot"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 20, "short"),
        ("  spaced\n\tout  ", 20, "spaced out"),
        ("x" * 50, 20, "x" * 19 + "…"),
        ("one two three four five", 16, "one two three…"),
        ("one two three, four", 15, "one two three…"),
        ("", 20, ""),
    ],
)
def test_short_label_cuts_at_a_word_and_marks_the_cut(text, limit, expected):
    assert short_label(text, limit) == expected
