"""Taking an environment down on AWS: exactly the resources tagged ``toolkit:environment=NAME``, dependents first.

Nothing untagged is ever deleted. A resource of someone else's inside the environment's VPC (an instance launched
by hand into its subnet) keeps that subnet and the VPC alive: the deletion that AWS refuses is reported and the
rest goes on, so a second `down` after the stranger is gone finishes the job.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from toolkit.environments.aws_model import CREATED_TAG, ENV_TAG, EXPIRES_TAG, OWNER_TAG, PROTECTED_TAG
from toolkit.environments.plan import Step
from toolkit.timestamps import parse_utc

Client = Any  # a boto3 EC2 client


@dataclass(frozen=True)
class EnvironmentListing:
    """One environment found on AWS by its VPC's tags."""

    name: str
    region: str
    vpc_id: str
    owner: str
    created_at: dt.datetime | None
    expires_at: dt.datetime | None
    protected: bool
    hosts: int

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now and not self.protected

    def to_dict(self, now: dt.datetime) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "vpc_id": self.vpc_id,
            "owner": self.owner,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "age_seconds": int((now - self.created_at).total_seconds()) if self.created_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "protected": self.protected,
            "expired": self.expired(now),
            "hosts": self.hosts,
        }


@dataclass
class Teardown:
    environment: str
    deleted: list[Step] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "subnet demo-eu-west-1a (subnet-1): DependencyViolation: ..."

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "deleted": [step.to_dict() for step in self.deleted],
            "failed": self.failed,
        }


