"""What the lab's hosts are: names, groups, stable addresses and topology variables, per profile."""

from dataclasses import dataclass, field
from typing import Any

NETWORK = "toolkit-lab"
SUBNET = "10.242.10.0/24"
GATEWAY = "10.242.10.1"
IMAGE = "localhost/toolkit-debian:bookworm"
CONTAINER_PREFIX = "toolkit-lab-"
LABEL = "io.toolkit.lab"
OWNER_LABEL = f"{LABEL}.owner"  # the state directory of the checkout that made the container


@dataclass(frozen=True)
class LabNetwork:
    """A podman network of hosts and what marks its containers: the lab's, or one lab environment's."""

    name: str
    subnet: str
    gateway: str
    label: str  # key=value on the network and every container: what `down` finds them by
    container_prefix: str


LAB_NETWORK = LabNetwork(NETWORK, SUBNET, GATEWAY, f"{LABEL}=1", CONTAINER_PREFIX)


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    groups: tuple[str, ...]
    hostvars: dict[str, Any] = field(default_factory=dict)
    container_prefix: str = CONTAINER_PREFIX

    @property
    def container(self) -> str:
        return self.container_prefix + self.name

    @property
    def mac_address(self) -> str:
        """A fixed, locally administered MAC made from the address (02:00 + its four octets).

        Without it a restarted container gets a new MAC for the same IP, and the controller keeps sending
        to the old one until its neighbour entry expires: SSH timed out for ~40 s after every restart.
        """
        return "02:00:" + ":".join(f"{int(octet):02x}" for octet in self.address.split("."))


BENCH_HOSTS = 20

# Every host has the same address in every profile, so a profile change never renumbers a host.
_HOSTS = {
    host.name: host
    for host in (
        LabHost("cassandra-1", "10.242.10.11", ("cassandra",), {"cassandra_dc": "dc1", "cassandra_rack": "rack1"}),
        LabHost("cassandra-2", "10.242.10.12", ("cassandra",), {"cassandra_dc": "dc1", "cassandra_rack": "rack1"}),
        LabHost("cassandra-3", "10.242.10.13", ("cassandra",), {"cassandra_dc": "dc1", "cassandra_rack": "rack2"}),
        LabHost("postgresql-1", "10.242.10.21", ("postgresql_primary",)),
        LabHost("postgresql-2", "10.242.10.22", ("postgresql_replica",)),
        LabHost("prometheus-1", "10.242.10.31", ("prometheus",)),
        # Small hosts with no service for the fleet benchmark: site gives them the baseline, hardening and
        # node_exporter, which is what most of a real fleet's no-change run is made of.
        *(LabHost(f"bench-{n:02d}", f"10.242.10.{100 + n}", ("bench",)) for n in range(1, BENCH_HOSTS + 1)),
    )
}

PROFILES: dict[str, tuple[str, ...]] = {
    # Three Cassandra nodes over two racks, a PostgreSQL primary and replica, one Prometheus.
    "full": ("cassandra-1", "cassandra-2", "cassandra-3", "postgresql-1", "postgresql-2", "prometheus-1"),
    # What CI needs to prove every role: one host per service, plus what the service is about: the PostgreSQL
    # replica (replication) and three Cassandra nodes (quorum, rolling restarts). The same hosts as "full"
    # today; "full" grows when the lab does.
    "minimal": ("cassandra-1", "cassandra-2", "cassandra-3", "postgresql-1", "postgresql-2", "prometheus-1"),
    # benchmarks/fleet.py: 20 small hosts (6 of them for the small case, by --limit).
    "bench": tuple(f"bench-{n:02d}" for n in range(1, BENCH_HOSTS + 1)),
}

# Groups whose members are other groups (Ansible "children").
PARENT_GROUPS: dict[str, tuple[str, ...]] = {"postgresql": ("postgresql_primary", "postgresql_replica")}


def hosts_of(profile: str) -> list[LabHost]:
    return [_HOSTS[name] for name in PROFILES[profile]]


def all_hosts() -> list[LabHost]:
    return list(_HOSTS.values())


def _ranges(addresses: list[str]) -> str:
    """Sorted addresses as runs of their last octet: 10.242.10.1, .11-.13, .21-.22."""
    runs: list[list[int]] = []
    for octet in (int(address.rsplit(".", 1)[1]) for address in addresses):
        if runs and octet == runs[-1][-1] + 1:
            runs[-1].append(octet)
        else:
            runs.append([octet])
    return ", ".join(f".{run[0]}" + (f"-.{run[-1]}" if len(run) > 1 else "") for run in runs)


def bare_host(name: str, address: str, network: LabNetwork = LAB_NETWORK) -> LabHost:
    """A bare host for `toolkit lab bare`: on the network (the lab's by default), clear of the gateway and, on
    the lab's, of the profiles' names and addresses.

    Raises:
        LabError: the name or address is taken, or the address is not a free one of the network.
    """
    import ipaddress
    import re

    from toolkit.errors import LabError

    lab = network == LAB_NETWORK
    if not re.match(r"^[a-z0-9][a-z0-9-]{0,40}$", name) or (lab and name in _HOSTS):
        raise LabError(f"{name!r} cannot be a bare host's name (lower case, digits, '-'; not a lab host's)")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise LabError(f"{address!r} is not an IP address") from None
    subnet = ipaddress.ip_network(network.subnet)
    taken = ({host.address for host in _HOSTS.values()} if lab else set()) | {network.gateway}
    if ip not in subnet or str(ip) in taken or ip in (subnet.network_address, subnet.broadcast_address):
        raise LabError(
            f"{address} is not a free address of the network {network.subnet} (taken by lab hosts and the gateway: "
            f"{_ranges(sorted(taken, key=ipaddress.ip_address))})"
            if lab
            else f"{address} is not a free address of the network {network.subnet} (gateway {network.gateway})"
        )
    return LabHost(name, str(ip), (), container_prefix=network.container_prefix)
