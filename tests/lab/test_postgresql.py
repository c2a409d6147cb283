"""End to end on the lab: `toolkit converge postgresql` gives a primary and a streaming replica, and applies
changes the right way (reload when that is enough, restart replicas first when not) without losing a
committed transaction. Needs a profile with both postgresql-1 and postgresql-2 (minimal and full have them).
"""

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.toolkit_infra import reachable
from tests.lab.helpers import PROJECT, changed_on, converge_json, ensure_converged, on_host, parse_json, toolkit

pytestmark = pytest.mark.lab
PRIMARY = "postgresql-1"
REPLICA = "postgresql-2"
RESTART_TASK = "Restart PostgreSQL to apply the settings pending a restart."
RELOAD_TASK = "Reload the server so it applies every setting that needs no restart."


def psql(host: str, query: str) -> str:
    """A query as the postgres superuser on the host, out of band (podman exec, not Ansible)."""
    quoted = query.replace("'", "'\\''")
    result = on_host(host, f"cd / && runuser -u postgres -- psql -X -q -t -A -d postgres -c '{quoted}'")
    assert result.returncode == 0, f"{host}: {query}: {result.stderr}"
    return result.stdout.strip()


def started_at(host: str) -> str:
    return psql(host, "SELECT pg_postmaster_start_time()")


def converge(*args: str, extra: dict[str, Any] | None = None, tmp_path: Path | None = None) -> dict[str, Any]:
    return converge_json("postgresql", *args, extra=extra, tmp_path=tmp_path)


@pytest.fixture(scope="module")
def postgresql_lab(lab: Any) -> Iterator[Any]:
    if not {PRIMARY, REPLICA} <= set(lab.hosts):
        pytest.fail(f"the {lab.profile} profile has no PostgreSQL primary and replica")
    ensure_converged("base")
    yield lab


def test_converge_gives_a_primary_and_a_streaming_replica(postgresql_lab: Any) -> None:
    document = converge()
    assert document["_returncode"] == 0, document["_stderr"]
    assert set(document["hosts"]) == {PRIMARY, REPLICA}
    assert psql(PRIMARY, "SELECT application_name, state FROM pg_stat_replication") == "postgresql_2|streaming"
    assert psql(REPLICA, "SELECT pg_is_in_recovery()") == "t"


def test_second_converge_changes_nothing(postgresql_lab: Any) -> None:
    document = converge()
    assert document["_returncode"] == 0, document["_stderr"]
    assert document["changed_tasks"] == []
    assert document["totals"]["changed"] == 0


