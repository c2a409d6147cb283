"""aws_fleet's pure parts: option checks, host and group naming, topology. No AWS, no Ansible run."""

import json
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.unit.plugins.moto_fleet import TOPOLOGY_VARS

KNOWN = {"eu-west-1", "eu-west-2", "eu-west-3", "us-east-1", "us-east-2", "ap-southeast-2"}


def options(**overrides: Any) -> dict[str, Any]:
    """The options as Ansible hands them over (its defaults filled in)."""
    return {
        "regions": ["eu-west-1"],
        "accounts": [],
        "profile": None,
        "endpoint_url": None,
        "filters": {},
        "states": None,  # no default: [running], or every state when some are excluded
        "exclude_states": [],
        "hostnames": ["tag:Name", "private-dns-name", "instance-id"],
        "ansible_host": ["private-ip-address"],
        "tag_keys": {},
        "group_by_tags": ["cluster", "env", "role"],
        "cassandra_seeds_per_dc": 3,
        "on_region_error": "fail",
        "max_workers": 8,
        "page_size": 1000,
        "retry_mode": "standard",
        "max_attempts": 10,
        "connect_timeout": 10,
        "read_timeout": 60,
        "compose": {},
        "groups": {},
        "keyed_groups": [],
        "strict": False,
        "leading_separator": True,
        "use_extra_vars": False,
        **overrides,
    }


def settings(aws_fleet: ModuleType, **overrides: Any) -> Any:
    return aws_fleet.settings_from_options(options(**overrides), known=KNOWN)


_ids = iter(range(1, 1_000_000))


def instance(aws_fleet: ModuleType, tags: dict[str, str] | None = None, **fields: Any) -> Any:
    number = next(_ids)
    values: dict[str, Any] = {
        "instance_id": f"i-{number:017x}",
        "account": "default",
        "account_id": "123456789012",
        "region": "eu-west-1",
        "zone": "eu-west-1a",
        "state": "running",
        "instance_type": "t3.small",
        "private_ip": f"10.0.{number // 250}.{number % 250 + 1}",
        "public_ip": None,
        "private_dns": f"ip-{number}.eu-west-1.compute.internal",
        "public_dns": None,
        "launch_time": f"2026-01-01T00:{number // 60 % 60:02d}:{number % 60:02d}+00:00",
        "tags": tags or {},
    }
    values.update(fields)
    return aws_fleet.Instance(**values)


def fleet_error(aws_fleet: ModuleType, call: Any) -> str:
    with pytest.raises(aws_fleet.FleetError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message
    return message


# -- options -------------------------------------------------------------------------------------


def test_the_defaults_make_valid_settings(aws_fleet: ModuleType) -> None:
    made = settings(aws_fleet)
    assert made.accounts == (aws_fleet.Account(None, None, None, ("eu-west-1",)),)
    assert made.states == ("running",)
    assert made.tag_keys["service"] == "service"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"regions": ["eu-west-7"]}, "unknown region 'eu-west-7' (did you mean eu-west-"),
        ({"regions": []}, "option regions is empty"),
        ({"regions": ["all", "eu-west-1"]}, "'all' cannot be combined"),
        ({"accounts": [{"role_arn": "arn:aws:iam::12:user/x"}]}, "accounts[0].role_arn must be a role ARN"),
        ({"accounts": [{"role_arn": "arn:aws:iam::123456789012:role/r", "rgions": []}]}, "unknown key(s) rgions"),
        (
            {"accounts": [{"role_arn": "arn:aws:iam::123456789012:role/r", "regions": ["mars-1"]}]},
            "unknown region 'mars-1'",
        ),
        (
            {
                "accounts": [
                    {"role_arn": "arn:aws:iam::123456789012:role/a"},
                    {"role_arn": "arn:aws:iam::123456789012:role/b"},
                ]
            },
            "two accounts have the same name",
        ),
        ({"filters": {"instance-state-name": "stopped"}}, "use the states option"),
        ({"filters": {"tag:env": []}}, "tag:env must be a string or a non-empty list"),
        ({"states": ["sleeping"]}, "option states: unknown state 'sleeping' (one of pending, running, "),
        (
            {"exclude_states": ["running", "Stopped"]},
            "option exclude_states: unknown state 'Stopped' (one of pending, running, shutting-down, terminated, "
            "stopping, stopped)",
        ),
        ({"exclude_states": [1]}, "option exclude_states must be a string or a list of strings"),
        (
            {"states": ["running", "stopped"], "exclude_states": ["stopped", "running"]},
            "option exclude_states excludes every state of states (running, stopped): nothing would be listed",
        ),
        (
            {"exclude_states": ["pending", "running", "shutting-down", "terminated", "stopping", "stopped"]},
            "option exclude_states excludes every state: nothing would be listed",
        ),
        ({"hostnames": ["public-ip"]}, "option hostnames: unknown entry 'public-ip'"),
        ({"ansible_host": ["tag:"]}, "option ansible_host: unknown entry 'tag:'"),
        ({"tag_keys": {"servce": "Service"}}, "option tag_keys: unknown key 'servce'"),
        ({"tag_keys": {"service": ""}}, "tag_keys.service must be a non-empty tag key"),
        ({"page_size": 2000}, "option page_size must be a number from 5 to 1000"),
        ({"max_workers": 0}, "option max_workers must be a number from 1 to 64"),
        ({"read_timeout": True}, "option read_timeout must be a number"),
    ],
)
def test_malformed_options_are_one_line_errors(aws_fleet: ModuleType, overrides: dict[str, Any], expected: str) -> None:
    assert expected in fleet_error(aws_fleet, lambda: settings(aws_fleet, **overrides))


