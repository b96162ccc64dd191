"""A real Airflow 2.11 stack: what :class:`~tools.airflow_stack.AirflowStack` is for Airflow 3.

Airflow 2 differs in ways that reach the harness (measured on 2.11.2):

* **Processes**: ``webserver`` (Flask and gunicorn; it serves the REST API), ``scheduler`` (which also
  parses the DAG files: there is no separate dag-processor by default) and ``triggerer``. There is no
  execution API: the executor runs ``airflow tasks run`` itself.
* **Executor**: with SQLite only the SequentialExecutor is allowed. It runs one task at a time inside the
  scheduler's loop; a deferred task frees it like a worker slot.
* **REST API v1** at ``/api/v1`` with basic auth (a user created after ``airflow db migrate``); it
  validates query parameters strictly (no ``order_by`` on task instances) and returns XCom values as
  Python reprs unless ``deserialize`` is enabled in ``[api]``.
* **Logs**: plain text lines, not JSON; the triggerer still writes each trigger's log next to the task's
  (``attempt=N.log.trigger.<job id>.log``), so :meth:`trigger_log_files` works unchanged.

Everything else (lifecycle, process groups, memory sampling, log paths, waiting for runs) is inherited.
The Airflow 3-only helpers (task-instance tries, asset events, extra links, task runner processes) are
not available here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tools.airflow_stack import AirflowStack, AirflowStackError, TaskInstance, _tail, _task_instance

#: Settings of Airflow 3 components that Airflow 2 does not have: left out of its environment.
AIRFLOW3_ONLY_PREFIXES = (
    "AIRFLOW__API__",
    "AIRFLOW__API_AUTH__",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER",
    "AIRFLOW__DAG_PROCESSOR__",
    "AIRFLOW__WORKERS__",
)


class Airflow2Stack(AirflowStack):
    """A real Airflow 2 stack (webserver, scheduler, triggerer; SequentialExecutor, SQLite) over REST v1.

    Same constructor and methods as :class:`~tools.airflow_stack.AirflowStack`; ``parallelism`` has no
    effect (the SequentialExecutor runs one task at a time).
    """

    components = ("webserver", "scheduler", "triggerer")
    health_path = "/health"
    # The scheduler parses the DAG files itself: the health answer's dag_processor part stays empty.
    health_parts = ("metadatabase", "scheduler", "triggerer")

    def __init__(self, **kwargs: Any) -> None:
        self.username = "admin"
        self.password = secrets.token_urlsafe(16)
        super().__init__(**kwargs)
        self._api.close()
        self._api = httpx.Client(base_url=f"{self.base_url}/api/v1", auth=(self.username, self.password), timeout=15.0)

    def migrate(self) -> None:
        """Create the SQLite metadata database, then the admin user the REST calls authenticate as."""
        super().migrate()
        log = self.home / "users-create.log"
        user = {"username": self.username, "password": self.password, "role": "Admin"}
        user |= {"firstname": "Kling", "lastname": "E2E", "email": "e2e@example.org"}
        options = [part for name, value in user.items() for part in (f"--{name}", value)]
        with log.open("wb") as out:
            done = subprocess.run(
                self._airflow("users", "create", *options),
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        if done.returncode != 0:
            raise AirflowStackError(f"airflow users create failed ({done.returncode}):\n{_tail(log)}")

    # ------------------------------------------------------------------ REST v1

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` and start a manual run with ``conf``; returns the run id."""
        self.unpause(dag_id)
        response = self._check(self._api.post(f"/dags/{dag_id}/dagRuns", json={"conf": dict(conf or {})}))
        return str(response.json()["dag_run_id"])

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        """Every task instance of a run (v1 takes no ``order_by``: sorted here, by task and map index)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": len(items)}
            )
            items.extend(page["task_instances"])
            if not page["task_instances"] or len(items) >= page["total_entries"]:
                break
        return sorted((_task_instance(item) for item in items), key=lambda ti: ti.key)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The value of one XCom as JSON types (``deserialize`` is enabled in this stack's ``[api]``)."""
        value = self._get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index, "deserialize": "true", "stringify": "false"},
        )["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    # ------------------------------------------------------------------ internals

    def _build_env(
        self, connections: Mapping[str, Mapping[str, Any] | str], extra: Mapping[str, str]
    ) -> dict[str, str]:
        env = {
            name: value
            for name, value in super()._build_env(connections, {}).items()
            if not name.startswith(AIRFLOW3_ONLY_PREFIXES)
        }
        # The SequentialExecutor runs each task as `airflow tasks run ...`, found on PATH: this venv's.
        venv_bin = str(Path(self.python).parent)
        env["PATH"] = os.pathsep.join([venv_bin, *(p for p in env.get("PATH", "").split(os.pathsep) if p)])
        env.update(
            {
                # SQLite allows nothing else on Airflow 2.
                "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
                "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
                "AIRFLOW__WEBSERVER__BASE_URL": self.base_url,
                "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_urlsafe(32),
                # gunicorn forks 4 workers by default: one is plenty for a test, and two cores are few.
                "AIRFLOW__WEBSERVER__WORKERS": "1",
                "AIRFLOW__WEBSERVER__WARN_DEPLOYMENT_EXPOSURE": "False",
                "AIRFLOW__API__AUTH_BACKENDS": "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth",
                # XCom values as JSON (deserialize=true&stringify=false) instead of Python reprs.
                "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",
                # As for Airflow 3: the files do not change while the stack runs.
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
                # The CLI prints deprecation warnings on stdout; they would only clutter the logs.
                "PYTHONWARNINGS": "ignore",
            }
        )
        env.update(extra)
        return env

    def _command(self, component: str) -> list[str]:
        if component == "webserver":
            return ["webserver", "--hostname", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        # Their log servers bind fixed ports on all interfaces: two stacks at once would collide.
        return [component, "--skip-serve-logs"]
