"""Where the sandbox keeps tasks and the request journal: in memory, or in a SQLite file.

A task never changes after it is created: its status is computed from the clock (see
:mod:`.timeline`), so storing it once is enough and reads never touch the disk. The SQLite store keeps
every task in memory as well and writes through, so a restarted sandbox picks up where it stopped.
"""

from __future__ import annotations

import collections
import itertools
import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

#: What a journaled request was: a submit, a poll, or a download of a video.
JournalKind = Literal["submit", "poll", "media"]


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One submitted task and its whole planned life, fixed at submit time (epoch seconds)."""

    task_id: str
    model: str
    created_at: float
    started_at: float
    completes_at: float
    succeeds: bool
    reason: str = ""
    seed: int = 0
    url_ttl: int | None = None
    empty_extra: bool = False
    markers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise for the state file."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TaskRecord:
        """Read back what :meth:`to_json` wrote."""
        return cls(**json.loads(text))


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One API request as the sandbox saw it. Never holds headers, so never an API key."""

    seq: int
    time: float
    method: str
    path: str
    status: int
    kind: JournalKind
    # No defaults: entries come from record() (which has them) or from a stored row, always whole.
    model: str | None
    task_id: str | None
    note: str | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form served at ``GET /sandbox/journal``."""
        return asdict(self)


class MemoryStore:
    """Tasks in a dict and the journal in a bounded deque: the fast default, lost on exit."""

    def __init__(self, *, journal_limit: int = 100_000) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._journal: collections.deque[JournalEntry] = collections.deque(maxlen=journal_limit)
        self._seq = itertools.count(1)
        self._meta: dict[str, str] = {}

    def add_task(self, task: TaskRecord) -> None:
        """Keep a new task."""
        self._tasks[task.task_id] = task

    def get_task(self, task_id: str) -> TaskRecord | None:
        """The task with this id, or ``None``."""
        return self._tasks.get(task_id)

    def tasks(self) -> list[TaskRecord]:
        """Every task, oldest first."""
        return sorted(self._tasks.values(), key=lambda task: task.created_at)

    def iter_tasks(self) -> Iterable[TaskRecord]:
        """Every task, in no particular order (cheaper than :meth:`tasks`)."""
        return self._tasks.values()

    def __len__(self) -> int:
        return len(self._tasks)

    def clear_tasks(self) -> None:
        """Forget every task."""
        self._tasks.clear()

    def record(
        self,
        *,
        time: float,
        method: str,
        path: str,
        status: int,
        kind: JournalKind,
        model: str | None = None,
        task_id: str | None = None,
        note: str | None = None,
    ) -> None:
        """Append one request to the journal."""
        self._append(JournalEntry(next(self._seq), time, method, path, status, kind, model, task_id, note))

    def _append(self, entry: JournalEntry) -> None:
        self._journal.append(entry)

    def journal(
        self, *, task_id: str | None = None, method: str | None = None, kind: str | None = None
    ) -> list[JournalEntry]:
        """Journal entries, oldest first, optionally filtered (all filters must match)."""
        return [entry for entry in self._journal if _matches(entry, task_id, method, kind)]

    def clear_journal(self) -> None:
        """Empty the journal."""
        self._journal.clear()

    def get_meta(self, key: str) -> str | None:
        """A stored setting of the store itself (such as the URL signing secret)."""
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting of the store itself."""
        self._meta[key] = value

    def close(self) -> None:
        """Release resources (nothing to do in memory)."""


def _matches(entry: JournalEntry, task_id: str | None, method: str | None, kind: str | None) -> bool:
    return (
        (task_id is None or entry.task_id == task_id)
        and (method is None or entry.method == method.upper())
        and (kind is None or entry.kind == kind)
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, created_at REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    status INTEGER NOT NULL, kind TEXT NOT NULL, model TEXT, task_id TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS journal_task ON journal (task_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SqliteStore(MemoryStore):
    """A :class:`MemoryStore` that writes every task and journal entry through to a SQLite file (WAL).

    Each write is committed at once so a sandbox that is killed (not only stopped) loses nothing it
    has answered; WAL with ``synchronous=NORMAL`` keeps that cheap and lets a second process read.
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The app is driven from an event loop thread (or a test client's thread): one connection,
        # guarded by a lock, is simpler and faster than a pool.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            rows = self._db.execute("SELECT data FROM tasks ORDER BY created_at").fetchall()
            meta = self._db.execute("SELECT key, value FROM meta").fetchall()
        for (data,) in rows:
            super().add_task(TaskRecord.from_json(data))
        self._meta.update(dict(meta))

    def add_task(self, task: TaskRecord) -> None:
        """Keep a new task, on disk first."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO tasks (task_id, created_at, data) VALUES (?, ?, ?)",
                (task.task_id, task.created_at, task.to_json()),
            )
        super().add_task(task)

    def clear_tasks(self) -> None:
        """Forget every task, on disk too."""
        with self._lock:
            self._db.execute("DELETE FROM tasks")
        super().clear_tasks()

    def _append(self, entry: JournalEntry) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO journal (time, method, path, status, kind, model, task_id, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.time,
                    entry.method,
                    entry.path,
                    entry.status,
                    entry.kind,
                    entry.model,
                    entry.task_id,
                    entry.note,
                ),
            )

    def journal(
        self, *, task_id: str | None = None, method: str | None = None, kind: str | None = None
    ) -> list[JournalEntry]:
        """Journal entries from the file (so entries from before a restart are included)."""
        clauses, params = [], []
        for column, value in (("task_id", task_id), ("method", method and method.upper()), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows: Iterable[tuple[Any, ...]] = self._db.execute(
                f"SELECT seq, time, method, path, status, kind, model, task_id, note FROM journal{where} ORDER BY seq",
                params,
            ).fetchall()
        return [JournalEntry(*row) for row in rows]

    def clear_journal(self) -> None:
        """Empty the journal, on disk too."""
        with self._lock:
            self._db.execute("DELETE FROM journal")

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting of the store itself, on disk."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        super().set_meta(key, value)

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()


def open_store(path: Path | str | None, *, journal_limit: int = 100_000) -> MemoryStore:
    """A :class:`SqliteStore` on ``path``, or a :class:`MemoryStore` when no path is given."""
    return SqliteStore(path) if path is not None else MemoryStore(journal_limit=journal_limit)