def test_regions_are_checked_against_botocore_by_default(aws_fleet: ModuleType) -> None:
    known = aws_fleet.known_regions()
    assert {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"} <= known
    with pytest.raises(aws_fleet.FleetError, match="unknown region 'us-east-9'"):
        aws_fleet.settings_from_options(options(regions=["us-east-9"]))


@pytest.mark.parametrize(
    ("states", "exclude_states", "listed"),
    [
        (None, [], ("running",)),
        ([], [], ("running",)),
        (["stopped", "running"], [], ("running", "stopped")),
        ("stopped", [], ("stopped",)),
        # Excluding alone starts from every state, not from the default [running].
        (None, ["terminated", "shutting-down"], ("pending", "running", "stopping", "stopped")),
        (None, "terminated", ("pending", "running", "shutting-down", "stopping", "stopped")),
        (["running", "stopped", "terminated"], ["terminated"], ("running", "stopped")),
        (["running"], ["stopped"], ("running",)),  # excluding a state that is not included changes nothing
    ],
)
def test_states_are_included_then_excluded(
    aws_fleet: ModuleType, states: Any, exclude_states: Any, listed: tuple[str, ...]
) -> None:
    assert settings(aws_fleet, states=states, exclude_states=exclude_states).states == listed


def test_the_cache_fingerprint_follows_content_options_only(aws_fleet: ModuleType) -> None:
    base = settings(aws_fleet).fingerprint
    assert settings(aws_fleet, max_workers=2, read_timeout=5, page_size=50).fingerprint == base
    assert settings(aws_fleet, filters={"tag:env": "prod"}).fingerprint != base
    assert settings(aws_fleet, compose={"x": "1"}).fingerprint != base
    assert settings(aws_fleet, regions=["eu-west-2"]).fingerprint != base
    assert settings(aws_fleet, exclude_states=["terminated"]).fingerprint != base


# -- naming ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("cassandra", "cassandra"),
        ("env_prod", "env_prod"),
        ("env_  spaced  out  ", "env___spaced__out__"),
        ("env_café ünïcode Ω", "env_café_ünïcode_Ω"),
        ("cluster_a:b,c[d]", "cluster_a_b_c_d_"),
        ("az_eu-west-1a", "az_eu_west_1a"),
        ("3d-render", "_d_render"),
    ],
)
def test_group_names_follow_ansibles_rule(aws_fleet: ModuleType, raw: str, safe: str) -> None:
    assert aws_fleet.safe_group_name(raw) == safe


def test_shared_names_fall_through_to_the_next_preference_whatever_the_order(aws_fleet: ModuleType) -> None:
    a = instance(aws_fleet, {"Name": "web"})
    b = instance(aws_fleet, {"Name": "web"})
    c = instance(aws_fleet, {"Name": "db 1"})
    d = instance(aws_fleet, {"Name": "  "}, private_dns=None)
    e = instance(aws_fleet, {"Name": a.private_dns})  # a Name equal to another host's fallback: the Name wins
    fleet = [a, b, c, d, e]
    expected = {
        a.instance_id: a.instance_id,
        b.instance_id: b.private_dns,
        c.instance_id: "db_1",
        d.instance_id: d.instance_id,
        e.instance_id: a.private_dns,
    }
    for _ in range(5):
        random.shuffle(fleet)
        names = aws_fleet.assign_hostnames(fleet, ("tag:Name", "private-dns-name"))
        assert dict(zip([i.instance_id for i in fleet], names, strict=True)) == expected
        assert len(set(names)) == len(names)


