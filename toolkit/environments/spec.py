"""environments/NAME.yml: what an environment holds, checked before anything is created.

Every error is one line that names the file and the field, so `toolkit env` can refuse bad input before it
creates a container, a VPC or an instance.
"""

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import UsageError
from toolkit.paths import project_root

SERVICES = ("cassandra", "postgresql", "prometheus")
_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
_TTL = re.compile(r"^([1-9][0-9]*)([hdw])$")
_TTL_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}
_KEYS = {"name", "owner", "ttl", "expires_at", "protected", "aws", "services"}
_AWS_KEYS = {
    "region", "azs", "vpc_cidr", "subnets", "nat_gateway", "image", "admin_cidrs", "client_cidrs", "connect_via",
    "apt_proxy",
}  # fmt: skip
CONNECT_VIA = ("public", "private")
_PROXY = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")


class SpecError(UsageError):
    """A spec that cannot be built: the file and the field are in the message."""


@dataclass(frozen=True)
class HostPlan:
    """One host the environment holds: its inventory name, groups, variables and (on AWS) zone and type."""

    name: str
    service: str
    groups: tuple[str, ...]
    hostvars: dict[str, str]
    instance_type: str
    az: str | None = None


@dataclass(frozen=True)
class AwsSettings:
    region: str
    azs: tuple[str, ...]
    vpc_cidr: ipaddress.IPv4Network
    subnets: dict[str, ipaddress.IPv4Network]
    nat_gateway: bool
    image_owner: str
    image_name: str
    admin_cidrs: tuple[ipaddress.IPv4Network, ...]
    client_cidrs: tuple[ipaddress.IPv4Network, ...]
    # How the controller reaches the hosts: their public addresses (from admin_cidrs, over the internet) or
    # their private ones (a VPN, peering or Direct Connect into the VPC).
    connect_via: str = "public"
    # The hosts' package proxy, for subnets whose only way out is through one (None: straight to the mirrors).
    apt_proxy: str | None = None


@dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    owner: str
    path: Path
    expires_at: dt.datetime | None  # None: no expiry (protected environments only)
    ttl: dt.timedelta | None
    protected: bool
    aws: AwsSettings | None
    hosts: tuple[HostPlan, ...] = field(default_factory=tuple)
    # Cassandra's replication factor per datacenter (the app keyspace's NetworkTopologyStrategy).
    replication: dict[str, int] = field(default_factory=dict)

    def expiry(self, created: dt.datetime) -> dt.datetime | None:
        """When an environment made at ``created`` expires: its expires_at, or created + ttl; None: never."""
        if self.expires_at is not None:
            return self.expires_at
        return created + self.ttl if self.ttl is not None else None

    def hosts_of(self, service: str) -> list[HostPlan]:
        return [h for h in self.hosts if h.service == service]

    def to_dict(self) -> dict[str, Any]:
        aws = self.aws
        return {
            "name": self.name,
            "owner": self.owner,
            "protected": self.protected,
            "ttl_seconds": int(self.ttl.total_seconds()) if self.ttl else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "aws": None
            if aws is None
            else {
                "region": aws.region,
                "azs": list(aws.azs),
                "vpc_cidr": str(aws.vpc_cidr),
                "subnets": {az: str(net) for az, net in aws.subnets.items()},
                "nat_gateway": aws.nat_gateway,
                "image": {"owner": aws.image_owner, "name": aws.image_name},
                "admin_cidrs": [str(n) for n in aws.admin_cidrs],
                "client_cidrs": [str(n) for n in aws.client_cidrs],
                "connect_via": aws.connect_via,
                "apt_proxy": aws.apt_proxy,
            },
            "hosts": [
                {
                    "name": h.name,
                    "service": h.service,
                    "groups": list(h.groups),
                    "vars": h.hostvars,
                    "instance_type": h.instance_type,
                    "az": h.az,
                }
                for h in self.hosts
            ],
        }


def environments_dir() -> Path:
    """environments/ of the project, or $TOOLKIT_ENVIRONMENTS (specs kept outside the checkout)."""
    override = os.environ.get("TOOLKIT_ENVIRONMENTS")
    return Path(override).expanduser() if override else project_root() / "environments"


