"""Airflow glue shared by the operators and the sensor: deferral, Airflow's own settings, template checks.

Kept out of both so neither imports the other: the sensor and the operators defer the same way, honour
``[operators] default_deferrable`` and ``execution_timeout`` the same way, and treat a value that is
still a template the same way.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from airflow_provider_kling import clock
from airflow_provider_kling.delivery import check_conn_id, normalise_output_path
from airflow_provider_kling.exceptions import KlingValidationError
from airflow_provider_kling.triggers.kling import KlingTaskTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, Context

#: A deferral asks Airflow to give up this long after the trigger's own deadline, so the trigger's
#: clearer ``timeout`` event always arrives first.
DEFER_TIMEOUT_MARGIN = timedelta(minutes=5)
#: The method a deferred task resumes in.
RESUME_METHOD = "execute_complete"

_DEFERRABLE_SECTION, _DEFERRABLE_KEY = "operators", "default_deferrable"
_DEFERRABLE_ENV = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"


def deferrable_setting() -> bool | None:
    """An administrator's explicit ``[operators] default_deferrable``, or ``None`` when it is not set.

    Airflow's own default for that option is ``false``; a provider built around the triggerer keeps
    ``True`` unless someone chose otherwise, so the shipped default must not count. Explicit means an
    ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` variable (or its ``_CMD``/``_SECRET`` forms), or an
    ``airflow.cfg`` value other than the shipped default. ``airflow db migrate`` writes every default
    into the ``airflow.cfg`` it generates (Airflow 2.11 and 3.3 alike), so a file value equal to the
    shipped default cannot be told from an untouched file and does not count: set the variable.
    """
    from airflow.providers.common.compat.sdk import conf

    if any(os.environ.get(_DEFERRABLE_ENV + suffix) for suffix in ("", "_CMD", "_SECRET")):
        return conf.getboolean(_DEFERRABLE_SECTION, _DEFERRABLE_KEY, fallback=False)
    # The plain ConfigParser layer holds what was read from airflow.cfg; Airflow keeps its shipped
    # defaults apart from it.
    if not configparser.ConfigParser.has_option(conf, _DEFERRABLE_SECTION, _DEFERRABLE_KEY):
        return None
    value = conf.getboolean(_DEFERRABLE_SECTION, _DEFERRABLE_KEY, fallback=False)
    shipped = str(conf.get_default_value(_DEFERRABLE_SECTION, _DEFERRABLE_KEY, fallback="false"))
    if value == (shipped.strip().lower() in ("true", "t", "1")):
        return None
    return value


def resolve_deferrable(deferrable: bool | None) -> bool:
    """``deferrable`` as given, else the administrator's ``default_deferrable``, else ``True``."""
    if deferrable is not None:
        return bool(deferrable)
    setting = deferrable_setting()
    return True if setting is None else setting


def is_unresolved(value: Any) -> bool:
    """Whether a value is only known once the task runs (a Jinja template, an XCom reference, ...)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(is_unresolved(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_unresolved(item) for item in value)
    return not isinstance(value, (int, float, bool, bytes, Path, type(None)))


def check_output_target(output_path: Any, output_conn_id: Any) -> None:
    """At DAG parse time: ``output_conn_id`` needs ``output_path``, and literal ones must agree."""
    if output_conn_id is not None and output_path is None:
        raise KlingValidationError("output_conn_id needs output_path: it is the connection to write the video with")
    if output_path is not None and not is_unresolved(output_path):
        literal_conn_id = None if is_unresolved(output_conn_id) else output_conn_id
        check_conn_id(normalise_output_path(output_path), literal_conn_id)


def wait_deadline(task: BaseOperator, context: Context, timeout_seconds: float) -> float:
    """The absolute end of a wait: ``timeout`` from now, but never past what is left of ``execution_timeout``.

    Airflow users expect ``execution_timeout`` to bound the whole task, deferral included; Airflow 3's
    task runner does not apply it to a deferral, so the trigger's own deadline does.
    """
    now = clock.now()
    end = now + timeout_seconds
    execution_timeout = getattr(task, "execution_timeout", None)
    if execution_timeout:
        started = getattr(context.get("ti"), "start_date", None)
        start = started.timestamp() if started is not None else now
        end = min(end, start + execution_timeout.total_seconds())
    return end


class WaitOptions(TypedDict):
    """How a generation is waited for: what the trigger and the hook's ``wait_for_task`` both take."""

    poll_interval: float
    max_poll_interval: float | None
    submitted_at: float | None
    not_found_grace: float
    progress_log_interval: float


def defer_to_trigger(
    task: BaseOperator,
    context: Context,
    *,
    kling_task_id: str,
    kling_conn_id: str,
    timeout_seconds: float,
    **wait: Unpack[WaitOptions],
) -> None:
    """Defer ``task`` to a :class:`KlingTaskTrigger` for ``kling_task_id``; resume in ``execute_complete``.

    Raises Airflow's ``TaskDeferred`` (never returns).
    """
    end_time = wait_deadline(task, context, timeout_seconds)
    task.defer(
        trigger=KlingTaskTrigger(
            kling_task_id=kling_task_id,
            end_time=end_time,
            kling_conn_id=kling_conn_id,
            **wait,
        ),
        method_name=RESUME_METHOD,
        kwargs={"kling_task_id": kling_task_id},
        timeout=timedelta(seconds=max(0.0, end_time - clock.now())) + DEFER_TIMEOUT_MARGIN,
    )
