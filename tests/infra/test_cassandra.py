"""The cassandra role's behaviour, checked through CQL, nodetool and the node's sockets, not its files.

Runs unchanged on a molecule node and on a live fleet (`toolkit verify cassandra`). Expected values are each
host's inventory variables over the role's defaults (tests/infra/toolkit_infra.py). CQL goes from this
controller to each node's native port with the Python driver, as a client would (the firewall admits
cassandra_firewall_client_sources); passwords stay in this process and never reach a command line.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from toolkit_infra import (
    Network,
    assert_kernel_matches,
    default_route_address,
    expected_vars,
    inventory_variables,
    nft_sources,
    other_host,
)

ROLE = "cassandra"
VERIFY_KEYSPACE = "toolkit_verify"


@pytest.fixture(scope="module")
def cas(host: Any) -> dict[str, Any]:
    return expected_vars(host, ROLE)


@pytest.fixture(scope="module")
def cluster(host: Any, cas: dict[str, Any]) -> dict[str, Any]:
    """The cluster as the inventory describes it: each member's address, dc and rack."""
    variables = inventory_variables(host)
    names = list(variables.get("groups", {}).get(cas["cassandra_group"], []))
    members = {}
    for name in names:
        member = host if name == variables["inventory_hostname"] else other_host(host, name)
        member_vars = inventory_variables(member)
        members[name] = {
            "address": member_vars.get("cassandra_address") or default_route_address(member),
            "dc": member_vars.get("cassandra_dc", ""),
            "rack": member_vars.get("cassandra_rack", ""),
        }
    return {"name": variables["inventory_hostname"], "members": members}


@pytest.fixture(autouse=True)
def _only_cassandra_hosts(cluster: dict[str, Any]) -> None:
    # `toolkit verify site` runs every suite on every host; this one has nothing to say about the others.
    if cluster["name"] not in cluster["members"]:
        pytest.skip(f"{cluster['name']} is not a Cassandra host")


def me(cluster: dict[str, Any]) -> dict[str, str]:
    return dict(cluster["members"][cluster["name"]])


def nodetool(host: Any, cas: dict[str, Any], command: str) -> str:
    return str(host.check_output(f"/usr/local/bin/nodetool -h 127.0.0.1 -p {int(cas['cassandra_jmx_port'])} {command}"))


