"""Boot Airflow's distributed deployment on one machine: PostgreSQL, Redis, CeleryExecutor, two triggerers.

:class:`DistributedStack` is an :class:`~tools.airflow_stack.AirflowStack` (same lifecycle, REST helpers,
log readers and fault tools) whose metadata database is a private PostgreSQL cluster, whose executor is
Celery on a private Redis, and whose components are one api-server, one scheduler, one dag-processor,
``workers`` Celery workers and ``triggerers`` triggerers. Every server is started here on a free port of
127.0.0.1 and stopped by PID (PostgreSQL through ``pg_ctl``, which signals its postmaster's PID).

What this relies on, measured on Airflow 3.3.2 with the Celery provider 3.26.0 and PostgreSQL 15:

- PostgreSQL refuses to run as root: when the harness is root, ``initdb``/``pg_ctl`` run as the
  ``postgres`` user (``runuser``), in a temporary directory handed over to that user.
- Airflow 3.3 also opens an async engine on the same URL (``postgresql+asyncpg``), so asyncpg must be
  installed; the Celery result backend names its driver (``db+postgresql+psycopg2://``), since a bare
  ``postgresql://`` means psycopg 3 to SQLAlchemy 2.1.
- Trigger kwargs are Fernet-encrypted and task tokens are JWTs: every process shares one Fernet key,
  one JWT secret and one API secret key.
- The job table has neither a PID nor a distinct hostname for two triggerers on one machine: they are
  started one at a time and each new ``TriggererJob`` id is recorded (:attr:`triggerer_job_ids`), so
  the trigger table's ``triggerer_id`` says which process runs what.
- A Celery worker's task processes live in process groups of their own: :meth:`kill_tree` kills a
  worker with everything below it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tools.airflow_stack import AirflowStack, AirflowStackError, alive, free_port

#: Where Debian and Ubuntu put a PostgreSQL server's programs (one folder per major version).
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: The unprivileged user PostgreSQL runs as when the harness is root (the Debian package creates it).
POSTGRES_USER = "postgres"
DATABASE = "airflow"


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's ``bin`` folder (with ``initdb`` and ``pg_ctl``), if any."""
    found = [Path(d) for d in glob.glob(POSTGRES_BIN_GLOB) if (Path(d) / "initdb").exists()]
    if not found:
        on_path = shutil.which("initdb")
        return Path(on_path).parent if on_path else None
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1.

    Trust authentication on 127.0.0.1 only, and no fsync: a throwaway test database, never a real one.
    Its log is ``log_path`` (in the data directory's parent, which the server's user can write).
    """

    def __init__(self, *, max_connections: int = 300) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise AirflowStackError("no PostgreSQL server installed (initdb not found); install `postgresql`")
        self.bin_dir = bin_dir
        self.max_connections = max_connections
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="kling-e2e-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgresql.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses root; mkdtemp made the folder 0700 for root, so hand it to the server's user.
            user = pwd.getpwnam(POSTGRES_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", POSTGRES_USER, "--"]

    def url(self, driver: str = "postgresql+psycopg2") -> str:
        """The SQLAlchemy URL of the Airflow database with ``driver`` (e.g. ``db+postgresql+psycopg2``)."""
        return f"{driver}://{POSTGRES_USER}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        """Create the cluster, start it, wait until it accepts connections and create the database."""
        self._run("initdb", "-D", str(self.data_dir), "-U", POSTGRES_USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections={self.max_connections}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c log_lock_waits=on"
        )
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", str(self.log_path), "-w", "start")
        with self.connect("postgres") as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self) -> None:
        """Fast shutdown through ``pg_ctl``; if that fails, SIGKILL the postmaster by its PID."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")
        except AirflowStackError:
            with contextlib.suppress(OSError, ValueError):
                pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)

    def cleanup(self) -> None:
        """Delete the cluster's directory."""
        shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def connect(self, database: str = DATABASE) -> Iterator[Any]:
        """A psycopg2 connection (closed on exit)."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=POSTGRES_USER, dbname=database)
        try:
            yield conn
        finally:
            conn.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read query, as dicts."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            names = [column.name for column in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run a write statement in its own transaction; returns the number of rows it touched."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            conn.commit()
            return int(cur.rowcount)

    def dump(self, database: str = DATABASE) -> bytes:
        """The whole database as ``pg_dump`` writes it (plain SQL, every table's rows), e.g. to scan it."""
        done = subprocess.run(
            [str(self.bin_dir / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", POSTGRES_USER, database],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise AirflowStackError(f"pg_dump failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        return done.stdout

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as_user, str(self.bin_dir / program), *args],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise AirflowStackError(f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}\n{log}")


class RedisServer:
    """``redis-server`` on a free port of 127.0.0.1, no persistence, stopped (and restartable) by PID."""

    def __init__(self, log_path: Path | str, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        """``redis://127.0.0.1:<port>/<db>``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers PING."""
        program = shutil.which("redis-server")
        if program is None:
            raise AirflowStackError("redis-server not found; install `redis-server`")
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AirflowStackError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(redis.exceptions.ConnectionError):
                if client.ping():
                    client.close()
                    return
            if time.monotonic() > deadline:
                raise AirflowStackError(f"redis-server not answering on port {self.port}")
            time.sleep(0.1)

    def values(self, db: int = 0) -> dict[str, bytes]:
        """Every key of ``db`` and what it holds right now (strings, lists, hashes, sets), e.g. to scan them.

        Values are read by type rather than with ``DUMP``, whose serialisation may compress a long string.
        """
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)
        found: dict[str, bytes] = {}
        try:
            for key in client.scan_iter(count=500):
                kind = client.type(key)
                items: list[Any]  # redis-py types its replies loosely; without decode_responses, bytes
                if kind == b"string":
                    items = [client.get(key) or b""]
                elif kind == b"list":
                    items = list(client.lrange(key, 0, -1))
                elif kind == b"hash":
                    items = [part for pair in client.hgetall(key).items() for part in pair]
                elif kind == b"set":
                    items = list(client.smembers(key))
                elif kind == b"zset":
                    items = list(client.zrange(key, 0, -1))
                else:  # streams and modules: not used by Celery's broker or the rate limiter
                    items = []
                found[bytes(key).decode(errors="replace")] = b"\n".join(i for i in items if isinstance(i, bytes))
        finally:
            client.close()
        return found

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server by its PID (``sig``; SIGKILL after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class DistributedStack(AirflowStack):
    """Airflow 3.3 as a distributed deployment runs it, on one machine (see the module docstring).

    :param workers: Celery workers (``worker-1``, ``worker-2``, ...), each with ``-H w<n>@...``.
    :param worker_concurrency: task slots of each worker (``-c``); keep it small on a small machine.
    :param triggerers: triggerers (``triggerer``, ``triggerer-2``, ...), started one after another.
    :param triggerer_health_check_threshold: seconds without a heartbeat after which a triggerer's
        triggers are taken over by another (``[triggerer] triggerer_health_check_threshold``).
    :param task_instance_heartbeat_timeout: seconds without a heartbeat after which a running task is
        failed (and retried), e.g. when its worker died (``[scheduler] task_instance_heartbeat_timeout``).
    :param triggerer_capacity: triggers one triggerer runs at most (``[triggerer] capacity``).

    Every other keyword argument is :class:`~tools.airflow_stack.AirflowStack`'s; ``parallelism``
    defaults to the workers' slots in all.
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        worker_concurrency: int = 2,
        triggerers: int = 2,
        triggerer_health_check_threshold: float = 15.0,
        task_instance_heartbeat_timeout: float = 30.0,
        triggerer_capacity: int = 1000,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("parallelism", workers * worker_concurrency)
        super().__init__(**kwargs)
        self.worker_concurrency = worker_concurrency
        self.worker_names = tuple(f"worker-{n}" for n in range(1, workers + 1))
        self.triggerer_names = tuple("triggerer" if n == 1 else f"triggerer-{n}" for n in range(1, triggerers + 1))
        # Triggerers last, one at a time (see start): by then the scheduler and workers are up.
        self.components = ("api-server", "scheduler", "dag-processor", *self.worker_names, *self.triggerer_names)
        #: Component name of each triggerer -> the id of the TriggererJob it runs.
        self.triggerer_job_ids: dict[str, int] = {}
        self.postgres = PostgresServer()
        self.redis = RedisServer(self.home / "redis.log")
        settings = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url(),
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url(0),
            "AIRFLOW__CELERY__RESULT_BACKEND": self.postgres.url("db+postgresql+psycopg2"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
            "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(triggerer_health_check_threshold),
            "AIRFLOW__TRIGGERER__CAPACITY": str(triggerer_capacity),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(task_instance_heartbeat_timeout),
            # Seen here on a loaded machine: the api-server's first execution-API call took 56 s, and a task
            # whose start call times out 5 times (5 s each by default) fails before it ran.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        }
        # The caller's env (given to the base class) still wins over these defaults.
        self.env.update({k: v for k, v in settings.items() if k not in (kwargs.get("env") or {})})

    # ------------------------------------------------------------------ lifecycle

    def boot(self, timeout: float = 600.0) -> float:
        """Start everything (PostgreSQL and Redis first) and wait until healthy; seconds it took.

        Migrating a PostgreSQL database and starting seven Airflow processes takes minutes on two busy
        cores, hence the longer default.
        """
        return super().boot(timeout=timeout)

    def migrate(self) -> None:
        """Start PostgreSQL and Redis, then create Airflow's schema (``airflow db migrate``)."""
        self.postgres.start()
        self.redis.start()
        super().migrate()

    def start(self, component: str) -> subprocess.Popen[bytes]:
        """Start one component; a triggerer is waited for until its TriggererJob id is known."""
        known = self._triggerer_jobs()
        proc = super().start(component)
        if component in self.triggerer_names:
            found: list[int] = []

            def registered() -> bool:
                found[:] = sorted(set(self._triggerer_jobs()) - set(known))
                return bool(found)

            self.wait_until(registered, 120.0, lambda: f"{component} registered no TriggererJob", 0.5)
            if len(found) != 1:
                raise AirflowStackError(f"{component}: expected one new TriggererJob, found {found}")
            self.triggerer_job_ids[component] = found[0]
        return proc

    def stop(self) -> None:
        """Stop every Airflow component, then Redis and PostgreSQL (whose log is copied into the home)."""
        try:
            super().stop()
        finally:
            self.redis.stop()
            self.postgres.stop()
            with contextlib.suppress(OSError):
                shutil.copy(self.postgres.log_path, self.home / "postgresql.log")

    def cleanup(self) -> None:
        """Delete the temporary ``AIRFLOW_HOME`` and the PostgreSQL cluster."""
        super().cleanup()
        self.postgres.cleanup()

    def kill_tree(self, component: str, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to a component and every process below it, task processes included; their PIDs.

        A Celery worker's task supervisors run in process groups of their own, so killing the worker's
        group (:meth:`kill`) would leave them running: this walks the process tree instead.
        """
        import psutil

        proc = self.procs[component]
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        # The whole group first (what the component forked and kept), then everything that left it.
        self.kill(component, sig)
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(sig)
        if sig == signal.SIGKILL:
            self.wait_until(
                lambda: not any(alive(p.pid) for p in tree), 30.0, lambda: f"{component} tree survived SIGKILL", 0.1
            )
        return [p.pid for p in tree]

    # ------------------------------------------------------------------ what the database says

    def trigger_rows(self) -> list[dict[str, Any]]:
        """Rows of the ``trigger`` table (``id``, ``classpath``, ``kwargs`` decrypted, ``triggerer_id``)."""
        from cryptography.fernet import Fernet

        fernet = Fernet(self.env["AIRFLOW__CORE__FERNET_KEY"].encode())
        rows = self.postgres.query("SELECT id, classpath, kwargs, triggerer_id, created_date FROM trigger ORDER BY id")
        for row in rows:
            kwargs = str(row["kwargs"])
            if not kwargs.startswith("{"):
                row["kwargs"] = fernet.decrypt(kwargs.encode()).decode()
        return rows

    def triggers_by_triggerer(self) -> dict[str, int]:
        """How many triggers each triggerer (by component name) holds right now."""
        counts = dict.fromkeys(self.triggerer_job_ids, 0)
        names = {job_id: name for name, job_id in self.triggerer_job_ids.items()}
        for row in self.trigger_rows():
            name = names.get(row["triggerer_id"])
            if name is not None:
                counts[name] += 1
        return counts

    def db_query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read query on the metadata database (PostgreSQL), as dicts."""
        return self.postgres.query(sql, params)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str, poll_interval: float = 0.5) -> None:
        """:meth:`wait_until` with a fixed description."""
        self.wait_until(condition, timeout, lambda: what, poll_interval)

    def _triggerer_jobs(self) -> list[int]:
        if not (self.postgres.data_dir / "postmaster.pid").exists():
            return []
        rows = self.postgres.query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")
        return [int(row["id"]) for row in rows]

    def _command(self, component: str) -> list[str]:
        if component in self.worker_names:
            n = self.worker_names.index(component) + 1
            # Distinct Celery hostnames; no log server (they would all bind the same fixed port).
            return [
                "celery",
                "worker",
                "-c",
                str(self.worker_concurrency),
                "-H",
                f"w{n}@kling-e2e",
                "--skip-serve-logs",
            ]
        if component in self.triggerer_names:
            return ["triggerer", "--skip-serve-logs"]
        return super()._command(component)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
