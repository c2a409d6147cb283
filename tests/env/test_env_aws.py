"""`toolkit env up NAME` on AWS, from nothing to verified: moto's EC2 server (loopback) stands in for AWS, and
lab containers for the instances it launches.

The spec (written here, read through TOOLKIT_ENVIRONMENTS) puts one subnet in a VPC and asks the controller
to reach the hosts on their private addresses (`connect_via: private`, as over a VPN), through a package proxy
(`apt_proxy`). `up --resources-only` builds the network, groups, key pair and instances in moto; each instance
then gets a twin: a bare container (sshd, Debian's `admin` login with the environment's key, no Python) at the
instance's private address, on a podman network with the subnet's CIDR. The full `up` must then find the
instances through the inventory it wrote, wait for SSH, learn the host keys, run the access play, converge
`site` and pass every verify suite; a second `up` changes nothing; `down` removes every tagged resource.
"""

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.lab.helpers import PROJECT, parse_json, toolkit
from tests.unit.plugins.moto_fleet import ec2, env_for, moto_server
from toolkit.lab.aptcache import AptCache
from toolkit.lab.lab import Lab, LabPaths
from toolkit.lab.profiles import LabNetwork

pytestmark = pytest.mark.env_lab

NAME = "twins"
REGION = "eu-west-1"
SUBNET = "10.242.40.0/24"
GATEWAY = "10.242.40.1"
MOTO_ACCOUNT = "123456789012"  # images registered in moto's server are owned by it
HOME = PROJECT / ".toolkit" / "env-aws-e2e"
HOSTS = [f"{NAME}-postgresql-1", f"{NAME}-prometheus-1"]
SUITES = {"base", "hardening", "node_exporter", "postgresql", "prometheus"}


def spec() -> dict[str, Any]:
    return {
        "name": NAME,
        "owner": "sre-platform",
        "ttl": "2h",
        "aws": {
            "region": REGION,
            "azs": [f"{REGION}a"],
            "vpc_cidr": "10.242.0.0/16",
            "subnets": {f"{REGION}a": SUBNET},
            "image": {"owner": MOTO_ACCOUNT, "name": "debian-12-amd64-*"},
            "admin_cidrs": [SUBNET],  # the controller is the network's gateway
            "client_cidrs": [SUBNET],
            "connect_via": "private",
            "apt_proxy": f"http://{GATEWAY}:3142",  # the twins' network's package cache
        },
        "services": {"postgresql": {"replicas": 0}, "prometheus": {}},
    }


class Twins(Lab):
    """The instances' stand-ins: bare hosts on a network of the subnet's CIDR, with its package cache."""

    def hosts(self) -> list[Any]:
        return []


@dataclass
class Setting:
    env: dict[str, str]
    moto: str
    twins: Twins


@pytest.fixture(scope="module")
def setting() -> Iterator[Setting]:
    specs = HOME / "environments-specs"
    specs.mkdir(parents=True, exist_ok=True)
    (specs / f"{NAME}.yml").write_text(yaml.safe_dump(spec(), sort_keys=False))
    twins_dir = HOME / "twins"
    twins_dir.mkdir(parents=True, exist_ok=True)
    conf = twins_dir / "containers.conf"
    if not conf.exists():
        conf.symlink_to(PROJECT / ".toolkit" / "lab" / "containers.conf")
    network = LabNetwork("toolkit-twins", SUBNET, GATEWAY, "io.toolkit.twins=1", "toolkit-twin-")
    twins = Twins(LabPaths(twins_dir, twins_dir / "hosts.yml"), network)
    twins.paths.state_file.write_text(json.dumps({"profile": "twins", "network": network.name}))
    with moto_server() as url:
        client = ec2(url, REGION)
        client.register_image(
            Name="debian-12-amd64-20261101-1100", Architecture="x86_64", RootDeviceName="/dev/xvda",
            VirtualizationType="hvm",
        )  # fmt: skip
        env = {**env_for(url), "TOOLKIT_HOME": str(HOME), "TOOLKIT_ENVIRONMENTS": str(specs)}
        try:
            yield Setting(env, url, twins)
        finally:
            if os.environ.get("TOOLKIT_LAB_KEEP") != "1":
                try:
                    toolkit("env", "down", NAME, "--yes", env=env, timeout=300)
                finally:
                    try:
                        twins.down(purge_cache=True)
                    finally:
                        shutil.rmtree(HOME, ignore_errors=True)


