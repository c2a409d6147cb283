"""The lab provider's bookkeeping: a network of its own, stable addresses, and the inventory it writes.

The containers themselves are made by tests/env/test_env_lab.py (a real `toolkit env up demo --provider lab`).
"""

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from toolkit.environments.lab_env import (
    LabEnvironment,
    assign_addresses,
    choose_network,
    desired_lab_resources,
    expiry_of,
    free_subnet,
    lab_hosts,
    network_of,
)
from toolkit.environments.plan import make_plan
from toolkit.environments.spec import EnvironmentSpec, parse_spec
from toolkit.errors import LabError
from toolkit.lab import inventory, profiles
from toolkit.paths import StatePaths

NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


def spec_with(tmp_path: Path, replicas: int = 1, racks: dict[str, int] | None = None) -> EnvironmentSpec:
    document = {
        "name": "demo",
        "owner": "sre",
        "ttl": "8h",
        "services": {
            "postgresql": {"replicas": replicas},
            "cassandra": {"datacenters": [{"name": "dc1", "racks": racks or {"rack1": 2, "rack2": 1}}]},
            "prometheus": {},
        },
    }
    return parse_spec(document, tmp_path / "demo.yml", now=NOW)


def test_an_environment_takes_the_first_slash_24_no_podman_network_uses() -> None:
    assert free_subnet({profiles.SUBNET, "10.88.0.0/16"}) == "10.242.20.0/24"
    assert free_subnet({profiles.SUBNET, "10.242.20.0/24", "10.242.21.0/24"}) == "10.242.22.0/24"
    # A wider network that covers a candidate takes it too.
    assert free_subnet({"10.242.16.0/20"}) == "10.242.32.0/24"


def test_no_free_subnet_is_a_lab_error() -> None:
    with pytest.raises(LabError, match=r"no free 10\.242\.N\.0/24"):
        free_subnet({"10.242.0.0/16"})


def test_the_network_is_named_and_labelled_for_the_environment_alone() -> None:
    network = network_of("demo", "10.242.20.0/24")
    assert (network.name, network.gateway, network.label) == ("toolkit-env-demo", "10.242.20.1", "io.toolkit.env=demo")
    # Not the lab's label: `toolkit lab down` (which removes everything labelled io.toolkit.lab=1) never sees it.
    assert network.label != profiles.LAB_NETWORK.label


def test_addresses_are_kept_by_name_so_a_grown_spec_never_renumbers_a_host() -> None:
    first = assign_addresses(["a", "b", "c"], "10.242.20.0/24", {})
    assert first == {"a": "10.242.20.11", "b": "10.242.20.12", "c": "10.242.20.13"}
    # "x" is new and goes first in spec order: the others keep theirs, it takes the lowest free one.
    grown = assign_addresses(["x", "a", "b", "c"], "10.242.20.0/24", first)
    assert {name: grown[name] for name in first} == first
    assert grown["x"] == "10.242.20.14"
    # A host dropped from the spec frees nothing that a kept host had.
    assert assign_addresses(["a", "c", "y"], "10.242.20.0/24", first)["y"] == "10.242.20.12"


def test_the_spec_becomes_lab_hosts_with_the_topology_the_roles_read(tmp_path: Path) -> None:
    spec = spec_with(tmp_path)
    hosts = lab_hosts(spec, assign_addresses([h.name for h in spec.hosts], "10.242.20.0/24", {}))
    by_name = {h.name: h for h in hosts}
    assert sorted(by_name) == [
        "demo-cassandra-1", "demo-cassandra-2", "demo-cassandra-3",
        "demo-postgresql-1", "demo-postgresql-2", "demo-prometheus-1",
    ]  # fmt: skip
    assert by_name["demo-cassandra-3"].hostvars == {"cassandra_dc": "dc1", "cassandra_rack": "rack2"}
    assert by_name["demo-postgresql-2"].groups == ("postgresql_replica",)
    assert by_name["demo-cassandra-1"].container == "toolkit-env-demo-cassandra-1"


def test_the_inventory_names_the_environment_and_its_network_for_the_labs_group_vars(tmp_path: Path) -> None:
    spec = spec_with(tmp_path, replicas=0)
    network = network_of("demo", "10.242.21.0/24")
    hosts = lab_hosts(spec, assign_addresses([h.name for h in spec.hosts], network.subnet, {}))
    rendered = inventory.render(
        hosts, key=tmp_path / "k", known_hosts=tmp_path / "kh", apt_proxy=None, network=network, toolkit_env="demo"
    )
    variables = rendered["all"]["vars"]
    assert (variables["toolkit_env"], variables["toolkit_lab_network"], variables["toolkit_lab_gateway"]) == (
        "demo",
        "10.242.21.0/24",
        "10.242.21.1",
    )
    children = rendered["all"]["children"]
    assert "postgresql_replica" not in children["postgresql"]["children"]
    assert children["cassandra"]["hosts"]["demo-cassandra-1"]["ansible_host"] == "10.242.21.12"


def test_the_labs_group_vars_name_no_address_of_their_own() -> None:
    """Every network address in inventories/lab/group_vars comes from the inventory's toolkit_lab_* variables,
    so the same files serve the lab and every lab environment."""
    group_vars = Path(__file__).resolve().parents[2] / "inventories" / "lab" / "group_vars"
    text = "\n".join(path.read_text() for path in sorted(group_vars.glob("*.yml")))
    assert "10.242." not in text
    documents = [yaml.safe_load(path.read_text()) for path in sorted(group_vars.glob("*.yml"))]
    assert any("{{ toolkit_lab_network }}" in str(document) for document in documents)


