"""Job, event and dataset metadata in SQLite at ZOO_HOME/server.db.

The server process is the only writer (job workers report over a pipe), so one
connection behind a lock is enough; WAL mode lets `sqlite3` readers look in meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    examples INTEGER NOT NULL,
    classes TEXT NOT NULL,          -- JSON list
    path TEXT NOT NULL,             -- relative to ZOO_HOME: what fine-tuning reads
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_sha ON datasets (sha256, format);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    base TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    output_name TEXT NOT NULL,
    hyperparameters TEXT NOT NULL,  -- JSON object of the fields the client set
    result_version INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER NOT NULL DEFAULT 0,
    epochs INTEGER NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    started_ms INTEGER NOT NULL DEFAULT 0,
    finished_ms INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created_ms);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    data TEXT NOT NULL              -- JSON: the JobEvent's fields
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
"""


_ACTIVE = "('QUEUED', 'RUNNING')"  # job states that keep a dataset in use


def now_ms() -> int:
    return int(time.time() * 1000)


class Database:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                     timeout=30)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement; returns the last row id."""
        with self._lock:
            cursor = self._conn.execute(sql, tuple(params))
            return int(cursor.lastrowid or 0)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._conn.execute(sql, tuple(params)).fetchall()]

    def one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # --- datasets ------------------------------------------------------------------------

    def add_dataset(self, row: dict[str, Any]) -> None:
        self.execute(
            "INSERT INTO datasets (id, name, format, sha256, size, examples, classes, path, "
            "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row["id"], row["name"], row["format"], row["sha256"], row["size"], row["examples"],
             json.dumps(row["classes"]), row["path"], row["created_ms"]),
        )

    def dataset(self, dataset_id: str) -> dict[str, Any] | None:
        row = self.one("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
        if row is not None:
            row["classes"] = json.loads(row["classes"])
        return row

    def dataset_by_digest(self, sha256: str, fmt: str) -> dict[str, Any] | None:
        row = self.one("SELECT id FROM datasets WHERE sha256 = ? AND format = ?", (sha256, fmt))
        return self.dataset(row["id"]) if row else None

    def dataset_ids(self) -> set[str]:
        return {row["id"] for row in self.query("SELECT id FROM datasets")}

    def active_jobs_using(self, dataset_id: str) -> list[str]:
        rows = self.query(f"SELECT id FROM jobs WHERE dataset_id = ? AND state IN {_ACTIVE} "
                          "ORDER BY created_ms", (dataset_id,))
        return [row["id"] for row in rows]

    def delete_dataset_unless_used(self, dataset_id: str, unused_since: int | None = None
                                   ) -> bool:
        """Delete the dataset's row unless a queued or running job uses it (or, with
        `unused_since`, any job created or finished since then): one statement, so no job
        can start using it in between. True if it was deleted."""
        recent = "" if unused_since is None else " OR j.created_ms >= ? OR j.finished_ms >= ?"
        params: tuple[Any, ...] = (dataset_id, dataset_id)
        if unused_since is not None:
            params += (unused_since, unused_since)
        with self._lock:
            cursor = self._conn.execute(
                "DELETE FROM datasets WHERE id = ? AND NOT EXISTS (SELECT 1 FROM jobs j WHERE "
                f"j.dataset_id = ? AND (j.state IN {_ACTIVE}{recent}))", params)
            return cursor.rowcount > 0

    def datasets_unused_since(self, cutoff_ms: int) -> list[str]:
        """Datasets created before `cutoff_ms` that no job has used since: none queued or
        running, none created or finished after it."""
        rows = self.query(
            "SELECT d.id FROM datasets d WHERE d.created_ms < ? AND NOT EXISTS (SELECT 1 FROM "
            f"jobs j WHERE j.dataset_id = d.id AND (j.state IN {_ACTIVE} OR j.created_ms >= ? "
            "OR j.finished_ms >= ?)) ORDER BY d.created_ms", (cutoff_ms, cutoff_ms, cutoff_ms))
        return [row["id"] for row in rows]

    # --- jobs ------------------------------------------------------------------------------

    def add_job(self, row: dict[str, Any]) -> None:
        self.execute(
            "INSERT INTO jobs (id, state, base, dataset_id, output_name, hyperparameters, epochs, "
            "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row["id"], row["state"], row["base"], row["dataset_id"], row["output_name"],
             json.dumps(row["hyperparameters"]), row["epochs"], row["created_ms"]),
        )

    def job(self, job_id: str) -> dict[str, Any] | None:
        row = self.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _decode_job(row) if row else None

    def jobs(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if state is None:
            rows = self.query("SELECT * FROM jobs ORDER BY created_ms DESC, rowid DESC LIMIT ?",
                              (limit,))
        else:
            rows = self.query("SELECT * FROM jobs WHERE state = ? "
                              "ORDER BY created_ms DESC, rowid DESC LIMIT ?", (state, limit))
        return [_decode_job(row) for row in rows]

    def queued_jobs(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM jobs WHERE state = 'QUEUED' ORDER BY created_ms, rowid")
        return [_decode_job(row) for row in rows]

    def update_job(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        encoded = {k: json.dumps(v) if k in ("metrics", "hyperparameters") else v
                   for k, v in fields.items()}
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        self.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*encoded.values(), job_id))

    def job_counts(self) -> dict[str, int]:
        rows = self.query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    # --- events ----------------------------------------------------------------------------

    def add_event(self, job_id: str, data: dict[str, Any]) -> int:
        return self.execute("INSERT INTO events (job_id, time_ms, data) VALUES (?, ?, ?)",
                            (job_id, data.get("time_ms") or now_ms(), json.dumps(data)))

    def events(self, job_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        rows = self.query("SELECT seq, time_ms, data FROM events WHERE job_id = ? AND seq > ? "
                          "ORDER BY seq", (job_id, after))
        return [(row["seq"], {**json.loads(row["data"]), "time_ms": row["time_ms"]})
                for row in rows]


def _decode_job(row: dict[str, Any]) -> dict[str, Any]:
    row["hyperparameters"] = json.loads(row["hyperparameters"])
    row["metrics"] = json.loads(row["metrics"])
    return row
