"""What ``toolkit bootstrap TARGET`` points at: an address or host name, or an EC2 instance id.

An instance id is looked up with boto3 in the given regions (the AWS inventory's, or ``--region``): the
address to reach is its private IP (as the aws_fleet inventory's default ``ansible_host``), the instance
must be running, and its tags come along so the bootstrap can add the ones the inventory groups on.
"""

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import UsageError

INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True)
class Target:
    address: str  # what SSH connects to
    instance_id: str | None = None
    region: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def is_instance_id(text: str) -> bool:
    return bool(INSTANCE_ID.match(text))


def address_target(text: str) -> Target:
    """An IP address or a host name, checked for shape (resolution is SSH's job)."""
    try:
        return Target(address=str(ipaddress.ip_address(text)))
    except ValueError:
        pass
    if _HOSTNAME.match(text):
        return Target(address=text)
    raise UsageError(f"{text!r} is neither an IP address, a host name nor an EC2 instance id (i-...)")


def ec2_target(instance_id: str, regions: list[str], *, endpoint_url: str | None = None) -> Target:
    """Find a running instance in the first region that has it.

    Raises:
        UsageError: no region has it, it is not running, or it has no address to reach.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    if not regions:
        raise UsageError("no AWS region to look for the instance in", hint="pass --region (or set AWS_REGION)")
    for region in regions:
        client = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url)
        try:
            reservations = client.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "InvalidInstanceID.NotFound",
                "InvalidInstanceID.Malformed",
            ):
                continue
            raise UsageError(f"cannot look up {instance_id} in {region}: {_one_line(exc)}") from None
        except BotoCoreError as exc:
            raise UsageError(f"cannot look up {instance_id} in {region}: {_one_line(exc)}") from None
        instances = [i for r in reservations for i in r.get("Instances", [])]
        if instances:
            return _from_instance(instances[0], region)
    raise UsageError(f"instance {instance_id} not found in {', '.join(regions)}")


def _from_instance(instance: dict[str, Any], region: str) -> Target:
    instance_id = str(instance["InstanceId"])
    state = instance.get("State", {}).get("Name", "unknown")
    if state != "running":
        raise UsageError(f"instance {instance_id} in {region} is {state}, not running")
    address = instance.get("PrivateIpAddress") or instance.get("PublicIpAddress")
    if not address:
        raise UsageError(f"instance {instance_id} in {region} has no IP address to reach")
    tags = {str(t["Key"]): str(t.get("Value", "")) for t in instance.get("Tags", [])}
    return Target(address=str(address), instance_id=instance_id, region=region, tags=tags)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