def spec_path(name: str) -> Path:
    if not _NAME.match(name):
        raise SpecError(f"environment name {name!r}: lower-case letters, digits and -, 3 to 32 characters")
    path = environments_dir() / f"{name}.yml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in environments_dir().glob("*.yml"))) or "none"
        raise SpecError(f"no environment spec {path}", hint=f"specs: {known}")
    return path


class _Reader:
    """Field access with errors that name the file and the field's path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> SpecError:
        return SpecError(f"{self.path.name}: {where}: {message}")

    def mapping(self, value: Any, where: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping")
        unknown = sorted(set(value) - allowed) if allowed is not None else []
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed or ()))}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "must be a non-empty string")
        return value.strip()

    def count(self, value: Any, where: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(where, f"must be a whole number of at least {minimum}, not {value!r}")
        return value

    def network(self, value: Any, where: str) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(str(value), strict=True)
        except ValueError as exc:
            raise self.fail(where, f"{value!r} is not an IPv4 network ({exc})") from None


def load_spec(name: str, *, now: dt.datetime | None = None) -> EnvironmentSpec:
    """Read and check environments/NAME.yml. Raises SpecError (a UsageError: exit 2, nothing created)."""
    path = spec_path(name)
    try:
        document: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path.name}: not YAML: {str(exc).splitlines()[0]}") from None
    return parse_spec(document, path, now=now or dt.datetime.now(dt.UTC))


def known_specs() -> list[EnvironmentSpec]:
    """Every spec in environments/ that checks out (the others are for `toolkit env show` to complain about)."""
    found = []
    for path in sorted(environments_dir().glob("*.yml")):
        try:
            found.append(load_spec(path.stem))
        except SpecError:
            continue
    return found


def parse_spec(document: Any, path: Path, *, now: dt.datetime) -> EnvironmentSpec:
    read = _Reader(path)
    top = read.mapping(document, "top level", _KEYS)
    name = read.text(top.get("name"), "name")
    if name != path.stem:
        raise read.fail("name", f"{name!r} must match the file name {path.stem!r}")
    owner = read.text(top.get("owner"), "owner")
    protected = top.get("protected", False)
    if not isinstance(protected, bool):
        raise read.fail("protected", "must be true or false")
    ttl, expires_at = _lifetime(read, top, protected, now)
    aws = _aws(read, top["aws"]) if "aws" in top else None
    hosts, replication = _hosts(read, top.get("services"), name, aws)
    return EnvironmentSpec(
        name=name,
        owner=owner,
        path=path,
        expires_at=expires_at,
        ttl=ttl,
        protected=protected,
        aws=aws,
        hosts=hosts,
        replication=replication,
    )


def _lifetime(
    read: _Reader, top: dict[str, Any], protected: bool, now: dt.datetime
) -> tuple[dt.timedelta | None, dt.datetime | None]:
    """A TTL (``8h``, ``3d``, ``2w``: from creation) or an absolute ``expires_at``; only protected ones have neither."""
    if "ttl" in top and "expires_at" in top:
        raise read.fail("ttl", "give ttl or expires_at, not both")
    if "ttl" in top:
        match = _TTL.match(str(top["ttl"]))
        if not match:
            raise read.fail("ttl", f"{top['ttl']!r} is not a lifetime like 8h, 3d or 2w")
        return dt.timedelta(seconds=int(match[1]) * _TTL_SECONDS[match[2]]), None
    if "expires_at" in top:
        raw = top["expires_at"]
        try:
            expires = (
                raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            )
        except ValueError:
            raise read.fail("expires_at", f"{raw!r} is not an ISO 8601 time") from None
        expires = expires if expires.tzinfo else expires.replace(tzinfo=dt.UTC)
        if expires <= now:
            raise read.fail("expires_at", f"{expires.isoformat()} is in the past")
        return None, expires
    if not protected:
        raise read.fail("ttl", "an environment that is not protected needs a ttl or expires_at (cost control)")
    return None, None


def _aws(read: _Reader, value: Any) -> AwsSettings:
    import boto3

    aws = read.mapping(value, "aws", _AWS_KEYS)
    region = read.text(aws.get("region"), "aws.region")
    regions = boto3.session.Session().get_available_regions("ec2")
    if region not in regions:
        raise read.fail("aws.region", f"unknown region {region!r}")
    azs = aws.get("azs")
    if not isinstance(azs, list) or not azs or not all(isinstance(z, str) for z in azs):
        raise read.fail("aws.azs", "must be a non-empty list of availability zones")
    for zone in azs:
        if not re.fullmatch(re.escape(region) + r"[a-z]", zone):
            raise read.fail("aws.azs", f"{zone!r} is not a zone of {region}")
    if len(set(azs)) != len(azs):
        raise read.fail("aws.azs", "lists a zone twice")
    vpc = read.network(aws.get("vpc_cidr"), "aws.vpc_cidr")
    subnets = _subnets(read, aws.get("subnets"), vpc, azs)
    image = read.mapping(aws.get("image"), "aws.image", {"owner", "name"})
    if str(image.get("name", "")).startswith("ami-"):
        raise read.fail("aws.image.name", "a name pattern, never an AMI id (ids differ per region and age)")
    admin = aws.get("admin_cidrs")
    if not isinstance(admin, list) or not admin:
        raise read.fail("aws.admin_cidrs", "must list the networks SSH is allowed from")
    admin_cidrs = tuple(read.network(c, f"aws.admin_cidrs[{i}]") for i, c in enumerate(admin))
    for network in admin_cidrs:
        if network.prefixlen == 0:
            raise read.fail("aws.admin_cidrs", "0.0.0.0/0 would open SSH to the internet")
    clients = aws.get("client_cidrs", [])
    if not isinstance(clients, list):
        raise read.fail("aws.client_cidrs", "must be a list")
    connect_via = aws.get("connect_via", "public")
    if connect_via not in CONNECT_VIA:
        raise read.fail("aws.connect_via", f"{connect_via!r}: valid: {', '.join(CONNECT_VIA)}")
    apt_proxy = aws.get("apt_proxy")
    if apt_proxy is not None and not (isinstance(apt_proxy, str) and _PROXY.match(apt_proxy)):
        raise read.fail("aws.apt_proxy", f"{apt_proxy!r} is not an http(s)://host[:port] URL")
    return AwsSettings(
        region=region,
        azs=tuple(azs),
        vpc_cidr=vpc,
        subnets=subnets,
        nat_gateway=bool(aws.get("nat_gateway", False)),
        image_owner=read.text(image.get("owner"), "aws.image.owner"),
        image_name=read.text(image.get("name"), "aws.image.name"),
        admin_cidrs=admin_cidrs,
        client_cidrs=tuple(read.network(c, f"aws.client_cidrs[{i}]") for i, c in enumerate(clients)),
        connect_via=connect_via,
        apt_proxy=apt_proxy,
    )


def _subnets(read: _Reader, value: Any, vpc: ipaddress.IPv4Network, azs: list[str]) -> dict[str, ipaddress.IPv4Network]:
    """One subnet per zone: given, or the VPC's first /24s in zone order."""
    if value is None:
        if vpc.prefixlen > 24 - max(1, (len(azs) - 1).bit_length()):
            raise read.fail("aws.vpc_cidr", f"{vpc} is too small for a /24 per zone; give aws.subnets")
        return dict(zip(azs, vpc.subnets(new_prefix=24), strict=False))
    subnets = read.mapping(value, "aws.subnets", set(azs))
    found = {zone: read.network(cidr, f"aws.subnets.{zone}") for zone, cidr in subnets.items()}
    missing = [zone for zone in azs if zone not in found]
    if missing:
        raise read.fail("aws.subnets", f"no subnet for {', '.join(missing)}")
    for zone, net in found.items():
        if not net.subnet_of(vpc):
            raise read.fail(f"aws.subnets.{zone}", f"{net} is outside the VPC {vpc}")
    nets = list(found.items())
    for i, (zone, net) in enumerate(nets):
        for other_zone, other in nets[i + 1 :]:
            if net.overlaps(other):
                raise read.fail("aws.subnets", f"{zone} {net} overlaps {other_zone} {other}")
    return found


