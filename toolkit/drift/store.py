"""Drift history: every drifted resource with when it was first and last seen and when it was resolved.

Kept in the same SQLite database as ``toolkit runs`` (each drift run is a row of ``runs`` too). A
resource is open while drift runs keep finding it; it is resolved by the first run that checked its
host and service to the end without finding it (a converge, ``--remediate``, or a fix by hand), or
when an ignore entry starts to cover it.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.drift.report import DriftReport
from toolkit.runner.history import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drift_resources (
    id            INTEGER PRIMARY KEY,
    inventory     TEXT NOT NULL,
    host          TEXT NOT NULL,
    service       TEXT NOT NULL,
    task          TEXT NOT NULL,          -- "role : task"
    item          TEXT NOT NULL DEFAULT '',
    action        TEXT NOT NULL,
    diff          TEXT NOT NULL DEFAULT '', -- the latest (redacted) diff
    first_seen    TEXT NOT NULL,          -- ISO 8601, UTC
    first_run     TEXT NOT NULL,
    last_seen     TEXT NOT NULL,
    last_run      TEXT NOT NULL,
    resolved_at   TEXT,
    resolved_run  TEXT,
    resolution    TEXT                    -- remediated | no longer drifts | ignored
);
CREATE INDEX IF NOT EXISTS drift_open ON drift_resources (inventory, host, resolved_at);
"""

REMEDIATED = "remediated"
GONE = "no longer drifts"
IGNORED = "ignored"


@dataclass(frozen=True)
class DriftRecord:
    id: int
    inventory: str
    host: str
    service: str
    task: str
    item: str
    action: str
    diff: str
    first_seen: str
    first_run: str
    last_seen: str
    last_run: str
    resolved_at: str | None
    resolved_run: str | None
    resolution: str | None

    @property
    def label(self) -> str:
        return f"{self.task} [{self.item}]" if self.item else self.task

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class DriftStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with open_database(self.path) as db:
            db.executescript(_SCHEMA)
            with db:
                yield db

    def record(self, report: DriftReport, inventory: str, now: str, *, remediated: bool = False) -> None:
        """Open or refresh each drifted resource; resolve open ones the run checked and did not find.

        Fills ``report.first_seen``.
        """
        run_id = report.run.run_id
        current = {r.key for r in report.drift}
        ignored = {r.key for r, _ in report.triage.ignored}
        checked = set(report.checked_hosts)
        with self._connect() as db:
            for resource in report.drift:
                row = db.execute(
                    "SELECT id, first_seen FROM drift_resources WHERE inventory=? AND host=? AND service=? AND task=?"
                    " AND item=? AND resolved_at IS NULL",
                    (inventory, *resource.key),
                ).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO drift_resources (inventory, host, service, task, item, action, diff, first_seen,"
                        " first_run, last_seen, last_run) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (inventory, *resource.key, resource.action, resource.diff, now, run_id, now, run_id),
                    )
                    report.first_seen[resource.key] = now
                else:
                    db.execute(
                        "UPDATE drift_resources SET last_seen=?, last_run=?, diff=?, action=? WHERE id=?",
                        (now, run_id, resource.diff, resource.action, row["id"]),
                    )
                    report.first_seen[resource.key] = row["first_seen"]
            open_rows = db.execute(
                "SELECT * FROM drift_resources WHERE inventory=? AND resolved_at IS NULL", (inventory,)
            ).fetchall()
            for row in open_rows:
                key = (row["host"], row["service"], row["task"], row["item"])
                if key in current or row["host"] not in checked or row["service"] not in report.services:
                    continue
                resolution = IGNORED if key in ignored else (REMEDIATED if remediated else GONE)
                db.execute(
                    "UPDATE drift_resources SET resolved_at=?, resolved_run=?, resolution=? WHERE id=?",
                    (now, run_id, resolution, row["id"]),
                )

    def open_or_resolved_since(self, since: str) -> list[DriftRecord]:
        """Resources still drifting, and those resolved at or after an ISO 8601 UTC time."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM drift_resources WHERE resolved_at IS NULL OR resolved_at >= ?", (since,)
            ).fetchall()
        return [DriftRecord(**dict(row)) for row in rows]

    def history(
        self, *, inventory: str | None = None, host: str | None = None, open_only: bool = False, limit: int = 100
    ) -> list[DriftRecord]:
        """Resources newest first (by last seen)."""
        clauses: list[str] = []
        params: list[Any] = []
        if inventory:
            clauses.append("inventory = ?")
            params.append(inventory)
        if host:
            clauses.append("host = ?")
            params.append(host)
        if open_only:
            clauses.append("resolved_at IS NULL")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT * FROM drift_resources{where} ORDER BY COALESCE(resolved_at, last_seen) DESC, id DESC LIMIT ?"
        with self._connect() as db:
            return [DriftRecord(**dict(row)) for row in db.execute(query, (*params, limit))]