# -- the document ---------------------------------------------------------------------------------


def document(aws_fleet: ModuleType, instances: list[Any], **overrides: Any) -> Any:
    return aws_fleet.build_document(instances, settings(aws_fleet, **overrides))


def test_groups_follow_service_tags_region_and_zone(aws_fleet: ModuleType) -> None:
    web = instance(aws_fleet, {"Name": "web-1", "service": "web", "env": "prod", "cluster": "shop", "team": "x"})
    bare = instance(aws_fleet, {}, region="us-east-1", zone="us-east-1b")
    made = document(aws_fleet, [web, bare])
    assert made.hosts["web-1"][0] == ["aws", "region_eu_west_1", "az_eu_west_1a", "cluster_shop", "env_prod", "web"]
    assert made.hosts[bare.private_dns][0] == ["aws", "region_us_east_1", "az_us_east_1b"]
    assert "team_x" not in made.groups  # only group_by_tags make groups
    json.dumps(made.to_cache("f"))  # the whole document serialises


def test_host_vars_are_lean_and_typed(aws_fleet: ModuleType) -> None:
    web = instance(aws_fleet, {"Name": "web-1", "service": "web", "env": " prod "}, public_ip="54.1.2.3")
    hostvars = document(aws_fleet, [web]).hosts["web-1"][1]
    assert set(hostvars) == set(aws_fleet.HostVars.__annotations__) - {*TOPOLOGY_VARS, "toolkit_cluster"}
    assert hostvars["ansible_host"] == web.private_ip
    assert hostvars["toolkit_env"] == "prod"
    assert hostvars["aws_target_labels"] == {
        "instance_id": web.instance_id,
        "region": "eu-west-1",
        "availability_zone": "eu-west-1a",
        "service": "web",
        "env": "prod",
    }


def test_host_vars_override_no_role_default_but_the_topology_inputs(aws_fleet: ModuleType) -> None:
    """A host variable outranks a role's default everywhere that host's play runs: a name shared by accident
    replaces the role's setting (the plugin's old per-host `prometheus_target_labels` silently emptied the
    Prometheus role's label mapping). Only the topology the roles take from the inventory may share a name."""
    defaults: set[str] = set()
    for path in Path(__file__).resolve().parents[3].glob("roles/*/defaults/main.yml"):
        defaults |= set(yaml.safe_load(path.read_text()) or {})
    shared = set(aws_fleet.HostVars.__annotations__) & defaults
    assert shared == set(TOPOLOGY_VARS) & defaults


def test_ansible_host_takes_the_first_address_present(aws_fleet: ModuleType) -> None:
    public = instance(aws_fleet, {"Name": "a", "ssh": "bastion.example"}, public_ip="54.1.2.3")
    private = instance(aws_fleet, {"Name": "b"})
    none = instance(aws_fleet, {"Name": "c"}, private_ip=None)
    made = document(aws_fleet, [public, private, none], ansible_host=["ip-address", "private-ip-address"])
    assert made.hosts["a"][1]["ansible_host"] == "54.1.2.3"
    assert made.hosts["b"][1]["ansible_host"] == private.private_ip
    assert "ansible_host" not in made.hosts["c"][1]  # kept, and said at -vvv
    assert made.warnings == [f"c ({none.instance_id}) has no ip-address or private-ip-address"]
    by_tag = document(aws_fleet, [public], ansible_host=["tag:ssh"])
    assert by_tag.hosts["a"][1]["ansible_host"] == "bastion.example"


