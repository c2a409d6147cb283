"""The lab provider: an environment's hosts as lab containers, on a podman network of the environment's own.

Each environment gets its own network (a free 10.242.N.0/24, N from 20) and its own label
(``io.toolkit.env=NAME``), so it lives beside `toolkit lab up`'s hosts and other environments without either
seeing the other: `lab down` never removes an environment's containers, and `env down` never the lab's.
Everything about an environment is in ``.toolkit/environments/NAME/lab/``: state.json (its network and each
host's address, so a grown spec never renumbers a host), the SSH key, known_hosts, generated secrets and the
inventory, whose group_vars are the lab's (inventories/lab/group_vars: they name the network through
``toolkit_lab_network``/``toolkit_lab_gateway``, which the inventory sets).
"""

import ipaddress
import json
from pathlib import Path
from typing import Any

from toolkit.environments.aws_down import EnvironmentListing
from toolkit.environments.aws_model import Resource
from toolkit.environments.spec import EnvironmentSpec
from toolkit.errors import LabError
from toolkit.lab import profiles
from toolkit.lab.lab import HostStatus, Lab, LabPaths
from toolkit.lab.podman import Podman
from toolkit.lab.profiles import LabHost, LabNetwork
from toolkit.paths import StatePaths, lab_inventory
from toolkit.timestamps import parse_utc, utc_iso

ENV_LABEL = "io.toolkit.env"
CONTAINER_PREFIX = "toolkit-env-"
# 10.242.10.0/24 is the lab's; environments take the first free /24 from 10.242.20.0 on.
SUBNET_OCTETS = range(20, 100)
# Host addresses from .11 on, as the lab's (.1 is the gateway, where the controller and the apt cache are).
HOST_OCTETS = range(11, 255)


def environment_dir(state: StatePaths, name: str) -> Path:
    """The lab side of .toolkit/environments/NAME/ (the AWS side keeps its key pair's key one level up)."""
    return state.home / "environments" / name / "lab"


def network_name(name: str) -> str:
    return f"toolkit-env-{name}"


def network_of(name: str, subnet: str) -> LabNetwork:
    network = ipaddress.IPv4Network(subnet)
    return LabNetwork(
        name=network_name(name),
        subnet=str(network),
        gateway=str(network.network_address + 1),
        label=f"{ENV_LABEL}={name}",
        container_prefix=CONTAINER_PREFIX,
    )


def free_subnet(taken: set[str]) -> str:
    """The first 10.242.N.0/24 (N from 20) that no podman network uses."""
    used = [ipaddress.IPv4Network(s) for s in taken]
    for octet in SUBNET_OCTETS:
        candidate = ipaddress.IPv4Network(f"10.242.{octet}.0/24")
        if not any(candidate.overlaps(other) for other in used):
            return str(candidate)
    raise LabError("no free 10.242.N.0/24 left for another lab environment", hint="toolkit env down an old one")


def choose_network(name: str, networks: list[dict[str, Any]]) -> LabNetwork:
    """The network for an environment without state: its own if it outlived the state (a run killed before
    `down`), subnet and all, so its containers keep their addresses; else a free subnet (podman's
    `network ls` answer is what is taken)."""
    adopted = [
        subnet["subnet"] for n in networks if n.get("name") == network_name(name) for subnet in n.get("subnets") or []
    ]
    if adopted:
        return network_of(name, str(adopted[0]))
    taken = {str(subnet["subnet"]) for n in networks for subnet in n.get("subnets") or []}
    return network_of(name, free_subnet(taken | {profiles.SUBNET}))


def assign_addresses(names: list[str], subnet: str, previous: dict[str, str]) -> dict[str, str]:
    """An address for every host: the one it had (state.json), else the lowest free one from .11.

    Keyed by host name, so growing a count adds hosts at new addresses and never renumbers the others.
    """
    network = ipaddress.IPv4Network(subnet)
    kept = {name: previous[name] for name in names if name in previous}
    free = (
        str(network.network_address + n) for n in HOST_OCTETS if str(network.network_address + n) not in kept.values()
    )
    assigned: dict[str, str] = {}
    for name in names:
        address = kept.get(name) or next(free, None)
        if address is None:
            raise LabError(f"the environment's network {subnet} has no address left for {name}")
        assigned[name] = address
    return assigned


def host_of_record(record: dict[str, Any]) -> LabHost:
    """A host as state.json records it."""
    return LabHost(
        record["name"],
        record["address"],
        tuple(record["groups"]),
        dict(record["vars"]),
        container_prefix=CONTAINER_PREFIX,
    )


def lab_hosts(spec: EnvironmentSpec, addresses: dict[str, str]) -> list[LabHost]:
    return [
        LabHost(host.name, addresses[host.name], host.groups, dict(host.hostvars), container_prefix=CONTAINER_PREFIX)
        for host in spec.hosts
    ]


def expiry_of(spec: EnvironmentSpec, created: str) -> str | None:
    """The spec's expiry for an environment created at ``created`` (state.json's text), as text."""
    start = parse_utc(created)
    expires = spec.expiry(start) if start is not None else spec.expires_at
    return expires.isoformat() if expires is not None else None


def list_lab_environments(state: StatePaths) -> list[EnvironmentListing]:
    """The environments up in the lab, from their state files (there are no tags to read here)."""
    found = []
    for state_file in sorted((state.home / "environments").glob("*/lab/state.json")):
        try:
            recorded = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(recorded, dict) or recorded.get("provider") != "lab":
            continue
        expires = recorded.get("expires_at")
        found.append(
            EnvironmentListing(
                name=str(recorded.get("environment") or state_file.parent.parent.name),
                region="lab",
                vpc_id=str(recorded.get("network", "")),
                owner=str(recorded.get("owner", "")),
                created_at=parse_utc(str(recorded.get("created") or "")),
                expires_at=parse_utc(str(expires or "")),
                protected=bool(recorded.get("protected", False)),
                hosts=len(recorded.get("hosts") or []),
            )
        )
    return found