def _zone(aws: AwsSettings | None, index: int) -> str | None:
    return aws.azs[index % len(aws.azs)] if aws else None


def _hosts(read: _Reader, value: Any, env: str, aws: AwsSettings | None) -> tuple[tuple[HostPlan, ...], dict[str, int]]:
    services = read.mapping(value, "services", set(SERVICES))
    if not services:
        raise read.fail("services", f"names no service; valid: {', '.join(SERVICES)}")
    hosts: list[HostPlan] = []
    replication: dict[str, int] = {}
    if "postgresql" in services:
        pg = read.mapping(services["postgresql"], "services.postgresql", {"instance_type", "replicas"})
        kind = read.text(pg.get("instance_type", "t3.medium"), "services.postgresql.instance_type")
        replicas = read.count(pg.get("replicas", 1), "services.postgresql.replicas", 0)
        hosts.append(HostPlan(f"{env}-postgresql-1", "postgresql", ("postgresql_primary",), {}, kind, _zone(aws, 0)))
        for i in range(replicas):
            name = f"{env}-postgresql-{i + 2}"
            hosts.append(HostPlan(name, "postgresql", ("postgresql_replica",), {}, kind, _zone(aws, i + 1)))
    if "cassandra" in services:
        nodes, replication = _cassandra(read, services["cassandra"], env, aws)
        hosts += nodes
    if "prometheus" in services:
        prom = read.mapping(services["prometheus"], "services.prometheus", {"instance_type", "count"})
        kind = read.text(prom.get("instance_type", "t3.medium"), "services.prometheus.instance_type")
        for i in range(read.count(prom.get("count", 1), "services.prometheus.count", 1)):
            hosts.append(HostPlan(f"{env}-prometheus-{i + 1}", "prometheus", ("prometheus",), {}, kind, _zone(aws, i)))
    return tuple(hosts), replication


