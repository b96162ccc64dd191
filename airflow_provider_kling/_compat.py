"""What this Airflow can do, for the few features that ``airflow.providers.common.compat`` does not map.

Every Airflow import of the provider goes through ``airflow.providers.common.compat``; this module only
answers "is this feature here?" for the features that degrade on older Airflow versions (see
``docs/compatibility.md``), and logs each degradation once per process in one clear line.
"""

from __future__ import annotations

import logging

from airflow.providers.common.compat.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    AIRFLOW_V_3_2_PLUS,
    AIRFLOW_V_3_3_PLUS,
    get_base_airflow_version_tuple,
)

log = logging.getLogger(__name__)

#: The running Airflow's version, for log lines (``2.11.2``).
AIRFLOW_VERSION = ".".join(str(part) for part in get_base_airflow_version_tuple())

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",  # Datasets were renamed Assets; compat maps Asset to Dataset on 2.x
    "AIRFLOW_V_3_2_PLUS",  # the declarative connection form (conn-fields) replaced the widget methods
    "AIRFLOW_V_3_3_PLUS",  # the task state store (durable execution) and BaseTrigger.on_kill
    "ASSET_TERM",
    "DURABLE_EXECUTION_SUPPORTED",
    "TRIGGER_ON_KILL_SUPPORTED",
    "log_degradation_once",
    "native_async_connection_lookup",
]

DURABLE_EXECUTION_SUPPORTED = AIRFLOW_V_3_3_PLUS
TRIGGER_ON_KILL_SUPPORTED = AIRFLOW_V_3_3_PLUS
#: What Airflow calls the things a task's ``outlets`` update, in log lines.
ASSET_TERM = "Asset" if AIRFLOW_V_3_0_PLUS else "Dataset"


def native_async_connection_lookup() -> bool:
    """Whether ``get_async_connection`` awaits Airflow's own async lookup instead of using a thread.

    The same rule as ``airflow.providers.common.compat.connection.get_async_connection``: the native
    path needs ``BaseHook.aget_connection`` (Airflow 3.1+) and asynchronous secret masking
    (``Connection.aextra_dejson``, 3.3.2+). Before that, compat runs the synchronous lookup in a
    worker thread, which is correct but costs a thread per lookup.
    """
    from airflow.providers.common.compat.sdk import BaseHook, Connection

    return hasattr(BaseHook, "aget_connection") and hasattr(Connection, "aextra_dejson")


_logged_once: set[str] = set()


def log_degradation_once(feature: str, message: str, *args: object, level: int = logging.INFO) -> bool:
    """Log ``message`` the first time ``feature`` is found degraded in this process; return whether it did.

    One line per process, not per call: a triggerer running a thousand triggers should say once that
    its connection lookups run in a thread, not a thousand times.
    """
    if feature in _logged_once:
        return False
    _logged_once.add(feature)
    log.log(level, message, *args)
    return True