def test_verify_postgresql_passes_by_real_sql(postgresql_lab: Any) -> None:
    result = toolkit("verify", "postgresql", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = parse_json(result.stdout)["hosts"]
    assert set(verdicts) == {PRIMARY, REPLICA}
    assert all(verdict["failed"] == 0 and verdict["passed"] >= 10 for verdict in verdicts.values()), verdicts


def test_a_reload_only_change_restarts_nothing(postgresql_lab: Any, tmp_path: Path) -> None:
    before = {host: started_at(host) for host in (PRIMARY, REPLICA)}
    change = {"postgresql_settings": {"log_min_duration_statement": "250ms"}}
    try:
        document = converge(extra=change, tmp_path=tmp_path)
        assert document["_returncode"] == 0, document["_stderr"]
        assert sorted(changed_on(document, RELOAD_TASK)) == [PRIMARY, REPLICA]
        assert changed_on(document, RESTART_TASK) == []
        assert psql(PRIMARY, "SHOW log_min_duration_statement") == "250ms"
        assert {host: started_at(host) for host in (PRIMARY, REPLICA)} == before
    finally:
        assert converge()["_returncode"] == 0


def test_a_pending_restart_is_named_and_not_applied_when_restarts_are_not_allowed(
    postgresql_lab: Any, tmp_path: Path
) -> None:
    before = {host: started_at(host) for host in (PRIMARY, REPLICA)}
    change = {"postgresql_max_connections": 210, "postgresql_restart_allowed": False}
    try:
        document = converge(extra=change, tmp_path=tmp_path)
        assert document["_returncode"] == 0, document["_stderr"]
        assert changed_on(document, RESTART_TASK) == []
        pending = [note["message"] for note in document["notes"] if note["host"] == PRIMARY]
        assert any(f"PENDING RESTART on {PRIMARY}: max_connections" in message for message in pending), pending
        assert f"note        {PRIMARY} | PENDING RESTART" in document["_stderr"]
        assert psql(PRIMARY, "SHOW max_connections") != "210"
        assert {host: started_at(host) for host in (PRIMARY, REPLICA)} == before
    finally:
        assert converge()["_returncode"] == 0
    assert psql(PRIMARY, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_a_restart_under_writes_loses_no_committed_transaction(postgresql_lab: Any, tmp_path: Path) -> None:
    psql(PRIMARY, "CREATE TABLE IF NOT EXISTS toolkit_writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
    psql(PRIMARY, "TRUNCATE toolkit_writes")
    before = {host: started_at(host) for host in (PRIMARY, REPLICA)}
    # One transaction per psql call; an id is recorded only after psql saw its commit succeed. Failed calls
    # (the server restarting) are retried: the client keeps writing through the restart.
    writer = subprocess.Popen(
        [
            "podman",
            "exec",
            f"toolkit-lab-{PRIMARY}",
            "sh",
            "-c",
            "rm -f /tmp/acked /tmp/stop; cd /; while [ ! -e /tmp/stop ]; do "
            "id=$(runuser -u postgres -- psql -X -q -t -A -d postgres "
            "-c 'INSERT INTO toolkit_writes DEFAULT VALUES RETURNING id' 2>/dev/null) "
            "&& echo $id >> /tmp/acked || sleep 0.05; done",
        ],
        env=_podman_env(),
    )
    try:
        time.sleep(2)
        change = {"postgresql_max_connections": 220}
        document = converge(extra=change, tmp_path=tmp_path)
        time.sleep(2)
    finally:
        on_host(PRIMARY, "touch /tmp/stop")
        writer.wait(timeout=60)
    try:
        assert document["_returncode"] == 0, document["_stderr"]
        # Replica first, then the primary; and the human output names the restart.
        assert changed_on(document, RESTART_TASK) == [REPLICA, PRIMARY]
        applied = {note["host"]: note["message"] for note in document["notes"] if "Restarted" in note["message"]}
        assert applied == {
            host: f"Restarted PostgreSQL on {host} to apply: max_connections" for host in (REPLICA, PRIMARY)
        }
        assert f"{PRIMARY} | Restarted PostgreSQL on {PRIMARY} to apply: max_connections" in document["_stderr"]
        assert psql(PRIMARY, "SHOW max_connections") == "220"
        assert all(started_at(host) != before[host] for host in (PRIMARY, REPLICA))
        acked = {int(line) for line in on_host(PRIMARY, "cat /tmp/acked").stdout.split()}
        assert len(acked) > 20, "the writer barely wrote: the test proves nothing"
        on_primary = {int(row) for row in psql(PRIMARY, "SELECT id FROM toolkit_writes").split()}
        assert acked - on_primary == set(), "committed transactions missing on the primary"
        on_replica = _rows_on_replica_once_caught_up(len(on_primary))
        assert acked - on_replica == set(), "committed transactions missing on the replica"
    finally:
        reverted = converge()
    # Going back down, the primary restarts first: a standby refuses a lower max_connections than its primary.
    assert reverted["_returncode"] == 0, reverted["_stderr"]
    assert changed_on(reverted, RESTART_TASK) == [PRIMARY, REPLICA]
    assert psql(REPLICA, "SELECT status FROM pg_stat_wal_receiver") == "streaming"


def test_bad_input_fails_before_anything_changes(postgresql_lab: Any, tmp_path: Path) -> None:
    bad_rule = {"postgresql_hba_rules": [{"address": "10.0.0.0/8", "method": "md5"}]}
    document = converge(extra=bad_rule, tmp_path=tmp_path)
    assert document["_returncode"] != 0
    assert document["totals"]["changed"] == 0
    assert "md5" in json.dumps(document["failed_tasks"])

    bad_cidr = {"postgresql_hba_rules": [{"address": "10.0.0.300/8"}]}
    document = converge(extra=bad_cidr, tmp_path=tmp_path)
    assert document["_returncode"] != 0
    assert document["totals"]["changed"] == 0
    assert "10.0.0.300/8" in json.dumps(document["failed_tasks"])

    # Topology errors: two primaries, and a replica left without one.
    lab_inventory = yaml.safe_load((PROJECT / "inventories" / "lab" / "hosts.yml").read_text())
    two_primaries = json.loads(json.dumps(lab_inventory))
    groups = two_primaries["all"]["children"]["postgresql"]["children"]
    groups["postgresql_primary"]["hosts"].update(groups.pop("postgresql_replica")["hosts"])
    no_primary = json.loads(json.dumps(lab_inventory))
    del no_primary["all"]["children"]["postgresql"]["children"]["postgresql_primary"]
    for name, broken in (("two-primaries", two_primaries), ("no-primary", no_primary)):
        inventory = tmp_path / f"{name}.yml"
        inventory.write_text(yaml.safe_dump(broken))
        result = toolkit("converge", "postgresql", "--json", "-i", str(inventory))
        assert result.returncode != 0, name
        document = parse_json(result.stdout)
        assert document["totals"]["changed"] == 0, name
        assert "exactly one PostgreSQL primary" in json.dumps(document["failed_tasks"]), name
    assert psql(REPLICA, "SELECT pg_is_in_recovery()") == "t"


def test_the_firewall_admits_listed_clients_and_drops_the_rest(postgresql_lab: Any, tmp_path: Path) -> None:
    """With the hardening firewall on, 5432 and 9187 answer from the listed networks only; peers still stream."""
    firewall = toolkit("converge", "hardening", "--limit", "postgresql", "--tags", "hardening_firewall", "--json")
    assert firewall.returncode == 0, firewall.stderr
    assert on_host(PRIMARY, "systemctl is-active nftables").stdout.strip() == "active"
    # The replica streams across the new ruleset before verify times replication: a fresh-clone run saw a row
    # reach it 3.2 s after commit right after this converge (verify's bound is 1 s); whether loading the
    # ruleset stalls the stream is an open question (issue 4's note), not what this test is about.
    psql(PRIMARY, "CREATE TABLE IF NOT EXISTS toolkit_firewall (marker text)")
    psql(PRIMARY, f"INSERT INTO toolkit_firewall VALUES ('{uuid.uuid4().hex}')")
    written = psql(PRIMARY, "SELECT pg_current_wal_lsn()")
    assert _eventually(lambda: psql(REPLICA, f"SELECT (pg_last_wal_replay_lsn() >= '{written}'::pg_lsn)::int"))
    # The lab's rules admit the lab network, where this controller is the gateway.
    verify = toolkit("verify", "postgresql", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    address = lab_address(PRIMARY)
    assert {port: reachable(address, port) for port in (5432, 9187)} == {5432: True, 9187: True}

    # Admit one address that is not this controller's: the controller is dropped, the replica still streams.
    narrow = {
        "postgresql_hba_rules": [{"address": "10.242.10.254/32", "comment": "one other client"}],
        "postgresql_firewall_metrics_sources": [],
    }
    try:
        document = converge(extra=narrow, tmp_path=tmp_path)
        assert document["_returncode"] == 0, document["_stderr"]
        assert {port: reachable(address, port) for port in (5432, 9187)} == {5432: False, 9187: False}
        marker = uuid.uuid4().hex
        psql(PRIMARY, "CREATE TABLE IF NOT EXISTS toolkit_firewall (marker text)")
        psql(PRIMARY, f"INSERT INTO toolkit_firewall VALUES ('{marker}')")
        assert _eventually(lambda: psql(REPLICA, f"SELECT count(*) FROM toolkit_firewall WHERE marker = '{marker}'"))
        assert psql(REPLICA, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    finally:
        reverted = converge()
    assert reverted["_returncode"] == 0, reverted["_stderr"]
    assert {port: reachable(address, port) for port in (5432, 9187)} == {5432: True, 9187: True}


def lab_address(host: str) -> str:
    """The host's address on the lab network, from the inventory `toolkit lab up` wrote."""

    def find(node: Any) -> str | None:
        if isinstance(node, dict):
            hosts = node.get("hosts") or {}
            if host in hosts:
                return str(hosts[host]["ansible_host"])
            for child in (node.get("children") or {}).values():
                found = find(child)
                if found:
                    return found
        return None

    inventory = yaml.safe_load((PROJECT / "inventories" / "lab" / "hosts.yml").read_text())
    address = find(inventory["all"])
    assert address, f"{host} is not in the lab inventory"
    return address


def _eventually(check: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check() == "1":
            return True
        time.sleep(0.2)
    return False


def _rows_on_replica_once_caught_up(expected: int) -> set[int]:
    deadline = time.monotonic() + 30
    rows: set[int] = set()
    while time.monotonic() < deadline:
        rows = {int(row) for row in psql(REPLICA, "SELECT id FROM toolkit_writes").split()}
        if len(rows) >= expected:
            break
        time.sleep(0.5)
    return rows


def _podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(PROJECT / ".toolkit" / "lab" / "containers.conf")}
