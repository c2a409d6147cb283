"""What an environment is on AWS: every resource its spec calls for, named, tagged and described by the
attributes a plan compares with what exists.

Tags are the state: every resource carries ``toolkit:environment=NAME``, and only resources carrying it are ever
changed or deleted. Instances also carry the tags the project's inventory plugin (plugins/inventory/aws_fleet.py)
groups on: env, service, cluster, role (PostgreSQL), cassandra_dc and cassandra_rack.
"""

from dataclasses import dataclass

from toolkit.environments.spec import AwsSettings, EnvironmentSpec, HostPlan
from toolkit.errors import UsageError

ENV_TAG = "toolkit:environment"
OWNER_TAG = "owner"
CREATED_TAG = "toolkit:created-at"
EXPIRES_TAG = "toolkit:expires-at"
PROTECTED_TAG = "toolkit:protected"

# The kinds, in the order `up` creates them (`down` deletes in reverse).
KINDS = ("vpc", "internet_gateway", "subnet", "route_table", "nat_gateway", "security_group", "key_pair", "instance")

# Who may reach which TCP port of a service's hosts: the service's own hosts (peers), the Prometheus servers
# (scrapes), the spec's client CIDRs, or its admin CIDRs. The ports are the roles' defaults (cassandra_*_port,
# postgresql_port, the exporters' listen ports).
SERVICE_PORTS: dict[str, tuple[tuple[int, str], ...]] = {
    "cassandra": ((7000, "peers"), (9042, "peers"), (9042, "clients"), (7070, "prometheus")),
    "postgresql": ((5432, "peers"), (5432, "clients"), (9187, "prometheus")),
    "prometheus": ((9090, "peers"), (9090, "clients"), (9093, "peers"), (9093, "clients"), (9094, "peers")),
}
EVERY_HOST_PORTS: tuple[tuple[int, str], ...] = ((22, "admin"), (9100, "prometheus"))


@dataclass(frozen=True)
class Resource:
    """One resource an environment holds: its kind, its name (the Name tag; a key pair's key name) and the
    attributes a plan compares, as text."""

    kind: str
    name: str
    attributes: tuple[tuple[str, str], ...] = ()
    resource_id: str = ""  # AWS's id, for resources that exist; not compared

    @property
    def attrs(self) -> dict[str, str]:
        return dict(self.attributes)


def resource(kind: str, name: str, resource_id: str = "", **attributes: str) -> Resource:
    return Resource(kind, name, tuple(sorted(attributes.items())), resource_id)


def security_group_name(env: str, service: str) -> str:
    return f"{env}-{service}"


def subnet_name(env: str, zone: str) -> str:
    return f"{env}-{zone}"


def key_pair_name(env: str) -> str:
    return f"toolkit-{env}"


def ingress_sources(spec: EnvironmentSpec, aws: AwsSettings, service: str) -> set[tuple[int, str]]:
    """Who may reach a service's hosts: (TCP port, SOURCE) pairs, SOURCE a CIDR or ``sg:NAME`` (another of the
    environment's security groups)."""
    present = {host.service for host in spec.hosts}
    sources = {
        "peers": [f"sg:{security_group_name(spec.name, service)}"],
        "prometheus": [f"sg:{security_group_name(spec.name, 'prometheus')}"] if "prometheus" in present else [],
        "clients": [str(cidr) for cidr in aws.client_cidrs],
        "admin": [str(cidr) for cidr in aws.admin_cidrs],
    }
    return {(port, source) for port, who in (*SERVICE_PORTS[service], *EVERY_HOST_PORTS) for source in sources[who]}


def ingress_rules(spec: EnvironmentSpec, aws: AwsSettings, service: str) -> list[str]:
    """The ingress rules of a service's security group: ``tcp/PORT from SOURCE``, sorted, no duplicates."""
    return sort_rules({f"tcp/{port} from {source}" for port, source in ingress_sources(spec, aws, service)})


def sort_rules(rules: set[str]) -> list[str]:
    """``tcp/PORT from SOURCE`` rules by port, then source."""
    return sorted(rules, key=lambda rule: (int(rule.split()[0][4:]), rule))


def tags_text(tags: dict[str, str]) -> str:
    """An instance's tags as a plan compares them: sorted ``key=value`` pairs, Name left out (it is the name)."""
    return ", ".join(f"{key}={value}" for key, value in sorted(tags.items()) if key != "Name")


def instance_tags(spec: EnvironmentSpec, host: HostPlan) -> dict[str, str]:
    """The tags the inventory plugin builds groups and topology from, and the environment's own."""
    tags = {"Name": host.name, ENV_TAG: spec.name, "env": spec.name, OWNER_TAG: spec.owner, "service": host.service}
    tags["cluster"] = f"{spec.name}-{host.service}"
    if host.service == "postgresql":
        tags["role"] = "primary" if "postgresql_primary" in host.groups else "replica"
    tags.update(host.hostvars)  # cassandra_dc, cassandra_rack
    return tags


def aws_settings(spec: EnvironmentSpec) -> AwsSettings:
    """The spec's aws section.

    Raises:
        UsageError: it has none.
    """
    if spec.aws is None:
        raise UsageError(f"{spec.path.name}: no aws section: the environment cannot be built on AWS")
    return spec.aws


def desired_resources(spec: EnvironmentSpec) -> list[Resource]:
    """Every resource the environment holds on AWS, in creation order.

    Raises:
        UsageError: the spec has no aws section.
    """
    aws = aws_settings(spec)
    env = spec.name
    found = [
        resource("vpc", f"{env}-vpc", cidr=str(aws.vpc_cidr)),
        resource("internet_gateway", f"{env}-igw", vpc=f"{env}-vpc"),
    ]
    found += [
        resource("subnet", subnet_name(env, zone), vpc=f"{env}-vpc", zone=zone, cidr=str(aws.subnets[zone]))
        for zone in aws.azs
    ]
    found.append(resource("route_table", f"{env}-public", vpc=f"{env}-vpc", default_route=f"{env}-igw"))
    if aws.nat_gateway:
        found.append(resource("nat_gateway", f"{env}-nat", subnet=subnet_name(env, aws.azs[0])))
    for service in sorted({host.service for host in spec.hosts}):
        rules = ingress_rules(spec, aws, service)
        found.append(resource("security_group", security_group_name(env, service), ingress=", ".join(rules)))
    found.append(resource("key_pair", key_pair_name(env)))
    for host in spec.hosts:
        zone = host.az or aws.azs[0]
        tags = instance_tags(spec, host)
        found.append(
            resource(
                "instance",
                host.name,
                instance_type=host.instance_type,
                subnet=subnet_name(env, zone),
                security_group=security_group_name(env, host.service),
                key_pair=key_pair_name(env),
                tags=tags_text(tags),
            )
        )
    return found