def test_cassandra_dc_and_rack_come_from_region_and_zone_or_tags(aws_fleet: ModuleType) -> None:
    plain = instance(aws_fleet, {"Name": "c1", "service": "cassandra"}, zone="eu-west-1b")
    pinned = instance(aws_fleet, {"Name": "c2", "service": "cassandra", "cassandra_dc": "dc9", "cassandra_rack": "r2"})
    made = document(aws_fleet, [plain, pinned])
    assert (made.hosts["c1"][1]["cassandra_dc"], made.hosts["c1"][1]["cassandra_rack"]) == ("eu-west-1", "eu-west-1b")
    assert (made.hosts["c2"][1]["cassandra_dc"], made.hosts["c2"][1]["cassandra_rack"]) == ("dc9", "r2")
    assert "cassandra" in made.hosts["c1"][0]


def ring(aws_fleet: ModuleType, layout: list[tuple[str, str]], cluster: str = "ring") -> list[Any]:
    return [
        instance(aws_fleet, {"Name": f"{cluster}-{n}", "service": "cassandra", "cluster": cluster}, region=r, zone=z)
        for n, (r, z) in enumerate(layout)
    ]


def test_seeds_are_the_oldest_nodes_spread_over_racks_in_every_dc(aws_fleet: ModuleType) -> None:
    nodes = ring(
        aws_fleet,
        [("eu-west-1", "eu-west-1a")] * 3 + [("eu-west-1", "eu-west-1b")] * 2 + [("us-east-1", "us-east-1a")] * 2,
    )
    made = document(aws_fleet, nodes, cassandra_seeds_per_dc=3)
    eu_a, eu_b, us_a = nodes[0:3], nodes[3:5], nodes[5:7]
    # Round-robin over racks: a, b, a (oldest first in each), then the other DC's oldest.
    expected = [eu_a[0].private_ip, eu_b[0].private_ip, eu_a[1].private_ip, us_a[0].private_ip, us_a[1].private_ip]
    assert {tuple(made.hosts[f"ring-{n}"][1]["cassandra_seeds"]) for n in range(7)} == {tuple(expected)}


def test_adding_a_newer_node_keeps_the_seeds(aws_fleet: ModuleType) -> None:
    nodes = ring(aws_fleet, [("eu-west-1", "eu-west-1a")] * 4)
    before = document(aws_fleet, nodes).hosts["ring-0"][1]["cassandra_seeds"]
    newer = instance(aws_fleet, {"Name": "ring-new", "service": "cassandra", "cluster": "ring"})
    assert document(aws_fleet, [newer, *nodes]).hosts["ring-0"][1]["cassandra_seeds"] == before


def test_clusters_have_their_own_seeds(aws_fleet: ModuleType) -> None:
    made = document(
        aws_fleet,
        ring(aws_fleet, [("eu-west-1", "eu-west-1a")], "one") + ring(aws_fleet, [("eu-west-1", "eu-west-1a")], "two"),
    )
    assert made.hosts["one-0"][1]["cassandra_seeds"] != made.hosts["two-0"][1]["cassandra_seeds"]


def pg(aws_fleet: ModuleType, name: str, role: str | None, cluster: str | None = "orders") -> Any:
    tags = {"Name": name, "service": "postgresql"}
    if role is not None:
        tags["role"] = role
    if cluster is not None:
        tags["cluster"] = cluster
    return instance(aws_fleet, tags)


def test_postgresql_roles_become_the_labs_child_groups(aws_fleet: ModuleType) -> None:
    made = document(
        aws_fleet, [pg(aws_fleet, "pg-1", "primary"), pg(aws_fleet, "pg-2", "replica"), pg(aws_fleet, "pg-3", None)]
    )
    assert next(iter(made.groups)) == "postgresql"
    assert made.groups["postgresql"] == ["postgresql_primary", "postgresql_replica"]
    assert "postgresql_primary" in made.hosts["pg-1"][0] and "postgresql" not in made.hosts["pg-1"][0]
    assert "postgresql_replica" in made.hosts["pg-3"][0]
    assert {made.hosts[n][1]["postgresql_role"] for n in ("pg-2", "pg-3")} == {"replica"}
    assert {made.hosts[n][1]["postgresql_primary_group"] for n in ("pg-1", "pg-2", "pg-3")} == {
        "postgresql_orders_primary"
    }
    assert {made.hosts[n][1]["postgresql_replica_group"] for n in ("pg-1", "pg-2", "pg-3")} == {
        "postgresql_orders_replica"
    }
    assert made.hosts["pg-1"][0][-2:] == ["postgresql_primary", "postgresql_orders_primary"]
    assert made.hosts["pg-2"][0][-2:] == ["postgresql_replica", "postgresql_orders_replica"]