def _cassandra(read: _Reader, value: Any, env: str, aws: AwsSettings | None) -> tuple[list[HostPlan], dict[str, int]]:
    """Nodes per DC and rack; on AWS a DC is the region and each rack one zone (GossipingPropertyFileSnitch)."""
    spec = read.mapping(value, "services.cassandra", {"instance_type", "datacenters"})
    kind = read.text(spec.get("instance_type", "m6i.large"), "services.cassandra.instance_type")
    dcs = spec.get("datacenters")
    if not isinstance(dcs, list) or not dcs:
        raise read.fail("services.cassandra.datacenters", "must list at least one datacenter")
    hosts: list[HostPlan] = []
    replication: dict[str, int] = {}
    seen: set[str] = set()
    for d, raw in enumerate(dcs):
        where = f"services.cassandra.datacenters[{d}]"
        dc = read.mapping(raw, where, {"name", "racks", "replication_factor"})
        dc_name = read.text(dc.get("name"), f"{where}.name")
        if dc_name in seen:
            raise read.fail(f"{where}.name", f"datacenter {dc_name!r} twice")
        seen.add(dc_name)
        racks = read.mapping(dc.get("racks"), f"{where}.racks")
        if not racks:
            raise read.fail(f"{where}.racks", "must name at least one rack with its node count")
        if aws is not None and len(racks) > len(aws.azs):
            raise read.fail(f"{where}.racks", f"{len(racks)} racks but {len(aws.azs)} zones: a rack is one zone")
        sizes = {str(r): read.count(n, f"{where}.racks.{r}", 1) for r, n in racks.items()}
        nodes = sum(sizes.values())
        rf = read.count(dc.get("replication_factor", min(3, nodes)), f"{where}.replication_factor", 1)
        if rf > nodes:
            raise read.fail(f"{where}.replication_factor", f"{rf} is larger than the datacenter's {nodes} node(s)")
        replication[dc_name] = rf
        for r, (rack, size) in enumerate(sizes.items()):
            for _ in range(size):
                name = f"{env}-cassandra-{len(hosts) + 1}"
                hostvars = {"cassandra_dc": dc_name, "cassandra_rack": rack}
                hosts.append(HostPlan(name, "cassandra", ("cassandra",), hostvars, kind, _zone(aws, r)))
    return hosts, replication