def _container_attributes(
    groups: list[str] | tuple[str, ...], hostvars: dict[str, Any], state: str
) -> tuple[tuple[str, str], ...]:
    return (("groups", ",".join(groups)), *sorted((k, str(v)) for k, v in hostvars.items()), ("state", state))


def desired_lab_resources(spec: EnvironmentSpec) -> list[Resource]:
    """What `up` makes in the lab: the network, then one running container per host of the spec."""
    return [
        Resource("network", network_name(spec.name)),
        *(
            Resource(
                "container", CONTAINER_PREFIX + host.name, _container_attributes(host.groups, host.hostvars, "running")
            )
            for host in spec.hosts
        ),
    ]


class LabEnvironment(Lab):
    """One environment's containers, network, key and inventory (the lab's machinery, the environment's names)."""

    def __init__(self, name: str, state: StatePaths) -> None:
        directory = environment_dir(state, name)
        super().__init__(LabPaths(state_dir=directory, inventory_file=directory / "inventory" / "hosts.yml"))
        self.name = name
        self.containers_conf = state.lab / "containers.conf"  # the machine's podman settings, as the lab's
        recorded = self.state()
        if recorded is not None and recorded.get("provider") == "lab" and recorded.get("subnet"):
            self.network = network_of(name, str(recorded["subnet"]))
        else:
            self.network = network_of(name, "10.242.20.0/24")  # placeholder until up() allocates one

    @property
    def podman(self) -> Podman:
        if self._podman is None:
            self._podman = Podman(self.containers_conf)
        return self._podman

    @property
    def inventory_dir(self) -> Path:
        return self.paths.inventory_file.parent

    def is_up(self) -> bool:
        state = self.state()
        return state is not None and state.get("provider") == "lab"

    def hosts(self) -> list[LabHost]:
        state = self.state()
        if state is None or state.get("provider") != "lab":
            raise LabError(
                f"environment {self.name} is not up in the lab", hint=f"toolkit env up {self.name} --provider lab"
            )
        return [host_of_record(record) for record in state["hosts"]]

    def existing_resources(self) -> list[Resource]:
        """The network and the containers labelled as this environment's, with what state.json says of each."""
        podman = self.podman
        found: list[Resource] = []
        if podman.exists("network", self.network.name):
            found.append(Resource("network", self.network.name, resource_id=self.network.subnet))
        recorded = {h["name"]: h for h in (self.state() or {}).get("hosts", [])}
        listed = podman.json("ps", "--all", "--filter", f"label={self.network.label}", "--format", "json") or []
        for entry in listed:
            container = (entry.get("Names") or [""])[0]
            host = recorded.get(container.removeprefix(CONTAINER_PREFIX), {})
            attributes = _container_attributes(
                host.get("groups", []), host.get("vars", {}), str(entry.get("State", ""))
            )
            found.append(Resource("container", container, attributes, resource_id=str(host.get("address", ""))))
        return found

    def up_from(self, spec: EnvironmentSpec) -> list[HostStatus]:
        """Create what the spec has and the lab lacks; start what is stopped. Never removes a host."""
        self.require_image()
        recorded = self.state() if self.is_up() else None
        if recorded is None:
            self.network = choose_network(self.name, self.podman.json("network", "ls", "--format", "json") or [])
        previous = {h["name"]: h["address"] for h in (recorded or {}).get("hosts", [])}
        addresses = assign_addresses([h.name for h in spec.hosts], self.network.subnet, previous)
        hosts = lab_hosts(spec, addresses)
        # Hosts the spec no longer has stay until `down`, as on AWS: up never deletes.
        wanted = {host.name for host in spec.hosts}
        kept = [host_of_record(r) for r in (recorded or {}).get("hosts", []) if r["name"] not in wanted]
        self._write_environment_state(spec, [*hosts, *kept], recorded)
        self._link_group_vars()
        return self.bring_up([*hosts, *kept], toolkit_env=self.name)

    def _write_environment_state(
        self, spec: EnvironmentSpec, hosts: list[LabHost], recorded: dict[str, Any] | None
    ) -> None:
        self.paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        created = str((recorded or {}).get("created") or utc_iso())
        state = {
            "provider": "lab",
            "environment": self.name,
            "owner": spec.owner,
            "network": self.network.name,
            "subnet": self.network.subnet,
            "created": created,
            # Fixed at the first up, as on AWS: a second up does not push the expiry out.
            "expires_at": (recorded or {}).get("expires_at") or expiry_of(spec, created),
            "protected": spec.protected,
            "hosts": [
                {"name": h.name, "address": h.address, "groups": list(h.groups), "vars": h.hostvars} for h in hosts
            ],
        }
        self.paths.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def _link_group_vars(self) -> None:
        self.inventory_dir.mkdir(parents=True, exist_ok=True)
        link = self.inventory_dir / "group_vars"
        target = lab_inventory() / "group_vars"
        if link.is_symlink() and link.resolve() == target.resolve():
            return
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)

    def down(self, purge_cache: bool = False) -> list[str]:
        removed = super().down(purge_cache=purge_cache)
        link = self.inventory_dir / "group_vars"
        if link.is_symlink():
            link.unlink()
        if self.inventory_dir.is_dir() and not any(self.inventory_dir.iterdir()):
            self.inventory_dir.rmdir()
        return removed