def _tags(raw: dict[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in raw.get("Tags") or ()}


def _instances(client: Client, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pages = client.get_paginator("describe_instances").paginate(Filters=filters)
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


_LIVE = {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}


def list_environments(client: Client, region: str) -> list[EnvironmentListing]:
    """Every environment with a VPC in the client's region, from the VPC's tags."""
    vpcs = client.describe_vpcs(Filters=[{"Name": "tag-key", "Values": [ENV_TAG]}])["Vpcs"]
    found = []
    for vpc in vpcs:
        tags = _tags(vpc)
        name = tags[ENV_TAG]
        hosts = _mine(_instances(client, [{"Name": f"tag:{ENV_TAG}", "Values": [name]}, _LIVE]), name)
        found.append(
            EnvironmentListing(
                name=name,
                region=region,
                vpc_id=vpc["VpcId"],
                owner=tags.get(OWNER_TAG, ""),
                created_at=parse_utc(tags.get(CREATED_TAG, "")),
                expires_at=parse_utc(tags.get(EXPIRES_TAG, "")),
                protected=tags.get(PROTECTED_TAG, "").lower() == "true",
                hosts=len(hosts),
            )
        )
    return sorted(found, key=lambda e: e.name)


def _mine(items: list[dict[str, Any]], env: str) -> list[dict[str, Any]]:
    """Only what carries the environment's tag: the server-side filter is asked for it, and checked here too,
    since deleting on the word of a filter alone is one API quirk away from deleting someone else's."""
    return [item for item in items if _tags(item).get(ENV_TAG) == env]


def take_down(client: Client, env: str, *, wait: Callable[[str, list[str]], None] | None = None) -> Teardown:
    """Delete every resource tagged as the environment's, dependents first. ``wait(waiter, ids)`` waits for
    instances to terminate and NAT gateways to go (default: boto3's waiters).

    The network of a VPC that holds instances which are not the environment's is left in place (subnets, route
    tables, gateway, VPC), and so is a security group such an instance uses: each is reported as left, with why.
    """
    tagged = [{"Name": f"tag:{ENV_TAG}", "Values": [env]}]
    result = Teardown(env)

    def waiter(name: str, ids: list[str]) -> None:
        if not ids:
            return
        if wait is not None:
            wait(name, ids)
            return
        key = "InstanceIds" if name == "instance_terminated" else "NatGatewayIds"
        client.get_waiter(name).wait(**{key: ids}, WaiterConfig={"Delay": 5, "MaxAttempts": 120})

    def named(raw: dict[str, Any], resource_id: str) -> str:
        return _tags(raw).get("Name") or raw.get("GroupName") or raw.get("KeyName") or resource_id

    def label(kind: str, raw: dict[str, Any], resource_id: str) -> str:
        return f"{kind} {named(raw, resource_id)} ({resource_id})"

    def attempt(kind: str, raw: dict[str, Any], id_key: str, delete: Callable[[], Any], keep: str = "") -> None:
        resource_id = raw[id_key]
        if keep:
            result.failed.append(f"{label(kind, raw, resource_id)}: left: {keep}")
            return
        try:
            delete()
        except Exception as exc:  # botocore's ClientError: AWS said no (a dependency, a permission)
            error = (getattr(exc, "response", {}) or {}).get("Error", {})
            code, message = error.get("Code", type(exc).__name__), error.get("Message", str(exc))
            result.failed.append(f"{label(kind, raw, resource_id)}: {code}: {message}")
            return
        result.deleted.append(Step("delete", kind, named(raw, resource_id), resource_id))

    vpcs = _mine(client.describe_vpcs(Filters=tagged)["Vpcs"], env)
    vpc_ids = [vpc["VpcId"] for vpc in vpcs]
    everyone = _instances(client, [{"Name": "vpc-id", "Values": vpc_ids}, _LIVE]) if vpc_ids else []
    strangers = [i for i in everyone if _tags(i).get(ENV_TAG) != env]
    occupied = {i["VpcId"]: i["InstanceId"] for i in strangers}
    used_groups = {g["GroupId"]: i["InstanceId"] for i in strangers for g in i.get("SecurityGroups") or ()}

    def squatter(vpc_id: str | None) -> str:
        return f"VPC {vpc_id} holds {occupied[vpc_id]}, not the environment's" if vpc_id in occupied else ""

    instances = _mine(_instances(client, [*tagged, _LIVE]), env)
    for instance in instances:
        result.deleted.append(Step("delete", "instance", _tags(instance).get("Name", ""), instance["InstanceId"]))
    if instances:
        client.terminate_instances(InstanceIds=[i["InstanceId"] for i in instances])
        waiter("instance_terminated", [i["InstanceId"] for i in instances])

    for key in _mine(client.describe_key_pairs(Filters=tagged)["KeyPairs"], env):
        attempt("key_pair", key, "KeyName", partial(client.delete_key_pair, KeyName=key["KeyName"]))

    nats = _mine(client.describe_nat_gateways(Filter=tagged)["NatGateways"], env)
    nats = [nat for nat in nats if nat["State"] in ("pending", "available")]
    for nat in nats:
        delete_nat = partial(client.delete_nat_gateway, NatGatewayId=nat["NatGatewayId"])
        attempt("nat_gateway", nat, "NatGatewayId", delete_nat, squatter(nat.get("VpcId")))
    waiter("nat_gateway_deleted", [n["NatGatewayId"] for n in nats if n["VpcId"] not in occupied])

    groups = _mine(client.describe_security_groups(Filters=tagged)["SecurityGroups"], env)
    free = [g for g in groups if g["GroupId"] not in used_groups]
    for group in free:  # the groups name each other in their rules: empty them all before deleting any
        if group.get("IpPermissions"):
            client.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
    for group in groups:
        in_use = (
            f"used by {used_groups[group['GroupId']]}, not the environment's" if group["GroupId"] in used_groups else ""
        )
        attempt(
            "security_group", group, "GroupId", partial(client.delete_security_group, GroupId=group["GroupId"]), in_use
        )

    for table in _mine(client.describe_route_tables(Filters=tagged)["RouteTables"], env):

        def disassociate_and_delete(t: dict[str, Any] = table) -> None:
            for association in t.get("Associations") or ():
                if not association.get("Main"):
                    client.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
            client.delete_route_table(RouteTableId=t["RouteTableId"])

        attempt("route_table", table, "RouteTableId", disassociate_and_delete, squatter(table.get("VpcId")))

    for subnet in _mine(client.describe_subnets(Filters=tagged)["Subnets"], env):
        delete_subnet = partial(client.delete_subnet, SubnetId=subnet["SubnetId"])
        attempt("subnet", subnet, "SubnetId", delete_subnet, squatter(subnet.get("VpcId")))

    for gateway in _mine(client.describe_internet_gateways(Filters=tagged)["InternetGateways"], env):
        attached = [a["VpcId"] for a in gateway.get("Attachments") or ()]

        def detach_and_delete(g: dict[str, Any] = gateway, vpcs_of: list[str] = attached) -> None:
            for vpc_id in vpcs_of:
                client.detach_internet_gateway(InternetGatewayId=g["InternetGatewayId"], VpcId=vpc_id)
            client.delete_internet_gateway(InternetGatewayId=g["InternetGatewayId"])

        keep = next((reason for reason in map(squatter, attached) if reason), "")
        attempt("internet_gateway", gateway, "InternetGatewayId", detach_and_delete, keep)

    for vpc in vpcs:
        attempt("vpc", vpc, "VpcId", partial(client.delete_vpc, VpcId=vpc["VpcId"]), squatter(vpc["VpcId"]))
    return result