def tagged_instances(url: str) -> list[dict[str, Any]]:
    found = ec2(url, REGION).describe_instances(
        Filters=[
            {"Name": "tag:toolkit:environment", "Values": [NAME]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return [i for r in found["Reservations"] for i in r["Instances"]]


def name_of(instance: dict[str, Any]) -> str:
    return str(next(t["Value"] for t in instance["Tags"] if t["Key"] == "Name"))


def test_twins_come_up_verified_on_their_private_addresses_and_go_without_a_trace(setting: Setting) -> None:
    resources = toolkit("env", "up", NAME, "--resources-only", "--json", env=setting.env, timeout=600)
    assert resources.returncode == 0, resources.stderr[-3000:]
    launched = {name_of(i): i["PrivateIpAddress"] for i in tagged_instances(setting.moto)}
    assert sorted(launched) == HOSTS

    # Each instance's twin: the image's login with the key pair's key, as a fresh Debian instance has.
    public_key = (HOME / "environments" / NAME / "id_ed25519.pub").read_text()
    setting.twins.bring_up([])  # the network
    for name, address in launched.items():
        setting.twins.add_bare(name, address, "admin", public_key=public_key)
    # The package cache binds to the gateway's address, which the bridge has only once a container is on it.
    cache = AptCache(setting.twins.paths.apt_cache, GATEWAY)
    cache.stop()
    cache.start()

    up = toolkit("env", "up", NAME, "--json", "--wait", "120", env=setting.env, timeout=2400)
    assert up.returncode == 0, (up.stdout[-3000:], up.stderr[-3000:])
    document = parse_json(up.stdout)
    print(f"\n{NAME} (aws on moto): from nothing to verified in {document['seconds_to_verified']:.0f} s;"
          f" steps: {document['steps']}")  # fmt: skip
    steps = {"resources", "instances", "ssh", "access", "converge"} | {f"verify {suite}" for suite in SUITES}
    assert set(document["steps"]) == steps
    # The hosts were reached where the spec said: their private addresses.
    endpoints = {(e["host"], e["service"]): e["address"] for e in document["endpoints"]}
    assert endpoints[(f"{NAME}-postgresql-1", "postgresql")] == f"{launched[f'{NAME}-postgresql-1']}:5432"
    assert endpoints[(f"{NAME}-prometheus-1", "prometheus")] == f"{launched[f'{NAME}-prometheus-1']}:9090"
    verdicts = {result["target"]: result for result in document["verify"]}
    assert set(verdicts) == SUITES
    for suite, result in verdicts.items():
        assert result["exit_code"] == 0, f"{suite}: {result['failures']}"
        assert all(v["passed"] > 0 and v["failed"] == 0 for v in result["hosts"].values()), suite
    known = (HOME / "environments" / NAME / "aws" / "known_hosts").read_text().split("\n")
    assert {line.split()[0] for line in known if line} == set(launched.values())  # learned on first use

    again = toolkit("env", "up", NAME, "--json", "--no-verify", env=setting.env, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    second = parse_json(again.stdout)
    assert second["before"]["summary"]["create"] == 0 and second["before"]["summary"]["change"] == 0
    assert second["converge"]["totals"]["changed"] == 0, second["converge"]["changed_tasks"]
    assert second["verify"] == [] and second["seconds_to_verified"] is None

    down = toolkit("env", "down", NAME, "--yes", "--json", env=setting.env, timeout=600)
    assert down.returncode == 0, down.stderr[-3000:]
    assert tagged_instances(setting.moto) == []
    vpcs = ec2(setting.moto, REGION).describe_vpcs(Filters=[{"Name": "tag:toolkit:environment", "Values": [NAME]}])
    assert vpcs["Vpcs"] == []
