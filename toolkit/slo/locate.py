"""Where an inventory's Prometheus answers, and how strictly its budget gate holds.

In order: TOOLKIT_PROMETHEUS_URL; the inventory's ``toolkit_prometheus_url``; the first host of group
``prometheus``, at its address and the port and scheme its role variables give it. The last one needs no
configuration in the lab or in an environment the toolkit built.
"""

import os
from dataclasses import dataclass
from typing import Any

from toolkit.durations import parse_duration
from toolkit.errors import UsageError
from toolkit.runner.inventory import LoadedInventory

MODES = ("auto", "enforce", "warn", "off")
UNREACHABLE_POLICIES = ("closed", "open")


@dataclass(frozen=True)
class GateSettings:
    """mode: enforce refuses, warn only reports, off asks nothing. unreachable: what enforce does without an
    answer from Prometheus (closed refuses, open goes on with a warning). An inventory that says nothing gets
    ``auto``: enforce when it has a Prometheus, off when it has none (nothing to ask, so nothing to gate on);
    an explicit ``enforce`` refuses even then, so a production fleet whose Prometheus vanished from its
    inventory is not waved through."""

    prometheus_url: str | None
    mode: str = "enforce"
    unreachable: str = "closed"
    # Between rolling batches: how long the last batch's hosts get to be healthy, and which alerts count.
    health_settle_seconds: float = 60.0
    health_severities: tuple[str, ...] = ("critical",)


def _inventory_vars(loaded: LoadedInventory) -> dict[str, Any]:
    """Variables every host shares (all's and group_vars/all's): those of the first host in the inventory."""
    return loaded.host_vars(loaded.every[0]) if loaded.every else {}


def prometheus_url(loaded: LoadedInventory) -> str | None:
    from_env = os.environ.get("TOOLKIT_PROMETHEUS_URL")
    if from_env:
        return from_env
    shared = _inventory_vars(loaded)
    if shared.get("toolkit_prometheus_url"):
        return str(shared["toolkit_prometheus_url"])
    servers = loaded.manager.get_hosts("prometheus")
    if not servers:
        return None
    server = servers[0]
    hostvars = loaded.host_vars(server)
    address = str(hostvars.get("ansible_host") or server.name)
    listen = str(hostvars.get("prometheus_web_listen_address") or "0.0.0.0:9090")
    port = listen.rsplit(":", 1)[-1]
    scheme = "https" if hostvars.get("prometheus_web_tls_cert_file") else "http"
    return f"{scheme}://{address}:{port}"


def gate_settings(loaded: LoadedInventory) -> GateSettings:
    """TOOLKIT_BUDGET_GATE overrides the inventory's ``toolkit_budget_gate`` (default auto); unreachable: closed.

    Raises:
        UsageError: a mode or policy that does not exist.
    """
    shared = _inventory_vars(loaded)
    mode = os.environ.get("TOOLKIT_BUDGET_GATE") or str(shared.get("toolkit_budget_gate", "auto"))
    unreachable = str(shared.get("toolkit_budget_gate_unreachable", "closed"))
    if mode not in MODES:
        raise UsageError(f"budget gate mode {mode!r} is not one of {', '.join(MODES)}")
    if unreachable not in UNREACHABLE_POLICIES:
        raise UsageError(
            f"toolkit_budget_gate_unreachable {unreachable!r} is not one of {', '.join(UNREACHABLE_POLICIES)}"
        )
    settle = parse_duration(str(shared.get("toolkit_health_gate_settle", "60s")), "toolkit_health_gate_settle")
    severities = shared.get("toolkit_health_gate_severities", ["critical"])
    if not isinstance(severities, list) or not severities or not all(isinstance(s, str) and s for s in severities):
        raise UsageError(f"toolkit_health_gate_severities {severities!r} is not a list of alert severities")
    url = prometheus_url(loaded)
    if mode == "auto":
        mode = "enforce" if url else "off"
    return GateSettings(
        prometheus_url=url,
        mode=mode,
        unreachable=unreachable,
        health_settle_seconds=settle.total_seconds(),
        health_severities=tuple(severities),
    )
