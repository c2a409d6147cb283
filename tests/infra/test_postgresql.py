"""The postgresql role's behaviour, checked by real SQL and real connections, not by reading its files.

Runs unchanged on the molecule pair (`molecule test -s postgresql`) and on a live fleet
(`toolkit verify postgresql`). Expected values are each host's inventory variables over the role's defaults
(tests/infra/toolkit_infra.py). Checks that span hosts (replication) run from the primary.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import time
import uuid
from typing import Any

import pytest
from ansible.errors import AnsibleUndefinedVariable
from toolkit_infra import (
    Network,
    address_of,
    assert_kernel_matches,
    controller_address,
    covers,
    default_route_address,
    expected_vars,
    firewall_state,
    inventory_variables,
    nft_sources,
    other_host,
    reachable,
)

ROLE = "postgresql"
ALLOWED_METHODS = {"scram-sha-256", "peer", "reject"}


@pytest.fixture(scope="module")
def pg(host: Any) -> dict[str, Any]:
    return expected_vars(host, ROLE)


@pytest.fixture(scope="module")
def topology(host: Any, pg: dict[str, Any]) -> dict[str, Any]:
    variables = inventory_variables(host)
    groups = variables.get("groups", {})
    primaries = list(groups.get(pg["postgresql_primary_group"], []))
    replicas = list(groups.get(pg["postgresql_replica_group"], []))
    name = variables["inventory_hostname"]
    return {"name": name, "primaries": primaries, "replicas": replicas, "is_primary": name in primaries}


@pytest.fixture(autouse=True)
def _only_postgresql_hosts(topology: dict[str, Any]) -> None:
    # `toolkit verify site` runs every suite on every host; this one has nothing to say about the others.
    if topology["name"] not in topology["primaries"] + topology["replicas"]:
        pytest.skip(f"{topology['name']} is not a PostgreSQL host")


def sql(host: Any, pg: dict[str, Any], query: str, database: str = "postgres") -> str:
    """Run a query as the postgres superuser over the local socket; rows as psql -tA prints them."""
    command = (
        f"sudo -u postgres psql -X -q -t -A -v ON_ERROR_STOP=1 -p {int(pg['postgresql_port'])} "
        f"-d {shlex.quote(database)} -c {shlex.quote(query)}"
    )
    return str(host.check_output(command))


def slot_name(inventory_name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", inventory_name.lower())


# --- the server -----------------------------------------------------------------------------------------


def test_server_is_enabled_running_and_answers(host: Any, pg: dict[str, Any]) -> None:
    service = host.service(f"postgresql@{pg['postgresql_version']}-{pg['postgresql_cluster_name']}")
    assert service.is_enabled
    assert service.is_running
    assert sql(host, pg, "SELECT 1 + 1") == "2"
    assert sql(host, pg, "SHOW server_version").split(".")[0] == str(pg["postgresql_version"])


def test_server_listens_on_its_port(host: Any, pg: dict[str, Any]) -> None:
    assert host.socket(f"tcp://0.0.0.0:{pg['postgresql_port']}").is_listening


def test_settings_from_variables_are_in_effect(host: Any, pg: dict[str, Any]) -> None:
    assert sql(host, pg, "SHOW max_connections") == str(pg["postgresql_max_connections"])
    assert sql(host, pg, "SHOW password_encryption") == "scram-sha-256"
    assert sql(host, pg, "SHOW ssl") == ("on" if pg["postgresql_tls_enabled"] else "off")
    for name in pg["postgresql_settings"]:
        source = sql(host, pg, f"SELECT sourcefile FROM pg_settings WHERE name = '{name}'")
        assert source.endswith("/postgresql.conf"), f"{name} is not set from postgresql.conf ({source or 'unknown'})"
    # Nothing in the configuration files is in error, and nothing set by ALTER SYSTEM overrides the role.
    assert sql(host, pg, "SELECT count(*) FROM pg_file_settings WHERE error IS NOT NULL") == "0"
    assert sql(host, pg, "SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%auto.conf'") == "0"


def test_shared_buffers_follow_the_memory_formula(host: Any, pg: dict[str, Any]) -> None:
    if "shared_buffers" in pg["postgresql_settings"]:
        pytest.skip("shared_buffers is set explicitly")
    try:
        memory = int(pg["postgresql_memory_mb"])
    except AnsibleUndefinedVariable:  # the default reads the host's facts, which only a play has
        memory = int(host.check_output("awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo"))
    expected_mb = max(int(memory * pg["postgresql_shared_buffers_ratio"]), 128)
    # pg_settings reports shared_buffers in 8 kB pages.
    assert int(sql(host, pg, "SELECT setting FROM pg_settings WHERE name = 'shared_buffers'")) * 8 // 1024 == (
        expected_mb
    )


def test_no_setting_waits_for_a_restart_when_restarts_are_allowed(host: Any, pg: dict[str, Any]) -> None:
    if not pg["postgresql_restart_allowed"]:
        pytest.skip("postgresql_restart_allowed is false: pending restarts are reported, not applied")
    assert sql(host, pg, "SELECT string_agg(name, ', ') FROM pg_settings WHERE pending_restart") == ""


# --- authentication and TLS -----------------------------------------------------------------------------


def test_every_hba_rule_uses_scram_peer_or_reject(host: Any, pg: dict[str, Any]) -> None:
    methods = set(sql(host, pg, "SELECT DISTINCT auth_method FROM pg_hba_file_rules").splitlines())
    assert methods <= ALLOWED_METHODS, f"unexpected methods: {sorted(methods - ALLOWED_METHODS)}"
    assert sql(host, pg, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"
    peer_rules = sql(host, pg, "SELECT DISTINCT type FROM pg_hba_file_rules WHERE auth_method = 'peer'")
    assert peer_rules in ("", "local"), "peer authentication is allowed over TCP"


def test_tcp_logins_need_tls_and_a_password(host: Any, pg: dict[str, Any]) -> None:
    if not pg["postgresql_tls_enabled"]:
        pytest.skip("postgresql_tls_enabled is false")
    address = host.check_output("hostname -I").split()[0]
    port = int(pg["postgresql_port"])
    base = f"host={address} port={port} dbname=postgres user=postgres connect_timeout=5"
    without_password = host.run(f"PGPASSWORD= psql -X -w {shlex.quote(base + ' sslmode=require')} -c 'SELECT 1'")
    assert without_password.rc != 0
    assert "password" in without_password.stderr or "no pg_hba.conf entry" in without_password.stderr
    plain = host.run(f"psql -X -w {shlex.quote(base + ' sslmode=disable')} -c 'SELECT 1'")
    assert plain.rc != 0, "an unencrypted TCP login was accepted"


def test_server_speaks_tls_1_2_or_newer(host: Any, pg: dict[str, Any]) -> None:
    if not pg["postgresql_tls_enabled"]:
        pytest.skip("postgresql_tls_enabled is false")
    # PostgreSQL's SSLRequest (length 8, code 80877103), then a TLS handshake on the same socket.
    probe = (
        "import socket, ssl, struct\n"
        f"s = socket.create_connection(('127.0.0.1', {int(pg['postgresql_port'])}), timeout=5)\n"
        "s.sendall(struct.pack('!ii', 8, 80877103))\n"
        "assert s.recv(1) == b'S', 'server refused TLS'\n"
        "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
        "print(ctx.wrap_socket(s).version())\n"
    )
    version = host.check_output(f"python3 -c {shlex.quote(probe)}")
    assert version in ("TLSv1.2", "TLSv1.3")


# --- replication ----------------------------------------------------------------------------------------


def test_host_is_in_recovery_exactly_when_it_is_a_replica(host: Any, pg: dict[str, Any], topology: Any) -> None:
    assert sql(host, pg, "SELECT pg_is_in_recovery()") == ("f" if topology["is_primary"] else "t")


def test_replica_streams_from_the_primary_through_its_slot(host: Any, pg: dict[str, Any], topology: Any) -> None:
    if topology["is_primary"]:
        pytest.skip("checked on replicas")
    assert sql(host, pg, "SELECT status, slot_name FROM pg_stat_wal_receiver") == (
        f"streaming|{slot_name(topology['name'])}"
    )


def test_primary_streams_to_every_replica(host: Any, pg: dict[str, Any], topology: Any) -> None:
    if not topology["is_primary"]:
        pytest.skip("checked on the primary")
    streaming = sql(host, pg, "SELECT application_name, state FROM pg_stat_replication ORDER BY 1")
    expected = sorted(f"{slot_name(name)}|streaming" for name in topology["replicas"])
    assert sorted(streaming.splitlines()) == expected
    active = sql(host, pg, "SELECT slot_name FROM pg_replication_slots WHERE active ORDER BY 1").splitlines()
    assert sorted(active) == sorted(slot_name(name) for name in topology["replicas"])


def test_a_row_written_on_the_primary_is_read_on_every_replica_within_a_second(
    host: Any, pg: dict[str, Any], topology: Any
) -> None:
    if not topology["is_primary"] or not topology["replicas"]:
        pytest.skip("runs on a primary that has replicas")
    sql(host, pg, "CREATE TABLE IF NOT EXISTS toolkit_verify (marker text PRIMARY KEY, written_at timestamptz)")
    replicas = [other_host(host, name) for name in topology["replicas"]]
    marker = uuid.uuid4().hex
    # Each replica watches for the row from inside one session (a fresh snapshot per check) and reports how
    # long after the primary's commit it became visible: the lag is measured on the hosts, not through the
    # controller's per-command latency. Both hosts read the same clock source (one kernel, or NTP). A watcher
    # says `ready` once its session runs; the row is written only after every watcher has, or a slow start
    # (sudo and psql on a loaded host) would be counted as replication lag.
    watch = (
        "DO $$ DECLARE lag interval; BEGIN RAISE NOTICE 'ready'; "
        "FOR i IN 1..3000 LOOP "
        f"SELECT clock_timestamp() - written_at INTO lag FROM toolkit_verify WHERE marker = '{marker}'; "
        "IF FOUND THEN RAISE NOTICE 'lag=%', extract(epoch FROM lag); RETURN; END IF; "
        "PERFORM pg_sleep(0.01); END LOOP; RAISE NOTICE 'lag=never'; END $$"
    )
    output = f"/tmp/toolkit-verify-{marker}"
    for replica in replicas:
        _wait_for_table(replica, pg)
        replica.check_output(
            f"setsid nohup sudo -u postgres psql -X -q -p {int(pg['postgresql_port'])} -d postgres "
            f"-c {shlex.quote(watch)} >{output} 2>&1 </dev/null &"
        )
    for name, replica in zip(topology["replicas"], replicas, strict=True):
        assert "ready" in _wait_for_output(replica, output, "ready"), f"{name}: the watcher never started"
    sql(host, pg, f"INSERT INTO toolkit_verify VALUES ('{marker}', clock_timestamp())")
    for name, replica in zip(topology["replicas"], replicas, strict=True):
        report = _wait_for_output(replica, output, "lag=")
        replica.run(f"rm -f {output}")
        assert "lag=" in report, f"{name}: {report}"
        lag = report.split("lag=", 1)[1].split()[0]
        assert lag != "never", f"{name} never saw the row"
        assert float(lag) < 1.0, f"{name} saw the row {lag} s after the primary's commit"
        assert sql(replica, pg, f"SELECT count(*) FROM toolkit_verify WHERE marker = '{marker}'") == "1"
    sql(host, pg, f"DELETE FROM toolkit_verify WHERE marker = '{marker}'")


def _wait_for_table(replica: Any, pg: dict[str, Any]) -> None:
    for _ in range(30):
        if sql(replica, pg, "SELECT to_regclass('public.toolkit_verify') IS NOT NULL") == "t":
            return
        time.sleep(1)
    raise AssertionError("the table created on the primary never reached the replica")


def _wait_for_output(replica: Any, output: str, word: str) -> str:
    for _ in range(60):
        report = str(replica.run(f"cat {output}").stdout)
        if word in report:
            return report
        time.sleep(0.5)
    return str(replica.run(f"cat {output}").stdout)


# --- roles, databases and the exporter ------------------------------------------------------------------


def test_users_and_databases_exist_as_declared(host: Any, pg: dict[str, Any]) -> None:
    roles = set(sql(host, pg, "SELECT rolname FROM pg_roles").splitlines())
    for user in pg["postgresql_users"]:
        assert (user["name"] in roles) == (user.get("state", "present") == "present"), user["name"]
    owners = dict(
        line.split("|")
        for line in sql(host, pg, "SELECT datname, pg_get_userbyid(datdba) FROM pg_database").splitlines()
    )
    for database in pg["postgresql_databases"]:
        if database.get("state", "present") == "absent":
            assert database["name"] not in owners
            continue
        assert owners.get(database["name"]) == database.get("owner", "postgres"), database["name"]
    for extension in pg["postgresql_extensions"]:
        found = sql(
            host, pg, f"SELECT count(*) FROM pg_extension WHERE extname = '{extension['name']}'", extension["database"]
        )
        assert found == "1", f"extension {extension['name']} missing in {extension['database']}"


def test_exporter_reports_the_server_up_as_a_monitoring_only_role(host: Any, pg: dict[str, Any]) -> None:
    if not pg["postgresql_exporter_enabled"]:
        pytest.skip("postgresql_exporter_enabled is false")
    assert host.service("prometheus-postgres-exporter").is_running
    port = pg["postgresql_exporter_listen_address"].rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{port}/metrics"
    fetch = f"import urllib.request; print(urllib.request.urlopen('{url}', timeout=5).read().decode())"
    metrics = ""
    for _ in range(10):  # the exporter may still be connecting right after a restart
        metrics = host.check_output(f"python3 -c {shlex.quote(fetch)}")
        if "\npg_up 1" in "\n" + metrics:
            break
        time.sleep(1)
    assert "\npg_up 1" in "\n" + metrics
    user = pg["postgresql_exporter_user"]
    attributes = sql(host, pg, f"SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = '{user}'")
    assert attributes == "f|f|f"
    assert sql(host, pg, f"SELECT pg_has_role('{user}', 'pg_monitor', 'member')") == "t"


# --- the firewall ---------------------------------------------------------------------------------------

RULES_FILE = "/etc/nftables.d/postgresql.nft"


@pytest.fixture(scope="module")
def firewall(host: Any, pg: dict[str, Any]) -> dict[str, Any]:
    """The role's rules file and, when the hardening firewall runs, the kernel's live ruleset."""
    if not pg["postgresql_firewall_enabled"]:
        pytest.skip("postgresql_firewall_enabled is false")
    return firewall_state(host, RULES_FILE)


def expected_client_sources(host: Any, pg: dict[str, Any], topology: dict[str, Any]) -> list[Network]:
    """pg_hba's networks that may log in over TCP, every cluster member's address, and the extra sources."""
    sources = [
        ipaddress.ip_network(rule["address"], strict=False)
        for rule in pg["postgresql_hba_rules"]
        if rule.get("type", "hostssl") in ("host", "hostssl")
        and rule.get("method", "scram-sha-256") != "reject"
        and rule["address"] not in ("samehost", "samenet")
    ]
    for name in topology["primaries"] + topology["replicas"]:
        member = other_host(host, name)
        configured = inventory_variables(member).get("postgresql_address")
        sources.append(ipaddress.ip_network(configured or default_route_address(member)))
    sources += [ipaddress.ip_network(s, strict=False) for s in pg["postgresql_firewall_client_sources"]]
    return sorted(set(sources), key=str)


def exporter_port(pg: dict[str, Any]) -> int:
    return int(pg["postgresql_exporter_listen_address"].rsplit(":", 1)[1])


def test_the_server_port_is_open_to_its_clients_and_peers_only(
    host: Any, pg: dict[str, Any], topology: dict[str, Any], firewall: dict[str, Any]
) -> None:
    port, comment = int(pg["postgresql_port"]), "postgresql: clients and replication"
    expected = expected_client_sources(host, pg, topology)
    assert sorted(nft_sources(firewall["file"], port, comment), key=str) == expected
    if firewall["ruleset"] is not None:
        assert_kernel_matches(firewall["ruleset"], port, comment, expected)


def test_the_exporter_port_is_open_to_the_metrics_sources_only(pg: dict[str, Any], firewall: dict[str, Any]) -> None:
    port, comment = exporter_port(pg), "postgresql: postgres_exporter"
    listed = pg["postgresql_firewall_metrics_sources"] if pg["postgresql_exporter_enabled"] else []
    expected = sorted({ipaddress.ip_network(s, strict=False) for s in listed}, key=str)
    assert sorted(nft_sources(firewall["file"], port, comment), key=str) == expected
    if firewall["ruleset"] is not None:
        assert_kernel_matches(firewall["ruleset"], port, comment, expected)


def test_this_controller_gets_in_exactly_when_a_rule_admits_it(
    host: Any, pg: dict[str, Any], topology: dict[str, Any], firewall: dict[str, Any]
) -> None:
    """Through the live firewall: the server and exporter answer this controller iff it is a listed source."""
    if firewall["ruleset"] is None:
        pytest.skip("nftables does not run on this host (the hardening role's firewall is off)")
    address = address_of(host)
    controller = ipaddress.ip_network(controller_address(address))
    client_sources = expected_client_sources(host, pg, topology)
    metrics_sources = [ipaddress.ip_network(s, strict=False) for s in pg["postgresql_firewall_metrics_sources"]]
    probes = {int(pg["postgresql_port"]): covers(client_sources, controller)}
    if pg["postgresql_exporter_enabled"]:
        probes[exporter_port(pg)] = covers(metrics_sources, controller)
    assert {port: reachable(address, port) for port in probes} == probes
