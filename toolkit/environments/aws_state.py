"""What an environment has on AWS now, read by its ``toolkit:environment`` tag, in the shape aws_model describes.

Only tagged resources are read, so nothing else in the account can ever end up in a plan; references between
resources (a subnet's VPC, an instance's security group) are given by the other resource's Name tag, as the model
writes them, and become ``?ID`` when the referenced resource is not the environment's.
"""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from toolkit.environments.aws_model import ENV_TAG, Resource, resource, sort_rules, tags_text
from toolkit.errors import ToolkitError, UsageError
from toolkit.exit_codes import ExitCode

Client = Any  # a boto3 EC2 client (boto3 ships no type stubs)
_LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
_LIVE_NAT_STATES = ["pending", "available"]


def _tags(raw: dict[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in raw.get("Tags") or ()}


def _name(raw: dict[str, Any], fallback: str) -> str:
    return _tags(raw).get("Name") or fallback


def _pages(client: Client, operation: str, key: str, **arguments: Any) -> list[dict[str, Any]]:
    paginator = client.get_paginator(operation)
    return [item for page in paginator.paginate(**arguments) for item in page.get(key, [])]


def _reservations(client: Client, **arguments: Any) -> list[dict[str, Any]]:
    return [i for r in _pages(client, "describe_instances", "Reservations", **arguments) for i in r["Instances"]]


def _live_instances(client: Client, env: str) -> list[dict[str, Any]]:
    """The environment's instances that are not terminated (or terminating): the tag asked of AWS's filter, and
    checked on every result, so no quirk of a filter puts another's instance in a plan."""
    filters = [
        {"Name": f"tag:{ENV_TAG}", "Values": [env]},
        {"Name": "instance-state-name", "Values": _LIVE_INSTANCE_STATES},
    ]
    return [i for i in _reservations(client, Filters=filters) if _tags(i).get(ENV_TAG) == env]


def read_environment(client: Client, env: str) -> list[Resource]:
    """Every live resource tagged ``toolkit:environment=env`` in the client's region."""
    tagged = [{"Name": f"tag:{ENV_TAG}", "Values": [env]}]
    vpcs = _pages(client, "describe_vpcs", "Vpcs", Filters=tagged)
    gateways = client.describe_internet_gateways(Filters=tagged)["InternetGateways"]
    subnets = _pages(client, "describe_subnets", "Subnets", Filters=tagged)
    tables = _pages(client, "describe_route_tables", "RouteTables", Filters=tagged)
    nats = _pages(client, "describe_nat_gateways", "NatGateways", Filter=tagged)
    nats = [nat for nat in nats if nat.get("State") in _LIVE_NAT_STATES]
    groups = _pages(client, "describe_security_groups", "SecurityGroups", Filters=tagged)
    keys = client.describe_key_pairs(Filters=tagged)["KeyPairs"]
    instances = _live_instances(client, env)
    # The filter asked for the tag; checked here too, so no quirk of a filter puts another's resource in a plan.
    vpcs, gateways, subnets, tables, nats, groups, keys = (
        [item for item in items if _tags(item).get(ENV_TAG) == env]
        for items in (vpcs, gateways, subnets, tables, nats, groups, keys)
    )

    names: dict[str, str] = {}
    for items, id_key in ((vpcs, "VpcId"), (gateways, "InternetGatewayId"), (subnets, "SubnetId")):
        names.update({item[id_key]: _name(item, item[id_key]) for item in items})
    names.update({group["GroupId"]: _name(group, group["GroupName"]) for group in groups})

    def named(resource_id: str | None) -> str:
        return names.get(resource_id or "", f"?{resource_id}")

    found = [resource("vpc", _name(v, v["VpcId"]), v["VpcId"], cidr=v["CidrBlock"]) for v in vpcs]
    for gateway in gateways:
        attached = [a["VpcId"] for a in gateway.get("Attachments") or ()]
        vpc = named(attached[0]) if attached else ""
        found.append(
            resource(
                "internet_gateway", _name(gateway, gateway["InternetGatewayId"]), gateway["InternetGatewayId"], vpc=vpc
            )
        )
    found += [
        resource(
            "subnet",
            _name(s, s["SubnetId"]),
            s["SubnetId"],
            vpc=named(s["VpcId"]),
            zone=s["AvailabilityZone"],
            cidr=s["CidrBlock"],
        )
        for s in subnets
    ]
    for table in tables:
        default = [
            r.get("GatewayId") for r in table.get("Routes") or () if r.get("DestinationCidrBlock") == "0.0.0.0/0"
        ]
        found.append(
            resource(
                "route_table",
                _name(table, table["RouteTableId"]),
                table["RouteTableId"],
                vpc=named(table["VpcId"]),
                default_route=named(default[0]) if default else "",
            )
        )
    found += [
        resource("nat_gateway", _name(n, n["NatGatewayId"]), n["NatGatewayId"], subnet=named(n["SubnetId"]))
        for n in nats
    ]
    found += [
        resource("security_group", _name(g, g["GroupName"]), g["GroupId"], ingress=", ".join(ingress_of(g, named)))
        for g in groups
    ]
    found += [resource("key_pair", k["KeyName"], k.get("KeyPairId", "")) for k in keys]
    for instance in instances:
        groups_of = [named(g["GroupId"]) for g in instance.get("SecurityGroups") or ()]
        found.append(
            resource(
                "instance",
                _name(instance, instance["InstanceId"]),
                instance["InstanceId"],
                instance_type=instance["InstanceType"],
                subnet=named(instance.get("SubnetId")),
                security_group=", ".join(sorted(groups_of)),
                key_pair=instance.get("KeyName", ""),
                tags=tags_text(_tags(instance)),
            )
        )
    return found


@dataclass(frozen=True)
class Endpoint:
    """One of the environment's hosts as `up` reports it: where to reach it."""

    name: str
    service: str
    zone: str
    state: str
    private_ip: str
    public_ip: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def endpoints(client: Client, env: str) -> list[Endpoint]:
    """The environment's live instances, by name: service, zone, state and addresses."""
    return sorted(
        (
            Endpoint(
                name=_name(i, i["InstanceId"]),
                service=_tags(i).get("service", ""),
                zone=i.get("Placement", {}).get("AvailabilityZone", ""),
                state=i.get("State", {}).get("Name", ""),
                private_ip=i.get("PrivateIpAddress", ""),
                public_ip=i.get("PublicIpAddress", ""),
            )
            for i in _live_instances(client, env)
        ),
        key=lambda e: e.name,
    )


def ingress_of(group: dict[str, Any], named: Callable[[str | None], str]) -> list[str]:
    """A security group's ingress as ``tcp/PORT from SOURCE`` rules (port ranges and other protocols as they are)."""
    rules: set[str] = set()
    for permission in group.get("IpPermissions") or ():
        low, high, protocol = permission.get("FromPort"), permission.get("ToPort"), permission.get("IpProtocol")
        port = f"{protocol}/{low}" if low == high else f"{protocol}/{low}-{high}"
        sources: Iterable[str] = [
            *(r["CidrIp"] for r in permission.get("IpRanges") or ()),
            *(f"sg:{named(p['GroupId'])}" for p in permission.get("UserIdGroupPairs") or ()),
        ]
        rules.update(f"{port} from {source}" for source in sources)
    tcp = {rule for rule in rules if rule.startswith("tcp/") and rule.split()[0][4:].isdigit()}
    return sort_rules(tcp) + sorted(rules - tcp)


def ec2_client(region: str) -> Client:
    """An EC2 client for region, from the credentials and endpoint boto3 finds (AWS_PROFILE, AWS_ENDPOINT_URL, ...)."""
    import boto3

    # A session of its own: the process-wide default one would keep the credentials it first found.
    return boto3.session.Session().client("ec2", region_name=region)


@contextmanager
def aws_errors() -> Iterator[None]:
    """AWS's failures as toolkit's one-line errors.

    Raises:
        UsageError: no credentials.
        ToolkitError: AWS refused a call (exit 1) or could not be reached (exit 4).
    """
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    try:
        yield
    except NoCredentialsError:
        raise UsageError(
            "no AWS credentials", hint="set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except EndpointConnectionError as exc:
        raise ToolkitError(f"AWS unreachable: {exc}", exit_code=ExitCode.UNREACHABLE) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ToolkitError(f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as exc:
        raise ToolkitError(f"AWS: {exc}") from None


def read_environment_in(region: str, env: str) -> list[Resource]:
    """read_environment in region, AWS's failures as one-line errors (see aws_errors)."""
    with aws_errors():
        return read_environment(ec2_client(region), env)
