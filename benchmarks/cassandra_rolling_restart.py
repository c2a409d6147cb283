#!/usr/bin/env python3
"""Writes at QUORUM without pause while a command (by default a converge) restarts a Cassandra cluster.

A client writes rows, one at a time, at QUORUM to a keyspace replicated three times (min(3, nodes) per DC),
bounded by a count and a time; meanwhile the command runs. Afterwards every acknowledged row is read back
at QUORUM. It prints writes attempted, acknowledged and failed, acknowledged rows missing, and the restart
timeline as the client saw it (each node going down and coming back, from the driver's host events).

Usage:
  benchmarks/cassandra_rolling_restart.py --hosts 10.242.10.11,10.242.10.12,10.242.10.13 \\
      --password-file .toolkit/lab/secrets/cassandra-superuser [--json] -- toolkit converge cassandra -e ...
Without a command after `--`, it runs `toolkit converge cassandra -e cassandra_concurrent_reads=48`.
Exit status: 0 when no write failed and no acknowledged row is missing, 1 otherwise, 2 on bad usage.
Traffic goes only to the given hosts (the lab's, on its private network).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
KEYSPACE = "toolkit_bench"
DEFAULT_COMMAND = [str(Path(sys.executable).parent / "toolkit"), "converge", "cassandra", "--json",
                   "-e", "cassandra_concurrent_reads=48"]  # fmt: skip


@dataclass
class Tally:
    attempted: int = 0
    acknowledged: list[uuid.UUID] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)


def connect(hosts: list[str], user: str, password: str) -> Any:
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=10)
    cluster = Cluster(
        hosts,
        auth_provider=PlainTextAuthProvider(username=user, password=password),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=10,
    )
    return cluster, cluster.connect()


class Timeline:
    """The driver's view of nodes going down and up (cassandra.policies.HostStateListener's interface)."""

    def __init__(self, tally: Tally, start: float) -> None:
        self.tally, self.start = tally, start

    def _record(self, host: Any, what: str) -> None:
        self.tally.events.append((time.monotonic() - self.start, str(host.endpoint.address), what))

    def on_up(self, host: Any) -> None:
        self._record(host, "up")

    def on_down(self, host: Any) -> None:
        self._record(host, "down")

    def on_add(self, host: Any) -> None:
        self._record(host, "added")

    def on_remove(self, host: Any) -> None:
        self._record(host, "removed")


def prepare_schema(session: Any) -> None:
    dcs: dict[str, int] = {}
    for row in list(session.execute("SELECT data_center FROM system.local")) + list(
        session.execute("SELECT data_center FROM system.peers")
    ):
        dcs[row.data_center] = dcs.get(row.data_center, 0) + 1
    replication = ", ".join(f"'{dc}': {min(3, n)}" for dc, n in sorted(dcs.items()))
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} "
        f"WITH replication = {{'class': 'NetworkTopologyStrategy', {replication}}}"
    )
    session.execute(f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.writes (id uuid PRIMARY KEY, seq int, at timestamp)")
    session.execute(f"TRUNCATE {KEYSPACE}.writes")


def write_until(session: Any, tally: Tally, stop: threading.Event, max_writes: int, deadline: float) -> None:
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    insert = SimpleStatement(
        f"INSERT INTO {KEYSPACE}.writes (id, seq, at) VALUES (%s, %s, toTimestamp(now()))",
        consistency_level=ConsistencyLevel.QUORUM,
        # The same row written twice is the same row: the driver may retry it on another node.
        is_idempotent=True,
    )
    while not stop.is_set() and tally.attempted < max_writes and time.monotonic() < deadline:
        row_id = uuid.uuid4()
        tally.attempted += 1
        try:
            session.execute(insert, (row_id, tally.attempted))
            tally.acknowledged.append(row_id)
        except Exception as exc:  # every failure is the result being measured
            tally.failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        time.sleep(0.005)


def missing_rows(session: Any, acknowledged: list[uuid.UUID]) -> list[uuid.UUID]:
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    select = SimpleStatement(
        f"SELECT id FROM {KEYSPACE}.writes", consistency_level=ConsistencyLevel.QUORUM, fetch_size=5000
    )
    stored = {row.id for row in session.execute(select, timeout=120)}
    return [row_id for row_id in acknowledged if row_id not in stored]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", required=True, help="comma-separated node addresses")
    parser.add_argument("--user", default="toolkit_admin")
    parser.add_argument("--password-file", required=True, type=Path)
    parser.add_argument("--max-writes", type=int, default=200_000)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a report")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run while writing")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    command = command or DEFAULT_COMMAND
    if not args.password_file.is_file():
        parser.error(f"no password file {args.password_file}")
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]

    cluster, session = connect(hosts, args.user, args.password_file.read_text().strip())
    prepare_schema(session)
    tally, stop = Tally(), threading.Event()
    start = time.monotonic()
    cluster.register_listener(Timeline(tally, start))
    writer = threading.Thread(
        target=write_until, args=(session, tally, stop, args.max_writes, start + args.max_seconds), daemon=True
    )
    writer.start()
    time.sleep(2)  # writes are flowing before anything restarts
    run = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False)
    time.sleep(2)  # and still flowing after the last node is back
    stop.set()
    writer.join(timeout=30)
    elapsed = time.monotonic() - start
    missing = missing_rows(session, tally.acknowledged)
    cluster.shutdown()

    result = {
        "command": command,
        "command_exit": run.returncode,
        "seconds": round(elapsed, 1),
        "writes_attempted": tally.attempted,
        "writes_acknowledged": len(tally.acknowledged),
        "writes_failed": len(tally.failures),
        "failures": tally.failures[:20],
        "acknowledged_missing": len(missing),
        "timeline": [{"at": round(t, 1), "node": node, "event": what} for t, node, what in tally.events],
        "command_stdout": run.stdout,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"command: {' '.join(command)} -> exit {run.returncode} ({elapsed:.1f} s of writing)")
        print(
            f"writes attempted {tally.attempted}, acknowledged {len(tally.acknowledged)}, "
            f"failed {len(tally.failures)}; "
            f"acknowledged rows missing afterwards: {len(missing)}"
        )
        for failure in tally.failures[:5]:
            print(f"  failure: {failure}")
        print("restart timeline (seconds since the writer started, as the client saw it):")
        for t, node, what in tally.events:
            print(f"  {t:7.1f}  {node:<16} {what}")
    return 0 if not tally.failures and not missing and run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
