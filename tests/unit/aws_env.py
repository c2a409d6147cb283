"""The AWS account `toolkit env` tests run against: moto's EC2 server on loopback, seeded as `up` leaves it."""

from typing import Any

from tests.unit.plugins.moto_fleet import AMI
from toolkit.environments.aws_model import ENV_TAG

REGION = "eu-west-1"


def tags(**values: str) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in values.items()]


def spec_of(resource_type: str, **values: str) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": tags(**values)}]


def seed_network(
    client: Any, env: str = "demo", subnet_cidrs: dict[str, str] | None = None, vpc_tags: dict[str, str] | None = None
) -> dict[str, str]:
    """What `up` leaves for the network: the VPC, gateway, subnets, route table, tagged. Returns name -> id."""
    mine = {ENV_TAG: env}
    ids: dict[str, str] = {}
    vpc = client.create_vpc(
        CidrBlock="10.60.0.0/16", TagSpecifications=spec_of("vpc", Name=f"{env}-vpc", **mine, **(vpc_tags or {}))
    )
    ids["vpc"] = vpc["Vpc"]["VpcId"]
    igw = client.create_internet_gateway(TagSpecifications=spec_of("internet-gateway", Name=f"{env}-igw", **mine))
    ids["igw"] = igw["InternetGateway"]["InternetGatewayId"]
    client.attach_internet_gateway(InternetGatewayId=ids["igw"], VpcId=ids["vpc"])
    cidrs = subnet_cidrs or {"eu-west-1a": "10.60.0.0/24", "eu-west-1b": "10.60.1.0/24", "eu-west-1c": "10.60.2.0/24"}
    for zone, cidr in cidrs.items():
        subnet = client.create_subnet(
            VpcId=ids["vpc"], CidrBlock=cidr, AvailabilityZone=zone,
            TagSpecifications=spec_of("subnet", Name=f"{env}-{zone}", **mine),
        )  # fmt: skip
        ids[zone] = subnet["Subnet"]["SubnetId"]
    table = client.create_route_table(
        VpcId=ids["vpc"], TagSpecifications=spec_of("route-table", Name=f"{env}-public", **mine)
    )
    client.create_route(
        RouteTableId=table["RouteTable"]["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=ids["igw"]
    )
    return ids


def seed_environment(client: Any, env: str = "demo", vpc_tags: dict[str, str] | None = None) -> dict[str, str]:
    """A whole environment as `up` leaves it: the network, two security groups naming each other, a key pair, a
    NAT gateway and three instances, all tagged. Returns name -> id."""
    mine = {ENV_TAG: env}
    ids = seed_network(client, env, vpc_tags=vpc_tags)
    for service in ("postgresql", "prometheus"):
        group = client.create_security_group(
            GroupName=f"{env}-{service}", Description=service, VpcId=ids["vpc"],
            TagSpecifications=spec_of("security-group", Name=f"{env}-{service}", **mine),
        )  # fmt: skip
        ids[f"sg-{service}"] = group["GroupId"]
    # Each group admits the other: deleting either before emptying both is refused.
    for group, port, other in (("postgresql", 9187, "prometheus"), ("prometheus", 9090, "postgresql")):
        peer = [{"GroupId": ids[f"sg-{other}"]}]
        permission = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "UserIdGroupPairs": peer}
        client.authorize_security_group_ingress(GroupId=ids[f"sg-{group}"], IpPermissions=[permission])
    client.create_key_pair(KeyName=f"toolkit-{env}", TagSpecifications=spec_of("key-pair", **mine))
    address = client.allocate_address(Domain="vpc")["AllocationId"]
    nat = client.create_nat_gateway(
        SubnetId=ids["eu-west-1a"],
        AllocationId=address,
        TagSpecifications=spec_of("natgateway", Name=f"{env}-nat", **mine),
    )
    ids["nat"] = nat["NatGateway"]["NatGatewayId"]
    for i, service in enumerate(("postgresql", "postgresql", "prometheus")):
        name = f"{env}-{service}-{i + 1}"
        launched = client.run_instances(
            ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.medium", SubnetId=ids["eu-west-1b"],
            SecurityGroupIds=[ids[f"sg-{service}"]], KeyName=f"toolkit-{env}",
            TagSpecifications=spec_of("instance", Name=name, env=env, service=service, **mine),
        )  # fmt: skip
        ids[name] = launched["Instances"][0]["InstanceId"]
    return ids