def session_on(address: str, cas: dict[str, Any], user: str | None = None, password: str | None = None) -> Any:
    """A CQL session that talks to this one node only."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([address]), request_timeout=20)
    client = Cluster(
        [address],
        port=int(cas["cassandra_native_port"]),
        auth_provider=PlainTextAuthProvider(
            username=user or cas["cassandra_superuser"], password=password or cas["cassandra_superuser_password"]
        ),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=10,
        protocol_version=5,
    )
    return client.connect()


@pytest.fixture(scope="module")
def cql(cluster: dict[str, Any], cas: dict[str, Any]) -> Iterator[Any]:
    session = session_on(me(cluster)["address"], cas)
    yield session
    session.cluster.shutdown()


# --- the node ---------------------------------------------------------------------------------------------


def test_cassandra_is_enabled_and_running_as_its_own_user(host: Any) -> None:
    service = host.service("cassandra")
    assert service.is_enabled and service.is_running
    pid = host.check_output("systemctl show -p MainPID --value cassandra").strip()
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "cassandra"
    # Cassandra's recommended limits, as far as the host allows: a container cannot go above its own hard
    # limits (PID 1's), so the process must get the unit's value or that ceiling, whichever is lower.
    for name, setting in (("Max open files", "LimitNOFILE"), ("Max locked memory", "LimitMEMLOCK")):
        configured = host.check_output(f"systemctl show -p {setting} --value cassandra").strip()
        assert configured in ("1048576", "infinity"), (setting, configured)
        ceiling = hard_limit(host, "1", name)
        wanted = ceiling if configured == "infinity" else min(int(configured), ceiling)
        assert hard_limit(host, pid, name) == wanted, name


def hard_limit(host: Any, pid: str, name: str) -> float:
    with host.sudo():
        limits = host.file(f"/proc/{pid}/limits").content_string
    match = re.search(rf"^{name}\s+\S+\s+(\S+)", limits, re.MULTILINE)
    assert match, f"{name} not in /proc/{pid}/limits"
    return float("inf") if match.group(1) == "unlimited" else float(match.group(1))


def test_the_heap_is_the_configured_size(host: Any, cas: dict[str, Any]) -> None:
    pid = host.check_output("systemctl show -p MainPID --value cassandra").strip()
    arguments = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    heap = [a for a in arguments if a.startswith("-Xmx")]
    configured = int(cas["cassandra_heap_mb"])
    if configured:
        assert heap == [f"-Xmx{configured}M"]
    else:
        assert len(heap) == 1


def test_it_listens_where_it_should_and_jmx_stays_local(
    host: Any, cas: dict[str, Any], cluster: dict[str, Any]
) -> None:
    address = me(cluster)["address"]
    listening = host.check_output("ss -Hltn").split("\n")
    sockets = {line.split()[3] for line in listening if line.strip()}
    assert f"{address}:{int(cas['cassandra_storage_port'])}" in sockets
    assert f"{address}:{int(cas['cassandra_native_port'])}" in sockets
    jmx = {s for s in sockets if s.endswith(f":{int(cas['cassandra_jmx_port'])}")}
    assert jmx and all(s.startswith(("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")) for s in jmx), jmx


def test_the_jmx_exporter_serves_cassandra_metrics(host: Any, cas: dict[str, Any]) -> None:
    if not cas["cassandra_jmx_exporter_enabled"]:
        pytest.skip("cassandra_jmx_exporter_enabled is false")
    url = f"http://127.0.0.1:{int(cas['cassandra_jmx_exporter_port'])}/metrics"
    fetch = f"import urllib.request; print(urllib.request.urlopen('{url}', timeout=20).read().decode())"
    metrics = host.check_output(f"python3 -c {shlex.quote(fetch)}")
    assert re.search(r"^org_apache_cassandra_metrics_clientrequest_\w+", metrics, re.MULTILINE), "no client requests"
    assert re.search(r"^java_lang_memory_heapmemoryusage_used ", metrics, re.MULTILINE), "no JVM heap metrics"


# --- the cluster ------------------------------------------------------------------------------------------


def parse_status(output: str) -> dict[str, dict[str, str]]:
    """`nodetool status` as {address: {state, dc, rack}}."""
    nodes: dict[str, dict[str, str]] = {}
    dc = ""
    for line in output.splitlines():
        if line.startswith("Datacenter: "):
            dc = line.split(": ", 1)[1].strip()
            continue
        match = re.match(r"^([UD][NLJM])\s+(\S+)\s+.*\s(\S+)\s*$", line)
        if match:
            nodes[match.group(2)] = {"state": match.group(1), "dc": dc, "rack": match.group(3)}
    return nodes


def test_every_node_is_up_and_normal_in_its_dc_and_rack(
    host: Any, cas: dict[str, Any], cluster: dict[str, Any]
) -> None:
    seen = parse_status(nodetool(host, cas, "status"))
    expected = {m["address"]: {"state": "UN", "dc": m["dc"], "rack": m["rack"]} for m in cluster["members"].values()}
    assert seen == expected


def test_the_cluster_agrees_on_one_schema(host: Any, cas: dict[str, Any]) -> None:
    described = nodetool(host, cas, "describecluster")
    assert f"Name: {cas['cassandra_cluster_name']}" in described
    assert "UNREACHABLE" not in described
    assert len(re.findall(r"(?m)^\s+[0-9a-f-]{36}: \[", described)) == 1


def test_seeds_are_members_and_not_all_of_them(host: Any, cluster: dict[str, Any]) -> None:
    with host.sudo():
        config = host.file("/etc/cassandra/cassandra.yaml").content_string
    seeds = re.search(r"seeds: '?([^'\n]+)'?", config)
    assert seeds, "no seeds in cassandra.yaml"
    addresses = [s.rsplit(":", 1)[0] for s in seeds.group(1).split(",")]
    members = {m["address"] for m in cluster["members"].values()}
    assert set(addresses) <= members
    assert len(members) == 1 or len(set(addresses)) < len(members)


def test_a_quorum_write_is_read_back_from_every_node(cql: Any, cas: dict[str, Any], cluster: dict[str, Any]) -> None:
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    sizes: dict[str, int] = {}
    for member in cluster["members"].values():
        sizes[member["dc"]] = sizes.get(member["dc"], 0) + 1
    replication = ", ".join(f"'{dc}': {min(3, size)}" for dc, size in sorted(sizes.items()))
    cql.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {VERIFY_KEYSPACE} "
        f"WITH replication = {{'class': 'NetworkTopologyStrategy', {replication}}}"
    )
    cql.execute(f"CREATE TABLE IF NOT EXISTS {VERIFY_KEYSPACE}.probe (id text PRIMARY KEY, at timestamp)")
    marker = uuid.uuid4().hex
    write = SimpleStatement(
        f"INSERT INTO {VERIFY_KEYSPACE}.probe (id, at) VALUES (%s, toTimestamp(now()))",
        consistency_level=ConsistencyLevel.QUORUM,
    )
    cql.execute(write, (marker,))
    read = SimpleStatement(
        f"SELECT id FROM {VERIFY_KEYSPACE}.probe WHERE id = %s", consistency_level=ConsistencyLevel.QUORUM
    )
    found = {}
    for name, member in cluster["members"].items():
        session = session_on(member["address"], cas)
        try:
            found[name] = [row.id for row in session.execute(read, (marker,))]
        finally:
            session.cluster.shutdown()
    assert found == {name: [marker] for name in cluster["members"]}


def test_the_default_superuser_cannot_log_in(cas: dict[str, Any], cluster: dict[str, Any]) -> None:
    from cassandra.cluster import NoHostAvailable

    with pytest.raises(NoHostAvailable, match=r"(?i)authentication|credentials|not allowed to log in"):
        session_on(me(cluster)["address"], cas, user="cassandra", password="cassandra")


def test_system_auth_is_replicated_to_every_dc(cql: Any, cas: dict[str, Any], cluster: dict[str, Any]) -> None:
    sizes: dict[str, int] = {}
    for member in cluster["members"].values():
        sizes[member["dc"]] = sizes.get(member["dc"], 0) + 1
    row = cql.execute("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = 'system_auth'").one()
    replication = {k: int(v) for k, v in row.replication.items() if k != "class"}
    assert replication == {dc: min(int(cas["cassandra_system_auth_rf"]), size) for dc, size in sizes.items()}


def plain(value: Any) -> Any:
    """Templated values as plain Python types (the driver encodes parameters by their exact type)."""
    return json.loads(json.dumps(value))


def assert_as_declared(cql: Any, query: str, declared: list[dict[str, Any]], seen: Any, wanted: Any) -> None:
    """Each declared entry exists as declared (seen(row) == wanted(entry)), or is gone when state is absent."""
    for entry in plain(declared):
        row = cql.execute(query, (entry["name"],)).one()
        if entry.get("state", "present") == "absent":
            assert row is None, f"{entry['name']} should be absent"
        else:
            assert row is not None, f"{entry['name']} missing"
            assert seen(row) == wanted(entry), entry["name"]


def test_keyspaces_are_as_declared(cql: Any, cas: dict[str, Any]) -> None:
    assert_as_declared(
        cql,
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
        cas["cassandra_keyspaces"],
        seen=lambda row: {k: int(v) for k, v in row.replication.items() if k != "class"},
        wanted=lambda keyspace: {dc: int(rf) for dc, rf in keyspace["replication"].items()},
    )


def test_roles_are_as_declared(cql: Any, cas: dict[str, Any]) -> None:
    assert_as_declared(
        cql,
        "SELECT can_login, is_superuser FROM system_auth.roles WHERE role = %s",
        cas["cassandra_roles"],
        seen=lambda row: (row.can_login, row.is_superuser),
        wanted=lambda role: (role.get("login", True), role.get("superuser", False)),
    )


# --- the firewall -----------------------------------------------------------------------------------------


def test_peers_and_clients_are_admitted_and_nobody_else(
    host: Any, cas: dict[str, Any], cluster: dict[str, Any]
) -> None:
    if not cas["cassandra_firewall_enabled"]:
        pytest.skip("cassandra_firewall_enabled is false")
    with host.sudo():
        rules = host.file("/etc/nftables.d/cassandra.nft").content_string
        active = host.run("systemctl is-active --quiet nftables").rc == 0
        ruleset = host.check_output("nft list ruleset") if active else None
    peers: list[Network] = sorted({ipaddress.ip_network(m["address"]) for m in cluster["members"].values()}, key=str)
    clients = sorted(
        set(peers) | {ipaddress.ip_network(s, strict=False) for s in cas["cassandra_firewall_client_sources"]}, key=str
    )
    expected = {
        (int(cas["cassandra_storage_port"]), "cassandra: peers"): peers,
        (int(cas["cassandra_native_port"]), "cassandra: CQL clients"): clients,
    }
    for (port, comment), networks in expected.items():
        assert sorted(nft_sources(rules, port, comment), key=str) == networks, comment
        if ruleset is not None:
            assert_kernel_matches(ruleset, port, comment, networks)
