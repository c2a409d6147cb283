"""The inventory `toolkit env up` writes for an AWS environment: its group_vars fit the roles that read them.

How the plugin lists the hosts with these variables is tests/unit/test_env_up.py's (against moto).
"""

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from toolkit.environments.aws_inventory import group_vars, plugin_config
from toolkit.environments.spec import EnvironmentSpec, parse_spec
from toolkit.paths import StatePaths

ROOT = Path(__file__).resolve().parents[2]
CREATED = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)
# The roles each group's hosts run (playbooks/site.yml): every host the baseline, each service its own.
ROLES = {
    "all": ("base", "hardening", "node_exporter"),
    "cassandra": ("cassandra",),
    "postgresql": ("postgresql",),
    "prometheus": ("prometheus", "alertmanager"),
}


def demo(*, drop: tuple[str, ...] = (), aws: dict[str, Any] | None = None, **changes: Any) -> EnvironmentSpec:
    document = yaml.safe_load((ROOT / "environments" / "demo.yml").read_text())
    document = {key: value for key, value in document.items() if key not in drop} | changes
    document["aws"] |= aws or {}
    return parse_spec(document, ROOT / "environments" / "demo.yml", now=CREATED)


def role_options(role: str) -> dict[str, Any]:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options: dict[str, Any] = specs["argument_specs"]["main"]["options"]
    return options


# Read by the prometheus role from every target's hostvars (plugins/filter/prometheus_targets.py), not its own.
TARGET_VARIABLES = {"prometheus_target_address"}
PROXIED = {"apt_proxy": "http://proxy.internal:3142", "connect_via": "private"}


@pytest.mark.parametrize("aws", [{}, PROXIED], ids=["public", "private-proxied"])
@pytest.mark.parametrize("group", sorted(ROLES))
def test_every_generated_variable_is_an_option_of_a_role_its_hosts_run_and_fits_its_spec(
    group: str, aws: dict[str, str], tmp_path: Path
) -> None:
    variables = group_vars(demo(aws=aws), StatePaths(home=tmp_path), tmp_path / "id_ed25519", CREATED)[group]
    connection = {k for k in variables if k.startswith(("ansible_", "toolkit_"))} | TARGET_VARIABLES
    claimed: set[str] = set()
    for role in ROLES[group]:
        options = role_options(role)
        mine = {k: v for k, v in variables.items() if k in options}
        claimed |= set(mine)
        result = ArgumentSpecValidator(options).validate(mine)
        assert result.error_messages == [], f"{role}: {result.error_messages}"
    assert set(variables) - connection - claimed == set(), "variables no role of the group reads"


def test_the_firewalls_open_only_what_the_spec_names(tmp_path: Path) -> None:
    found = group_vars(demo(), StatePaths(home=tmp_path), tmp_path / "id_ed25519", CREATED)
    assert found["all"]["hardening_firewall_ssh_sources"] == ["198.51.100.0/24"]
    assert found["cassandra"]["cassandra_firewall_client_sources"] == ["10.60.0.0/16"]
    assert found["cassandra"]["cassandra_keyspaces"] == [{"name": "app", "replication": {"dc1": 3}}]
    # Passwords are generated into the environment's own state directory, never written here.
    password = found["postgresql"]["postgresql_users"][0]["password"]
    assert str(tmp_path / "environments" / "demo" / "aws" / "secrets" / "postgresql-app") in password
    assert password.startswith("{{ lookup('ansible.builtin.password',")


def test_a_spec_without_a_service_gets_no_group_vars_for_it(tmp_path: Path) -> None:
    services = {"postgresql": {"replicas": 0}}
    found = group_vars(demo(services=services), StatePaths(home=tmp_path), tmp_path / "k", CREATED)
    assert sorted(found) == ["all", "postgresql"]


def test_the_lynis_waiver_ends_with_the_environment(tmp_path: Path) -> None:
    state, key = StatePaths(home=tmp_path), tmp_path / "k"
    waiver = group_vars(demo(), state, key, CREATED)["all"]["hardening_lynis_waivers"]
    assert waiver[0]["test"] == "NETW-2705" and waiver[0]["expires"] == "2026-12-05"  # created + 8h
    # A protected environment never expires: its waiver is looked at again a year after creation.
    protected = group_vars(demo(drop=("ttl",), protected=True), state, key, CREATED)
    assert protected["all"]["hardening_lynis_waivers"][0]["expires"] == "2027-12-05"


def test_the_plugin_config_selects_the_environment_by_its_tag() -> None:
    config = plugin_config(demo())
    assert config["filters"] == {"tag:toolkit:environment": "demo"} and config["regions"] == ["eu-west-1"]
    assert config["ansible_host"][0] == "ip-address"


def test_the_hosts_are_reached_where_the_spec_says_and_scraped_inside_the_vpc(tmp_path: Path) -> None:
    state, key = StatePaths(home=tmp_path), tmp_path / "k"
    # public: the controller uses the public address; Prometheus still scrapes the private one.
    assert plugin_config(demo())["ansible_host"] == ["ip-address", "private-ip-address"]
    public = group_vars(demo(), state, key, CREATED)["all"]
    assert public["prometheus_target_address"] == "{{ aws_private_ip | default(ansible_host) }}"
    assert "base_apt_proxy" not in public
    # private (a VPN into the VPC): one address for both, and packages through the spec's proxy.
    assert plugin_config(demo(aws=PROXIED))["ansible_host"] == ["private-ip-address", "ip-address"]
    private = group_vars(demo(aws=PROXIED), state, key, CREATED)["all"]
    assert "prometheus_target_address" not in private
    assert private["base_apt_proxy"] == "http://proxy.internal:3142"
