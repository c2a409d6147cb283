"""`toolkit env up NAME --provider aws --resources-only`: playbooks/_env_aws.yml's amazon.aws modules against
moto's EC2 server on loopback, then the project's inventory plugin and `down` over what they built.

One environment is brought up, checked resource by resource, brought up again (nothing new), grown by a replica,
listed through plugins/inventory/aws_fleet.py and taken down: each `up` is a real ansible-playbook run, so the
lifecycle shares them rather than paying for one per test.
"""

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.aws_env import spec_of
from tests.unit.conftest import CliOutcome, Project
from tests.unit.plugins.conftest import aws_env, listed, plain
from toolkit.environments.aws_model import ENV_TAG
from toolkit.environments.aws_state import ingress_of

Cli = Callable[..., CliOutcome]
REPO = Path(__file__).resolve().parents[2]
MOTO_ACCOUNT = "123456789012"  # the account moto's server plays; images it registers are owned by it


def tagged(client: Any, describe: str, key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = getattr(client, describe)(Filters=[{"Name": f"tag:{ENV_TAG}", "Values": ["demo"]}])
    return list(found[key])


def tags_of(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags") or ()}


def instances(client: Any) -> list[dict[str, Any]]:
    live = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    mine = [{"Name": f"tag:{ENV_TAG}", "Values": ["demo"]}]
    reservations = client.describe_instances(Filters=mine + live)["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def register_image(client: Any, name: str) -> str:
    image: str = client.register_image(
        Name=name, Architecture="x86_64", RootDeviceName="/dev/xvda", VirtualizationType="hvm"
    )["ImageId"]
    return image


@pytest.fixture
def account(aws: Any, project: Project) -> Any:
    """moto with two Debian images of its own account (the spec's owner rewritten to it), and the project holding
    the real playbook and controller inventory."""
    for relative in ("playbooks/_env_aws.yml", "inventories/controller.yml"):
        (project.root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / relative, project.root / relative)
    spec_file = project.root / "environments" / "demo.yml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["aws"]["image"]["owner"] = MOTO_ACCOUNT
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return aws


def up(cli: Cli) -> dict[str, Any]:
    outcome = cli("env", "up", "demo", "--resources-only", "--json")
    assert outcome.code == 0, outcome.out + outcome.err
    document: dict[str, Any] = json.loads(outcome.out)
    return document


def fleet_inventory(config: Path, moto_url: str) -> dict[str, Any]:
    """The environment as plugins/inventory/aws_fleet.py lists it, through ansible-inventory, from the inventory
    `up` wrote (plugin config and group_vars)."""
    document: dict[str, Any] = plain(listed(config, aws_env(moto_url)))
    return document


def test_up_builds_the_planned_environment_once_grows_it_and_down_removes_only_it(
    cli: Cli, account: Any, project: Project, tmp_path: Path, moto_url: str
) -> None:
    register_image(account, "debian-12-amd64-20261001-1000")
    newest = register_image(account, "debian-12-amd64-20261101-1100")
    register_image(account, "ubuntu-24.04-amd64-20261201")  # newer, but not the pattern
    stranger = account.create_vpc(CidrBlock="10.60.0.0/16", TagSpecifications=spec_of("vpc", Name="demo-vpc"))
    stranger_id = stranger["Vpc"]["VpcId"]

    first = up(cli)
    assert first["before"]["summary"]["create"] == 16
    assert first["after"]["summary"] == {"create": 0, "change": 0, "keep": 16, "delete": 0}
    assert first["run"]["exit_code"] == 0
    endpoints = {host["name"]: host for host in first["hosts"]}
    assert sorted(endpoints) == sorted(tags_of(i)["Name"] for i in instances(account))
    assert endpoints["demo-postgresql-2"]["service"] == "postgresql"
    assert endpoints["demo-postgresql-2"]["zone"] == "eu-west-1b"
    assert endpoints["demo-postgresql-2"]["private_ip"].startswith("10.60.1.")  # in its zone's subnet
    assert endpoints["demo-postgresql-2"]["public_ip"]  # assign_public_ip: SSH from the admin CIDRs

    (vpc,) = tagged(account, "describe_vpcs", "Vpcs")
    vpc_tags = tags_of(vpc)
    assert vpc["CidrBlock"] == "10.60.0.0/16" and vpc["VpcId"] != stranger_id
    assert vpc_tags["owner"] == "sre-platform" and vpc_tags["toolkit:protected"] == "false"
    created, expires = vpc_tags["toolkit:created-at"], vpc_tags["toolkit:expires-at"]
    lifetime = dt.datetime.fromisoformat(expires) - dt.datetime.fromisoformat(created)
    assert lifetime == dt.timedelta(hours=8)  # the spec's ttl, from creation
    subnets = {s["AvailabilityZone"]: s["CidrBlock"] for s in tagged(account, "describe_subnets", "Subnets")}
    assert subnets == {"eu-west-1a": "10.60.0.0/24", "eu-west-1b": "10.60.1.0/24", "eu-west-1c": "10.60.2.0/24"}

    groups = {g["GroupName"]: g for g in tagged(account, "describe_security_groups", "SecurityGroups")}
    assert sorted(groups) == ["demo-cassandra", "demo-postgresql", "demo-prometheus"]
    names = {g["GroupId"]: g["GroupName"] for g in groups.values()}
    rules = {name: ingress_of(group, lambda i: names.get(i or "", "?")) for name, group in groups.items()}
    assert rules["demo-cassandra"] == [
        "tcp/22 from 198.51.100.0/24",
        "tcp/7000 from sg:demo-cassandra",
        "tcp/7070 from sg:demo-prometheus",
        "tcp/9042 from 10.60.0.0/16",
        "tcp/9042 from sg:demo-cassandra",
        "tcp/9100 from sg:demo-prometheus",
    ]
    assert rules["demo-postgresql"] == [
        "tcp/22 from 198.51.100.0/24",
        "tcp/5432 from 10.60.0.0/16",
        "tcp/5432 from sg:demo-postgresql",
        "tcp/9100 from sg:demo-prometheus",
        "tcp/9187 from sg:demo-prometheus",
    ]
    assert not any("0.0.0.0/0" in rule for group in rules.values() for rule in group)

    hosts = {tags_of(i)["Name"]: i for i in instances(account)}
    assert sorted(hosts) == [
        "demo-cassandra-1", "demo-cassandra-2", "demo-cassandra-3", "demo-postgresql-1", "demo-postgresql-2",
        "demo-prometheus-1",
    ]  # fmt: skip
    assert {i["ImageId"] for i in hosts.values()} == {newest}
    assert {i["KeyName"] for i in hosts.values()} == {"toolkit-demo"}
    replica = hosts["demo-postgresql-2"]
    assert replica["InstanceType"] == "t3.medium" and replica["Placement"]["AvailabilityZone"] == "eu-west-1b"
    assert [g["GroupName"] for g in replica["SecurityGroups"]] == ["demo-postgresql"]
    assert tags_of(replica) == {
        "Name": "demo-postgresql-2", ENV_TAG: "demo", "env": "demo", "owner": "sre-platform",
        "service": "postgresql", "cluster": "demo-postgresql", "role": "replica",
    }  # fmt: skip
    assert tags_of(hosts["demo-cassandra-3"])["cassandra_rack"] == "rack2"

    # A second up finds everything: no task changes, no resource is new.
    ids = sorted(hosts), vpc["VpcId"]
    again = up(cli)
    assert again["before"]["summary"]["create"] == 0
    assert again["run"]["totals"]["changed"] == 0, again["run"]
    (vpc_again,) = tagged(account, "describe_vpcs", "Vpcs")
    assert (sorted(tags_of(i)["Name"] for i in instances(account)), vpc_again["VpcId"]) == ids
    assert tags_of(vpc_again)["toolkit:created-at"] == created

    # The inventory up wrote: the plugin places the hosts and gives the topology the roles read, and group_vars
    # made from the spec give each firewall the spec's networks.
    config = Path(again["inventory"])
    assert config == project.home / "environments" / "demo" / "aws" / "inventory" / "demo.aws.yml"
    document = fleet_inventory(config, moto_url)
    assert sorted(document["cassandra"]["hosts"]) == ["demo-cassandra-1", "demo-cassandra-2", "demo-cassandra-3"]
    assert document["postgresql_primary"]["hosts"] == ["demo-postgresql-1"]
    assert document["postgresql_replica"]["hosts"] == ["demo-postgresql-2"]
    assert document["prometheus"]["hosts"] == ["demo-prometheus-1"]
    hostvars = document["_meta"]["hostvars"]
    assert (hostvars["demo-cassandra-3"]["cassandra_dc"], hostvars["demo-cassandra-3"]["cassandra_rack"]) == (
        "dc1", "rack2"
    )  # fmt: skip
    assert hostvars["demo-postgresql-2"]["postgresql_primary_group"] == "postgresql_demo_postgresql_primary"
    seeds = hostvars["demo-cassandra-1"]["cassandra_seeds"]
    assert len(seeds) == 3 and seeds == hostvars["demo-cassandra-2"]["cassandra_seeds"]
    primary = hostvars["demo-postgresql-1"]
    assert primary["ansible_host"] == endpoints["demo-postgresql-1"]["public_ip"]  # reached from the admin CIDRs
    assert (primary["ansible_user"], primary["toolkit_env"]) == ("admin", "demo")
    assert primary["ansible_ssh_private_key_file"] == str(project.home / "environments" / "demo" / "id_ed25519")
    assert primary["hardening_firewall_ssh_sources"] == ["198.51.100.0/24"]  # admin_cidrs, nothing wider
    assert [rule["address"] for rule in primary["postgresql_hba_rules"]] == ["10.60.0.0/16"]  # client_cidrs
    assert primary["node_exporter_firewall_sources"] == ["10.60.0.0/16"]  # scraped from inside the VPC
    created_day = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert primary["hardening_lynis_waivers"][0]["expires"] == (created_day + dt.timedelta(hours=8)).date().isoformat()
    assert hostvars["demo-cassandra-1"]["cassandra_keyspaces"] == [{"name": "app", "replication": {"dc1": 3}}]
    assert hostvars["demo-cassandra-1"]["cassandra_cluster_name"] == "demo"
    assert "postgresql_hba_rules" not in hostvars["demo-cassandra-1"]
    assert hostvars["demo-prometheus-1"]["prometheus_firewall_sources"] == ["10.60.0.0/16", "198.51.100.0/24"]

    # A grown count adds exactly the new host.
    spec_file = project.root / "environments" / "demo.yml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["services"]["postgresql"]["replicas"] = 2
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    grown = up(cli)
    creates = [(s["kind"], s["name"]) for s in grown["before"]["steps"] if s["action"] == "create"]
    assert creates == [("instance", "demo-postgresql-3")]
    assert len(instances(account)) == 7

    # down removes every tagged resource and leaves the untagged VPC that was there before.
    outcome = cli("env", "down", "demo", "--yes", "--json")
    assert outcome.code == 0, outcome.out + outcome.err
    assert instances(account) == [] and tagged(account, "describe_vpcs", "Vpcs") == []
    assert tagged(account, "describe_security_groups", "SecurityGroups") == []
    assert [v["VpcId"] for v in account.describe_vpcs(VpcIds=[stranger_id])["Vpcs"]] == [stranger_id]


def test_no_matching_image_fails_before_anything_is_created(cli: Cli, account: Any) -> None:
    register_image(account, "ubuntu-24.04-amd64-20261201")
    outcome = cli("env", "up", "demo", "--resources-only")
    assert outcome.code == 1
    assert f"no available image named debian-12-amd64-* owned by {MOTO_ACCOUNT} in eu-west-1" in (
        outcome.out + outcome.err
    )
    assert tagged(account, "describe_vpcs", "Vpcs") == []
    assert account.describe_key_pairs()["KeyPairs"] == []


def test_a_stranger_key_pair_of_the_environments_name_stops_up_before_anything_is_made(cli: Cli, account: Any) -> None:
    register_image(account, "debian-12-amd64-20261101-1100")
    account.create_key_pair(KeyName="toolkit-demo")  # someone else's, untagged
    outcome = cli("env", "up", "demo", "--resources-only")
    assert outcome.code == 1
    assert "key pair toolkit-demo exists in eu-west-1 without the tag toolkit:environment=demo" in outcome.err
    assert tagged(account, "describe_vpcs", "Vpcs") == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--resources-only", "--provider", "lab"), "--resources-only is for aws"),
        (("--provider", "gcp"), "--provider 'gcp': valid: aws, lab"),
    ],
)
def test_what_up_cannot_do_is_refused_before_anything_is_made(
    cli: Cli, account: Any, arguments: tuple[str, ...], message: str
) -> None:
    outcome = cli("env", "up", "demo", *arguments)
    assert outcome.code == 2
    assert message in outcome.err
    assert tagged(account, "describe_vpcs", "Vpcs") == [] and account.describe_key_pairs()["KeyPairs"] == []


def test_instances_that_never_answer_ssh_stop_up_with_exit_4_after_the_wait_and_keep_the_resources(
    cli: Cli, account: Any, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configure half's first step: moto's instances have no sshd behind their addresses, and this machine
    may not send packets to them, so every SSH attempt is refused here, as a host still booting refuses it."""
    from ansible.plugins.loader import inventory_loader

    from toolkit.bootstrap import reachability

    # In-process, Ansible's config is this test project's: the project's inventory plugin is found as the
    # checkout's ansible.cfg finds it.
    inventory_loader.add_directory(str(REPO / "plugins" / "inventory"))

    def refused(host: str, port: int, timeout: float) -> str:
        raise ConnectionRefusedError

    monkeypatch.setattr(reachability, "_banner", refused)
    register_image(account, "debian-12-amd64-20261101-1100")

    outcome = cli("env", "up", "demo", "--wait", "2", "--json")
    assert outcome.code == 4, outcome.err
    document = json.loads(outcome.out)
    assert "did not answer SSH within 2s (last attempt: connection refused)" in document["error"]
    assert document["run"]["exit_code"] == 0 and document["after"]["summary"]["create"] == 0
    assert set(document["steps"]) == {"resources", "instances"}  # stopped at ssh: nothing logged in anywhere
    assert document["converge"] is None and document["seconds_to_verified"] is None
    assert not (project.home / "environments" / "demo" / "aws" / "known_hosts").exists()
    assert len(instances(account)) == 6  # what was created stays for the next up (or down)
