"""moto's EC2 server on loopback and the fleets the aws_fleet tests and benchmark seed into it.

Shared by tests/unit/plugins (a session fixture), tests/lab/test_inventory_aws.py and benchmarks/inventory.py,
so every layer measures and asserts against the same data.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
AMI = "ami-12c6146b"  # one of moto's built-in images; any id in its catalogue works
# Credentials moto accepts; exported only into the processes that talk to the server.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's server on a free loopback port; yield its URL; stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        # moto keeps nothing worth a graceful shutdown, and its server takes seconds to honour SIGTERM.
        process.kill()
        process.wait()


def reset(url: str) -> None:
    """Forget every resource moto holds."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=30).close()


def ec2(url: str, region: str, **credentials: str) -> Any:
    import boto3

    keys = credentials or {
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
    return boto3.client("ec2", region_name=region, endpoint_url=url, **keys)


@dataclass(frozen=True)
class Batch:
    """``count`` instances launched as reservations of ``per_reservation``, all with the same tags."""

    region: str
    count: int
    tags: dict[str, str]
    per_reservation: int = 10
    zone: str | None = None
    subnet_id: str | None = None
    private_ips: Sequence[str] = ()
    instance_type: str = "t3.small"


def launch(client: Any, batch: Batch) -> list[str]:
    """Launch a batch; returns the instance ids in launch order."""
    ids: list[str] = []
    tag_spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in batch.tags.items()]}]
    remaining = batch.count
    index = 0
    while remaining > 0:
        size = 1 if batch.private_ips else min(batch.per_reservation, remaining)
        kwargs: dict[str, Any] = {
            "ImageId": AMI,
            "MinCount": size,
            "MaxCount": size,
            "InstanceType": batch.instance_type,
        }
        if batch.tags:
            kwargs["TagSpecifications"] = tag_spec
        if batch.zone:
            kwargs["Placement"] = {"AvailabilityZone": batch.zone}
        if batch.subnet_id:
            kwargs["SubnetId"] = batch.subnet_id
        if batch.private_ips:
            kwargs["PrivateIpAddress"] = batch.private_ips[index]
        ids.extend(i["InstanceId"] for i in client.run_instances(**kwargs)["Instances"])
        remaining -= size
        index += 1
    return ids


def env_for(url: str) -> dict[str, str]:
    """The environment a process needs to reach moto instead of AWS."""
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": url}


def scrubbed_environ() -> dict[str, str]:
    """os.environ without any real AWS settings a developer may have (profiles, keys, config files)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


# The keyed groups that give amazon.aws.aws_ec2 the groups aws_fleet makes by default (service groups by
# name; cluster, env, role, region and zone with a prefix), so the two can be compared on the same data.
AWS_EC2_KEYED_GROUPS: list[dict[str, str]] = [
    {"key": "tags.service", "prefix": "", "separator": ""},
    {"key": "tags.cluster", "prefix": "cluster"},
    {"key": "tags.env", "prefix": "env"},
    {"key": "tags.role", "prefix": "role"},
    {"key": "placement.region", "prefix": "region"},
    {"key": "placement.availability_zone", "prefix": "az"},
]


def aws_ec2_config(
    regions: Sequence[str], filters: dict[str, Any], groups: dict[str, str], states: Sequence[str] = ("running",)
) -> dict[str, Any]:
    """An amazon.aws.aws_ec2 config equivalent to aws_fleet's defaults (running instances, by instance id), or
    to aws_fleet's ``states``."""
    return {
        "plugin": "amazon.aws.aws_ec2",
        "regions": list(regions),
        "filters": {**filters, "instance-state-name": list(states)},
        "hostnames": ["instance-id"],
        "keyed_groups": AWS_EC2_KEYED_GROUPS,
        "groups": groups,
    }


def members(document: dict[str, Any]) -> dict[str, set[str]]:
    """Every group of an ``ansible-inventory --list`` document with all its hosts, descendants' included."""

    def hosts_of(group: str) -> set[str]:
        entry = document.get(group) or {}
        found = set(entry.get("hosts") or ())
        for child in entry.get("children") or ():
            found |= hosts_of(child)
        return found

    return {group: hosts_of(group) for group in document if group != "_meta"}


# The cluster topology vars the plugin sets on Cassandra and PostgreSQL hosts only (aws_ec2 has none).
TOPOLOGY_VARS = (
    "cassandra_dc",
    "cassandra_rack",
    "cassandra_seeds",
    "postgresql_role",
    "postgresql_primary_group",
    "postgresql_replica_group",
)
