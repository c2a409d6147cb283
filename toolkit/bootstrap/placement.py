"""Where a new host goes: its inventory name, the group its service puts it in, and who converges with it.

A PostgreSQL host joins as a replica when the inventory has a primary (and as the primary otherwise); its
service step also converges the primary, which must admit the new replica (pg_hba, replication slot).
A Cassandra node joins the cluster on its own converge; the existing nodes need no change.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import UsageError

# The services a host can be bootstrapped into, and what that means for the inventory.
SERVICE_GROUPS: dict[str, tuple[str, ...]] = {
    "base": (),  # the baseline only: base, hardening, node_exporter
    "cassandra": ("cassandra",),
    "postgresql": ("postgresql_primary", "postgresql_replica"),
    "prometheus": ("prometheus",),
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Placement:
    name: str  # the host's inventory name
    address: str  # ansible_host
    service: str
    group: str | None  # the inventory group it joins (None: the baseline only)
    peers: str | None  # a host pattern converged with it in the service step
    hostvars: dict[str, Any] = field(default_factory=dict)

    @property
    def service_limit(self) -> str:
        return f"{self.name}:{self.peers}" if self.peers else self.name


def services() -> list[str]:
    return sorted(SERVICE_GROUPS)


def check_service(service: str) -> None:
    if service not in SERVICE_GROUPS:
        raise UsageError(f"cannot bootstrap into {service!r}; valid services: {', '.join(services())}")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"{name!r} is not a usable inventory name (letters, digits, '.', '_', '-'; at most 63)")
    return name


def parse_host_vars(pairs: list[str]) -> dict[str, Any]:
    """``--host-var key=value`` pairs (values as YAML scalars: 3 is a number, true a boolean)."""
    import yaml

    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not _VAR_NAME.match(key):
            raise UsageError(f"--host-var {pair!r} is not KEY=VALUE with a variable name as KEY")
        if key.startswith("ansible_") and key != "ansible_port":
            raise UsageError(f"--host-var {key} is a connection setting the bootstrap manages itself")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        found[key] = value if isinstance(value, str | int | float | bool) else raw
    return found


def place(
    *,
    name: str,
    address: str,
    service: str,
    existing_groups: dict[str, list[str]],
    group: str | None = None,
    hostvars: dict[str, Any] | None = None,
) -> Placement:
    """The placement of a new host, given the groups (and their hosts) the inventory already has.

    Raises:
        UsageError: an unknown service, a group the service does not use, or a name another host has.
    """
    check_service(service)
    check_name(name)
    choices = SERVICE_GROUPS[service]
    if group is not None and group not in choices:
        valid = ", ".join(choices) or "none (the baseline has no group)"
        raise UsageError(f"--group {group!r} is not a group of {service}; valid: {valid}")
    if group is None and choices:
        group = choices[0]
        if service == "postgresql" and existing_groups.get("postgresql_primary"):
            group = "postgresql_replica"
    peers = None
    if group == "postgresql_replica":
        primaries = [h for h in existing_groups.get("postgresql_primary", []) if h != name]
        if not primaries:
            raise UsageError("a PostgreSQL replica needs a primary, and the inventory has none")
        peers = "postgresql_primary"
    elif group == "postgresql_primary" and [h for h in existing_groups.get("postgresql_primary", []) if h != name]:
        raise UsageError(
            "the inventory has a PostgreSQL primary already",
            hint="bootstrap the host as a replica (the default), or replace the primary by hand",
        )
    return Placement(
        name=name, address=address, service=service, group=group, peers=peers, hostvars=dict(hostvars or {})
    )
