"""What the testinfra suites in tests/infra/ share: the values a host is expected to have, and readers.

A suite checks the same thing on a molecule container and on a live fleet, so expected values are never
written into a test: they are the role's defaults/main.yml overlaid with the host's inventory variables
(group_vars, host_vars, the inventory file), templated the way Ansible templates them. Extra vars given to
one `toolkit converge -e` run are not part of the inventory and so are not expected.
"""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

PROJECT = Path(__file__).resolve().parents[2]
ROLES = PROJECT / "roles"


@functools.cache
def role_defaults(role: str) -> dict[str, Any]:
    """roles/<role>/defaults/main.yml as a mapping (untemplated)."""
    data = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    if not isinstance(data, dict):
        raise TypeError(f"roles/{role}/defaults/main.yml is not a mapping")
    return data


def _as_template(value: Any) -> Any:
    """Mark every string as a template, as Ansible does with variables from inventories and roles."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: _as_template(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_template(item) for item in value]
    return value


def inventory_variables(host: Any) -> dict[str, Any]:
    """The host's inventory variables (ansible-inventory's view: inventory file, group_vars, host_vars).

    conftest.py may hand tests a podman-backed host for speed; its variables come from the inventory host.
    """
    source = getattr(host, "inventory_host", host)
    variables: dict[str, Any] = source.ansible.get_variables()
    return variables


def expected_vars(host: Any, role: str) -> dict[str, Any]:
    """The role's variables for this host: defaults overlaid with its inventory variables, templated.

    Only the role's own variables are templated (lazily, like Ansible), so inventory variables that
    cannot be rendered outside a play (molecule's lookups, vault references) do no harm unless used.
    """
    defaults = role_defaults(role)
    inventory = inventory_variables(host)
    merged = _as_template({**defaults, **inventory})
    templar = Templar(loader=DataLoader(), variables=merged)
    return {name: templar.template(merged[name]) for name in defaults}


def require_phase(variables: dict[str, Any], role: str, phase: str) -> None:
    """Skip the calling test when the host has the role's phase switched off."""
    if not variables[f"{role}_{phase}_enabled"]:
        pytest.skip(f"{role}_{phase}_enabled is false on this host")


def in_container(host: Any) -> bool:
    """Whether systemd considers this host a container (what ConditionVirtualization=container tests)."""
    return bool(host.run("systemd-detect-virt --container --quiet").rc == 0)


def systemd_config(host: Any, name: str) -> dict[str, str]:
    """The effective settings of a systemd config file and its drop-ins (e.g. "systemd/journald.conf").

    systemd-analyze prints the main file then every drop-in in the order systemd reads them; for a key
    set more than once the last assignment wins, as it does for systemd.
    """
    output = host.check_output(f"systemd-analyze cat-config {shlex.quote(name)}")
    settings: dict[str, str] = {}
    for line in output.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        settings[key.strip()] = value.strip()
    return settings


def apt_config(host: Any) -> dict[str, str]:
    """apt's effective configuration (`apt-config dump`), as {"Acquire::Retries": "3", ...}."""
    settings: dict[str, str] = {}
    for line in host.check_output("apt-config dump").splitlines():
        key, _, value = line.partition(" ")
        settings[key] = value.rstrip(";").strip('"')
    return settings
