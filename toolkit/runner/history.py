"""Run history in a small embedded SQLite database (``toolkit runs``; drift and metrics read it too).

A row is written when a run starts and completed when it ends, so a run killed half-way still
shows up (as ``running`` with a dead pid, reported as ``abandoned``).
"""

import getpass
import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.runner.result import RunResult

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,          -- converge | verify | drift | ...
    target       TEXT NOT NULL,          -- service or playbook name
    inventory    TEXT NOT NULL,
    limit_expr   TEXT,
    check_mode   INTEGER NOT NULL DEFAULT 0,
    user         TEXT NOT NULL,
    controller   TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,          -- ISO 8601, UTC
    finished_at  TEXT,
    duration     REAL,
    status       TEXT NOT NULL,          -- running | successful | failed | canceled | ...
    exit_code    INTEGER,
    hosts        INTEGER,
    ok           INTEGER,
    changed      INTEGER,
    failed       INTEGER,
    unreachable  INTEGER,
    artifacts    TEXT,
    note         TEXT,                   -- a reason given by the user (overrides), or the error
    detail       TEXT                    -- JSON: the run's --json document
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
"""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    kind: str
    target: str
    inventory: str
    limit_expr: str | None
    check_mode: bool
    user: str
    controller: str
    pid: int
    started_at: str
    finished_at: str | None
    duration: float | None
    status: str
    exit_code: int | None
    hosts: int | None
    ok: int | None
    changed: int | None
    failed: int | None
    unreachable: int | None
    artifacts: str | None
    note: str | None
    detail: dict[str, Any] | None

    @property
    def effective_status(self) -> str:
        """``running`` rows whose process is gone on this controller were cut short."""
        if self.status == "running" and self.controller == socket.gethostname() and not process_alive(self.pid):
            return "abandoned"
        return self.status

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["status"] = self.effective_status
        return data


def process_alive(pid: int) -> bool:
    """Whether a process of this controller still runs (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def open_database(path: Path) -> Iterator[sqlite3.Connection]:
    """The state database (rows as sqlite3.Row); other stores (drift) keep their tables in it too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=10)) as db:
        db.row_factory = sqlite3.Row
        yield db


class History:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with open_database(self.path) as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            with db:
                yield db

    def record_start(
        self,
        *,
        run_id: str,
        kind: str,
        target: str,
        inventory: str,
        limit: str | None,
        check: bool,
        started_at: str,
        artifacts: str | None,
        note: str | None = None,
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, kind, target, inventory, limit_expr, check_mode, user, controller,"
                " pid, started_at, status, artifacts, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    kind,
                    target,
                    inventory,
                    limit,
                    int(check),
                    _user(),
                    socket.gethostname(),
                    os.getpid(),
                    started_at,
                    "running",
                    artifacts,
                    note,
                ),
            )

    def record_finish(self, result: RunResult, finished_at: str) -> None:
        totals = result.totals()
        self.finish(
            result.run_id,
            finished_at=finished_at,
            duration=result.duration,
            status=result.status,
            exit_code=int(result.exit_code),
            counts=(len(result.hosts), totals.ok, totals.changed, totals.failed, len(result.unreachable_hosts())),
            detail=result.to_dict(),
            error=result.error,
        )

    def finish(
        self,
        run_id: str,
        *,
        finished_at: str,
        duration: float,
        status: str,
        exit_code: int,
        counts: tuple[int, int, int, int, int],
        detail: dict[str, Any],
        error: str = "",
    ) -> None:
        """Complete a run's row. ``counts``: hosts, ok, changed, failed, unreachable hosts."""
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET finished_at=?, duration=?, status=?, exit_code=?, hosts=?, ok=?, changed=?,"
                " failed=?, unreachable=?, detail=?, note=COALESCE(note, ?) WHERE run_id=?",
                (finished_at, duration, status, exit_code, *counts, json.dumps(detail), error or None, run_id),
            )

    def amend(self, run_id: str, *, exit_code: int, detail: dict[str, Any]) -> None:
        """Replace a finished run's verdict (drift: exit 3 and the drift report, not the check run's 0)."""
        with self._connect() as db:
            db.execute("UPDATE runs SET exit_code=?, detail=? WHERE run_id=?", (exit_code, json.dumps(detail), run_id))

    def started_since(self, started_at: str) -> list[RunRecord]:
        """Every run started at or after an ISO 8601 UTC time, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE started_at >= ? ORDER BY started_at, run_id", (started_at,)
            ).fetchall()
        return [_record(row) for row in rows]

    def list(self, *, limit: int = 20, kind: str | None = None) -> list[RunRecord]:
        query = "SELECT * FROM runs"
        params: tuple[Any, ...] = ()
        if kind:
            query += " WHERE kind = ?"
            params = (kind,)
        query += " ORDER BY started_at DESC, run_id DESC LIMIT ?"
        with self._connect() as db:
            return [_record(row) for row in db.execute(query, (*params, limit))]

    def get(self, run_id: str) -> RunRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:  # accept a unique prefix, as git does for commits
                # substr, not LIKE: LIKE ignores case and reads _ and % as wildcards.
                rows = db.execute("SELECT * FROM runs WHERE substr(run_id, 1, ?) = ?", (len(run_id), run_id)).fetchall()
                row = rows[0] if len(rows) == 1 else None
            return _record(row) if row else None

    def active_run_ids(self) -> set[str]:
        """Runs still going (their process is alive, or they run on another controller)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM runs WHERE status = 'running'").fetchall()
        return {record.run_id for record in map(_record, rows) if record.effective_status == "running"}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _record(row: sqlite3.Row) -> RunRecord:
    data = dict(row)
    data["check_mode"] = bool(data["check_mode"])
    data["detail"] = json.loads(data["detail"]) if data["detail"] else None
    return RunRecord(**data)
