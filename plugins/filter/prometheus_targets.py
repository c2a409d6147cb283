"""prometheus_file_sd: inventory hosts as Prometheus file_sd target groups, labelled from their variables.

The prometheus role writes one file per scrape job from this, so a host is scraped after the next converge of
the Prometheus servers with no hand edit. It stays here (not in toolkit/) because it must load in plain
ansible and in AWX.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DOCUMENTATION = r"""
name: prometheus_file_sd
short_description: Inventory hosts as Prometheus file_sd target groups
description:
  - One target group per host, C(<address>:<port>), where the address is the host's C(prometheus_target_address)
    when set (the address peers reach it on, where the controller uses another one, such as an EC2 instance's
    public address), else its C(ansible_host), else the inventory name; IPv6 addresses are bracketed.
  - Groups come sorted by inventory name, whatever order the input lists the hosts in.
  - Each group carries C(instance) (the inventory name) and the labels of O(labels) the host defines.
options:
  _input:
    description: Inventory host names (for example C(groups['postgresql'])).
    type: list
    elements: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
  port:
    description: The port the job scrapes.
    type: int
    required: true
  labels:
    description:
      - Label name to the host variables that may hold its value, first defined and non-empty wins.
      - A label none of them defines is left out for that host.
    type: dict
    default: {}
  static_labels:
    description: Labels every target of the job gets (the job's C(service), for example).
    type: dict
    default: {}
  service_groups:
    description:
      - Inventory groups that name a service. A host's C(service) label is the first of them it belongs to,
        unless O(static_labels) sets one.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: PostgreSQL exporters as file_sd targets.
  ansible.builtin.copy:
    content: "{{ groups['postgresql'] | prometheus_file_sd(hostvars, 9187, {'env': ['toolkit_env']}) | to_nice_yaml }}"
    dest: /etc/prometheus/file_sd/postgres.yml
    mode: "0644"
"""

RETURN = r"""
_value:
  description: file_sd target groups, one per host, in the order of the input.
  type: list
  elements: dict
"""

LABEL_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"


class TargetError(ValueError):
    """The input cannot become a valid target list; the message names the host or label at fault."""


def target_address(address: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets as Prometheus requires."""
    try:
        if isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address):
            return f"[{address}]:{port}"
    except ValueError:
        pass  # a DNS name
    return f"{address}:{port}"


def _label_value(variables: Mapping[str, Any], candidates: Sequence[str]) -> str | None:
    for name in candidates:
        value = variables.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _check_label_names(names: Iterable[str]) -> None:
    for name in names:
        valid = bool(name) and name[0] in LABEL_NAME_START and name.replace("_", "a").isalnum() and name.isascii()
        if not valid or name.startswith("__"):
            raise TargetError(f"{name!r} is not a valid Prometheus label name")


def file_sd(
    hosts: Sequence[str],
    hostvars: Mapping[str, Mapping[str, Any]],
    port: int,
    labels: Mapping[str, Sequence[str] | str] | None = None,
    static_labels: Mapping[str, Any] | None = None,
    service_groups: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Target groups for ``hosts``; see DOCUMENTATION."""
    if isinstance(hosts, str):
        raise TargetError("expects a list of host names, got a string")
    if not 0 < int(port) < 65536:
        raise TargetError(f"port {port} is out of range")
    wanted = {
        name: [sources] if isinstance(sources, str) else list(sources) for name, sources in (labels or {}).items()
    }
    fixed = {str(name): str(value) for name, value in (static_labels or {}).items()}
    _check_label_names([*wanted, *fixed])
    groups: list[dict[str, Any]] = []
    # Sorted by name: an inventory lists a group's hosts in the order its source gave them (a static file's
    # lines, EC2's API answers), and the same fleet seen through two inventories must write the same file.
    for host in sorted(hosts):
        if host not in hostvars:
            raise TargetError(f"host {host!r} is not in the inventory")
        variables = hostvars[host]
        address = str(variables.get("prometheus_target_address") or variables.get("ansible_host") or host)
        found = {name: _label_value(variables, sources) for name, sources in wanted.items()}
        member_of = set(variables.get("group_names") or ())
        service = next((group for group in service_groups if group in member_of), None)
        host_labels = {
            "instance": host,
            **({"service": service} if service else {}),
            **{k: v for k, v in found.items() if v is not None},
            **fixed,
        }
        groups.append({"targets": [target_address(address, int(port))], "labels": dict(sorted(host_labels.items()))})
    return groups


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"prometheus_file_sd": file_sd}
