"""The lab's hosts as EC2 instances in moto: twins at the same private addresses, tagged as the fleet would be.

moto's EC2 (on loopback) gets a VPC with the lab's subnet and one instance per lab host, at that host's address,
tagged as the fleet would be (Name, service, role, cassandra_dc/rack). A `*.aws.yml` config in a directory lists
them; next to it, group_vars/ holds what any real AWS inventory folder holds: the connection settings (here the
lab's user, key and known_hosts) and the environment's values (here a copy of the lab's). Used by
test_inventory_aws.py (a converge through that inventory) and test_bootstrap.py (a bootstrap by instance id).
"""

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.lab.helpers import PROJECT
from tests.unit.plugins.moto_fleet import AMI, ec2
from toolkit.lab.profiles import SUBNET, all_hosts

REGION = "eu-west-1"


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


def launch_twins(url: str, hosts: tuple[str, ...]) -> str:
    """One instance per lab host, at its address, tagged as the fleet's; returns the subnet's id."""
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
    return str(subnet)


def inventory_folder(directory: Path) -> Path:
    """prod.aws.yml plus group_vars/, laid out as inventories/aws/ is."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "lab.aws.yml"
    config.write_text(yaml.safe_dump({"plugin": "aws_fleet", "regions": [REGION], "filters": {"tag:env": "lab"}}))
    lab = PROJECT / "inventories" / "lab"
    connection = yaml.safe_load((lab / "hosts.yml").read_text())["all"]["vars"]
    shutil.copytree(lab / "group_vars", directory / "group_vars")
    lab_all = yaml.safe_load((lab / "group_vars" / "all.yml").read_text()) or {}
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump({**lab_all, **connection}, sort_keys=False))
    return config