def write_lab_state(home: Path, name: str, *, created: str, expires_at: str | None, protected: bool = False) -> None:
    directory = home / "environments" / name / "lab"
    directory.mkdir(parents=True)
    hosts = [{"name": f"{name}-prometheus-1", "address": "10.242.20.11", "groups": ["prometheus"], "vars": {}}]
    state = {
        "provider": "lab", "environment": name, "owner": "sre", "network": f"toolkit-env-{name}",
        "subnet": "10.242.20.0/24", "created": created, "expires_at": expires_at, "protected": protected,
        "hosts": hosts,
    }  # fmt: skip
    (directory / "state.json").write_text(json.dumps(state))


def test_list_and_reap_in_the_lab_read_the_environments_state(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLKIT_HOME", str(tmp_path))
    write_lab_state(tmp_path, "old", created="2026-12-01T00:00:00+00:00", expires_at="2026-12-01T08:00:00+00:00")
    write_lab_state(tmp_path, "kept", created="2026-12-01T00:00:00+00:00", expires_at=None, protected=True)
    write_lab_state(tmp_path, "fresh", created="2026-12-01T00:00:00+00:00", expires_at="2999-01-01T00:00:00+00:00")

    listed = cli("env", "list", "--provider", "lab", "--json")
    assert listed.code == 0, listed.err
    by_name = {env["name"]: env for env in json.loads(listed.out)}
    assert sorted(by_name) == ["fresh", "kept", "old"]
    assert by_name["old"]["expired"] and not by_name["fresh"]["expired"] and not by_name["kept"]["expired"]
    assert (by_name["old"]["region"], by_name["old"]["hosts"], by_name["kept"]["protected"]) == ("lab", 1, True)

    reaped = cli("env", "reap", "--provider", "lab", "--dry-run", "--json")
    assert reaped.code == 0, reaped.err
    assert [env["environment"] for env in json.loads(reaped.out)["environments"]] == ["old"]
    assert (tmp_path / "environments" / "old" / "lab" / "state.json").exists()  # a dry run removes nothing


def test_an_expiry_is_fixed_at_the_first_up(tmp_path: Path) -> None:
    spec = spec_with(tmp_path)
    assert expiry_of(spec, "2026-12-05T10:00:00Z") == "2026-12-05T18:00:00+00:00"  # ttl 8h from creation


class FakePodman:
    """What `podman ps` and `podman network exists` answer, for the plan (no podman runs)."""

    def __init__(self, containers: list[dict[str, Any]], network: bool) -> None:
        self.containers, self.network = containers, network

    def exists(self, kind: str, name: str) -> bool:
        return kind == "network" and self.network

    def json(self, *args: str) -> list[dict[str, Any]]:
        assert "label=io.toolkit.env=demo" in args
        return self.containers


def test_plan_in_the_lab_keeps_starts_creates_and_leaves_dropped_hosts_for_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    state = StatePaths(home=home)
    directory = home / "environments" / "demo" / "lab"
    directory.mkdir(parents=True)
    recorded = [
        {"name": "demo-postgresql-1", "address": "10.242.20.11", "groups": ["postgresql_primary"], "vars": {}},
        {"name": "demo-cassandra-1", "address": "10.242.20.12", "groups": ["cassandra"],
         "vars": {"cassandra_dc": "dc1", "cassandra_rack": "rack1"}},
        {"name": "demo-old-1", "address": "10.242.20.13", "groups": ["prometheus"], "vars": {}},
    ]  # fmt: skip
    (directory / "state.json").write_text(
        json.dumps(
            {"provider": "lab", "subnet": "10.242.20.0/24", "created": "2026-12-05T00:00:00Z", "hosts": recorded}
        )
    )
    containers = [
        {"Names": ["toolkit-env-demo-postgresql-1"], "State": "running"},
        {"Names": ["toolkit-env-demo-cassandra-1"], "State": "exited"},
        {"Names": ["toolkit-env-demo-old-1"], "State": "running"},
    ]
    environment = LabEnvironment("demo", state)
    monkeypatch.setattr(environment, "_podman", FakePodman(containers, network=True))

    plan = make_plan("demo", desired_lab_resources(spec_with(tmp_path)), environment.existing_resources())
    actions = {(step.kind, step.name): step for step in plan.steps}
    assert actions[("network", "toolkit-env-demo")].action == "keep"
    assert actions[("container", "toolkit-env-demo-postgresql-1")].action == "keep"
    started = actions[("container", "toolkit-env-demo-cassandra-1")]
    assert (started.action, started.differences) == ("change", ("state: exited -> running",))
    assert actions[("container", "toolkit-env-demo-prometheus-1")].action == "create"
    assert actions[("container", "toolkit-env-demo-old-1")].action == "delete"
    assert (plan.count("create"), plan.count("keep")) == (4, 2)


def test_a_fresh_environment_takes_a_free_subnet_and_one_whose_network_outlived_its_state_keeps_it() -> None:
    podmans = [{"name": "podman", "subnets": [{"subnet": "10.88.0.0/16"}]}]
    assert choose_network("demo", podmans).subnet == "10.242.20.0/24"
    others = [*podmans, {"name": "toolkit-env-other", "subnets": [{"subnet": "10.242.20.0/24"}]}]
    assert choose_network("demo", others).subnet == "10.242.21.0/24"
    leftover = [*others, {"name": "toolkit-env-demo", "subnets": [{"subnet": "10.242.33.0/24"}]}]
    assert choose_network("demo", leftover).subnet == "10.242.33.0/24"