def test_several_postgresql_clusters_each_get_their_own_groups(aws_fleet: ModuleType) -> None:
    hosts = [
        pg(aws_fleet, "a-1", "primary", "a"),
        pg(aws_fleet, "a-2", None, "a"),
        pg(aws_fleet, "b-1", "primary", "b"),
    ]
    made = document(aws_fleet, hosts)
    assert made.hosts["a-2"][1]["postgresql_primary_group"] == "postgresql_a_primary"
    assert made.hosts["b-1"][1]["postgresql_primary_group"] == "postgresql_b_primary"
    single = document(aws_fleet, [pg(aws_fleet, "solo", "primary", cluster=None)]).hosts["solo"]
    assert "postgresql_primary_group" not in single[1]  # the role's defaults: postgresql_primary/_replica
    assert single[0][-1] == "postgresql_primary"


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (
            ["replica", "replica"],
            "PostgreSQL cluster 'orders' must have exactly one primary (tag role=primary), found 0",
        ),
        (
            ["primary", "Primary"],
            "PostgreSQL cluster 'orders' must have exactly one primary (tag role=primary), found 2",
        ),
        (["primary", "standby"], "PostgreSQL host pg-1 ("),
    ],
)
def test_postgresql_clusters_need_exactly_one_primary(aws_fleet: ModuleType, roles: list[str], expected: str) -> None:
    hosts = [pg(aws_fleet, f"pg-{n}", role) for n, role in enumerate(roles)]
    message = fleet_error(aws_fleet, lambda: document(aws_fleet, hosts))
    assert message.startswith(expected)
    if "found 2" in message:
        assert "pg-0 (" in message and "pg-1 (" in message


def test_untagged_postgresql_hosts_form_one_named_cluster(aws_fleet: ModuleType) -> None:
    message = fleet_error(aws_fleet, lambda: document(aws_fleet, [pg(aws_fleet, "pg-x", None, cluster=None)]))
    assert message.startswith("PostgreSQL hosts without a cluster tag must have exactly one primary")


def test_renamed_tag_keys_are_honoured(aws_fleet: ModuleType) -> None:
    host = instance(aws_fleet, {"Name": "n", "Service": "postgresql", "Role": "primary", "Environment": "qa"})
    made = document(
        aws_fleet,
        [host],
        tag_keys={"service": "Service", "role": "Role", "env": "Environment"},
        group_by_tags=["Environment"],
    )
    assert made.hosts["n"][0][-2:] == ["Environment_qa", "postgresql_primary"]
    assert made.hosts["n"][1]["toolkit_env"] == "qa"


def test_a_cached_document_is_used_only_if_it_matches(aws_fleet: ModuleType) -> None:
    made = document(aws_fleet, [instance(aws_fleet, {"Name": "a", "service": "web"})])
    cached = made.to_cache("fingerprint-1")
    again = aws_fleet.Document.from_cache(json.loads(json.dumps(cached)), "fingerprint-1")
    assert again is not None and again.hosts["a"][1] == made.hosts["a"][1] and again.groups == made.groups
    assert aws_fleet.Document.from_cache(cached, "fingerprint-2") is None
    assert aws_fleet.Document.from_cache({**cached, "format": 0}, "fingerprint-1") is None
    assert aws_fleet.Document.from_cache({**cached, "body": "{not json"}, "fingerprint-1") is None
    assert aws_fleet.Document.from_cache("garbage", "fingerprint-1") is None


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("aws_region", "eu-west-1"),
        (" aws_tags.env ", "prod"),
        ("aws_tags", {"env": "prod", "items": "x"}),
        ("aws_tags.items", "MISSING"),  # Jinja would give dict.items: left to Jinja
        ("aws_tags.nope", "MISSING"),
        ("nope", "MISSING"),
        ("aws_region.x", "MISSING"),
        ("aws_tags.env | upper", "MISSING"),
        ("aws_tags['env']", "MISSING"),
        (2222, "MISSING"),
    ],
)
def test_plain_paths_are_resolved_without_jinja(aws_fleet: ModuleType, expression: Any, expected: Any) -> None:
    variables = {"aws_region": "eu-west-1", "aws_tags": {"env": "prod", "items": "x"}}
    value = aws_fleet.plain_path_value(expression, variables)
    assert (value is aws_fleet._MISSING) if expected == "MISSING" else (value == expected)
