"""The aws_fleet inventory drives a real converge: moto instances whose private addresses are the lab's hosts.

moto's EC2 (on loopback) gets a VPC with the lab's subnet and one instance per lab host, at that host's address,
tagged as the fleet would be (Name, service, role, cassandra_dc/rack). A `*.aws.yml` config in a temporary
directory lists them; next to it, group_vars/ holds what any real AWS inventory folder holds: the connection
settings (here the lab's user, key and known_hosts) and the environment's values (here a copy of the lab's).
`toolkit converge base --check -i <config>` must then reach every lab host over SSH and succeed. The file sorts
after test_converge.py on purpose: the hosts are converged by then, so the check run has nothing to fail on.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.conftest import Lab
from tests.lab.helpers import PROJECT, parse_json, toolkit
from tests.unit.plugins.moto_fleet import AMI, ec2, env_for, moto_server
from toolkit.lab.profiles import SUBNET, all_hosts

pytestmark = pytest.mark.lab
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


def fleet_tags(name: str, groups: tuple[str, ...], hostvars: dict[str, Any]) -> dict[str, str]:
    """The tags an operator would put on the lab host's EC2 twin."""
    tags = {"Name": name, "env": "lab"}
    for group in groups:
        if group.startswith("postgresql_"):
            tags |= {"service": "postgresql", "role": group.removeprefix("postgresql_")}
        else:
            tags["service"] = group
    tags |= {key: str(value) for key, value in hostvars.items() if key in ("cassandra_dc", "cassandra_rack")}
    return tags


def launch_twins(url: str, hosts: tuple[str, ...]) -> None:
    client = ec2(url, REGION)
    vpc = client.create_vpc(CidrBlock="10.242.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock=SUBNET, AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    for host in (h for h in all_hosts() if h.name in hosts):
        tags = fleet_tags(host.name, host.groups, host.hostvars)
        client.run_instances(
            ImageId=AMI,
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            PrivateIpAddress=host.address,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )


def inventory_folder(directory: Path) -> Path:
    """prod.aws.yml plus group_vars/, laid out as inventories/aws/ is."""
    config = directory / "lab.aws.yml"
    config.write_text(yaml.safe_dump({"plugin": "aws_fleet", "regions": [REGION], "filters": {"tag:env": "lab"}}))
    lab = PROJECT / "inventories" / "lab"
    connection = yaml.safe_load((lab / "hosts.yml").read_text())["all"]["vars"]
    shutil.copytree(lab / "group_vars", directory / "group_vars")
    lab_all = yaml.safe_load((lab / "group_vars" / "all.yml").read_text()) or {}
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump({**lab_all, **connection}, sort_keys=False))
    return config


def test_converge_check_runs_on_every_lab_host_through_the_aws_inventory(lab: Lab, moto: str, tmp_path: Path) -> None:
    launch_twins(moto, lab.hosts)
    config = inventory_folder(tmp_path)
    env = {**env_for(moto), "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    shown = toolkit("inventory", "-i", str(config), "--list", env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    listing = parse_json(shown.stdout)
    assert set(listing["_meta"]["hostvars"]) == set(lab.hosts)
    for name in lab.hosts:
        address = next(h.address for h in all_hosts() if h.name == name)
        assert listing["_meta"]["hostvars"][name]["ansible_host"] == address

    result = toolkit("converge", "base", "--check", "-i", str(config), "--json", env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    document = parse_json(result.stdout)
    assert set(document["hosts"]) == set(lab.hosts)
    assert document["exit_code"] == 0 and document["status"] == "successful"
    assert all(stats["unreachable"] == 0 and stats["failed"] == 0 for stats in document["hosts"].values())
