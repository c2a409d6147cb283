"""What the testinfra suites in tests/infra/ share: the values a host is expected to have, and readers.

A suite checks the same thing on a molecule container and on a live fleet, so expected values are never
written into a test: they are the role's defaults/main.yml overlaid with the host's inventory variables
(group_vars, host_vars, the inventory file), templated the way Ansible templates them. Extra vars given to
one `toolkit converge -e` run are not part of the inventory and so are not expected.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import re
import shlex
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template

# Outside ansible-playbook the plugin loader starts empty: without this, an inventory value that uses a
# lookup or a collection's filter could not be templated here as it is in a play.
init_plugin_loader()

PROJECT = Path(__file__).resolve().parents[2]
ROLES = PROJECT / "roles"


@functools.cache
def role_defaults(role: str) -> dict[str, Any]:
    """roles/<role>/defaults/main.yml as a mapping (untemplated)."""
    data = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    if not isinstance(data, dict):
        raise TypeError(f"roles/{role}/defaults/main.yml is not a mapping")
    return data


class UntrustedText(str):
    """An inventory value Ansible does not trust as a template (from a dynamic inventory source)."""


def _decoded(value: Any) -> Any:
    """ansible-inventory's JSON with its `{"__ansible_unsafe": text}` wrappers turned back into text."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"} and isinstance(value["__ansible_unsafe"], str):
            return UntrustedText(value["__ansible_unsafe"])
        return {key: _decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decoded(item) for item in value]
    return value


def read_inventory_plainly(read: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap testinfra's inventory reader so untrusted values arrive as text.

    Since ansible-core 2.19, `ansible-inventory --list` wraps every value an inventory plugin did not mark
    as trusted (all of the AWS plugin's: they come from EC2 tags) as `{"__ansible_unsafe": ...}`; testinfra
    expects `ansible_host` to be a string and stops on anything else.
    """

    @functools.wraps(read)
    def reader(*args: Any, **kwargs: Any) -> Any:
        return _decoded(read(*args, **kwargs))

    return reader


def _as_template(value: Any) -> Any:
    """Mark every string as a template, as Ansible does with variables from inventories and roles.

    Untrusted values stay plain text, as Ansible keeps them: never templated.
    """
    if isinstance(value, UntrustedText):
        return str(value)
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


PODMAN_CONNECTIONS = ("podman", "containers.podman.podman")


def _podman_container(inventory_host: Any) -> str | None:
    """The container behind an inventory host that Ansible reaches with its podman connection, if any."""
    backend = inventory_host.backend
    if backend.NAME != "ansible" or backend.force_ansible:
        return None
    hostvars = backend.ansible_runner.inventory["_meta"].get("hostvars", {}).get(backend.host, {})
    if hostvars.get("ansible_connection") not in PODMAN_CONNECTIONS:
        return None
    container = str(hostvars.get("ansible_host", backend.host))
    user = hostvars.get("ansible_user")
    return f"{user}@{container}" if user else container


def direct(inventory_host: Any) -> Any:
    """The host, talking to a podman container directly when Ansible would reach it through podman.

    testinfra has no backend for Ansible's podman connection (molecule's containers use it), so it would
    run one `ansible` process per command, about 1.5 s each. The same container is reached here with
    testinfra's podman backend (`podman exec`, the same user), about 0.1 s per command. Every other host
    is returned as it is. The inventory host stays reachable for its variables (inventory_variables).
    """
    container = _podman_container(inventory_host)
    if container is None:
        return inventory_host
    fast = testinfra.get_host(f"podman://{container}")
    fast.inventory_host = inventory_host
    return fast


def other_host(host: Any, name: str) -> Any:
    """Another host of the same inventory, reached the way `host` is (for checks that span two hosts)."""
    backend = getattr(host, "inventory_host", host).backend
    if backend.NAME != "ansible":
        raise RuntimeError(f"{name}: reaching other hosts needs testinfra's ansible backend, not {backend.NAME}")
    return direct(
        testinfra.get_host(
            f"ansible://{name}", ansible_inventory=backend.ansible_inventory, force_ansible=backend.force_ansible
        )
    )


class ExpectedVars(Mapping[str, Any]):
    """A role's variables for one host, each templated when a test first reads it (as Ansible does)."""

    def __init__(self, names: list[str], merged: dict[str, Any]) -> None:
        self._names = names
        self._merged = merged
        self._templar = Templar(loader=DataLoader(), variables=merged)
        self._values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._values:
            self._values[name] = self._templar.template(self._merged[name])
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def expected_vars(host: Any, role: str) -> ExpectedVars:
    """The role's variables for this host: defaults overlaid with its inventory variables, templated.

    Only the role's own variables are templated, and only those a test reads, so variables that cannot be
    rendered outside a play (password lookups, vault references, facts) do no harm unless a test uses them.
    """
    defaults = role_defaults(role)
    merged = _as_template({**defaults, **inventory_variables(host)})
    return ExpectedVars(list(defaults), merged)


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


def unit_settings(host: Any, unit: str, *names: str) -> dict[str, str]:
    """Effective settings of a systemd unit, its drop-ins applied (`systemctl show -p ...`)."""
    output = host.check_output(f"systemctl show {shlex.quote(unit)} " + " ".join(f"-p {n}" for n in names))
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


SANDBOXED = {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "CapabilityBoundingSet": ""}


def apt_config(host: Any) -> dict[str, str]:
    """apt's effective configuration (`apt-config dump`), as {"Acquire::Retries": "3", ...}."""
    settings: dict[str, str] = {}
    for line in host.check_output("apt-config dump").splitlines():
        key, _, value = line.partition(" ")
        settings[key] = value.rstrip(";").strip('"')
    return settings


# --- the firewall, seen from the host and from this controller -----------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def nft_sources(text: str, port: int | str, comment: str) -> list[Network]:
    """The source networks of the rules in an nft file or `nft list ruleset` that accept `port` with `comment`.

    The kernel merges overlapping elements of a set (10.0.0.0/24 swallows 10.0.0.7), prints adjacent ones as a
    range (10.0.0.11-10.0.0.13) and a /32 as a bare address, so compare with covers() rather than for
    equality when reading a live ruleset.
    """
    sources: list[Network] = []
    for line in text.splitlines():
        if f"dport {port} accept" not in line or f'comment "{comment}"' not in line:
            continue
        match = re.search(r"saddr (\{[^}]*\}|\S+)", line)
        if match:
            listed = match.group(1).strip("{} ")
            sources += [network for item in listed.split(",") if item.strip() for network in _networks(item.strip())]
    return sources


def _networks(element: str) -> list[Network]:
    """One element of an nft set: an address, a network, or a range of addresses (as the smallest networks)."""
    if "-" in element:
        first, last = (ipaddress.ip_address(part) for part in element.split("-", 1))
        return list(ipaddress.summarize_address_range(first, last))
    return [ipaddress.ip_network(element, strict=False)]


def covers(networks: list[Network], wanted: Network) -> bool:
    return any(wanted.version == n.version and wanted.subnet_of(n) for n in networks)  # type: ignore[arg-type]


def firewall_state(host: Any, rules_file: str) -> dict[str, str | None]:
    """A role's nft rules file ("file") and, when the hardening firewall runs, the kernel's live ruleset
    ("ruleset", else None)."""
    with host.sudo():
        active = host.run("systemctl is-active --quiet nftables").rc == 0
        return {
            "file": host.file(rules_file).content_string,
            "ruleset": host.check_output("nft list ruleset") if active else None,
        }


def assert_kernel_matches(ruleset: str, port: int, comment: str, expected: list[Network]) -> None:
    """The live rule admits exactly the expected networks (the kernel merges overlapping ones)."""
    live, wanted = _collapsed(nft_sources(ruleset, port, comment)), _collapsed(expected)
    assert [n for n in expected if not covers(live, n)] == [], f"port {port}: not admitted"
    assert [n for n in live if not covers(wanted, n)] == [], f"port {port}: admitted but not expected"


def _collapsed(networks: list[Network]) -> list[Network]:
    """The same addresses as the fewest aligned networks, the form the kernel keeps a set in: adjacent /32s
    become one /31, so a network is inside the union exactly when it is inside one of these."""
    return [
        *ipaddress.collapse_addresses(n for n in networks if n.version == 4),
        *ipaddress.collapse_addresses(n for n in networks if n.version == 6),
    ]


def address_of(host: Any) -> str:
    """The address this controller reaches the host at."""
    configured = str(inventory_variables(host).get("ansible_host", ""))
    try:
        return str(ipaddress.ip_address(configured))
    except ValueError:
        return str(host.check_output("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n1"))


def default_route_address(host: Any) -> str:
    """The host's address on its default route (what its peers see it connect from)."""
    route = host.check_output("ip -4 -o route get 192.0.2.1")
    match = re.search(r"\bsrc (\S+)", route)
    assert match, f"no source address in: {route}"
    return match.group(1)


def controller_address(toward: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """This controller's own address on the way to `toward` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in toward else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((toward, 9))
        return ipaddress.ip_address(probe.getsockname()[0])


def reachable(address: str, port: int) -> bool | None:
    """True when a TCP connection opens, False when it times out (dropped), None when refused."""
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except TimeoutError:
        return False
    except ConnectionRefusedError:
        return None


# GETs a URL on the host with Python's standard library: basic auth and a CA file when given; prints the
# status and body as JSON (a 401 is an answer, not an error). The request comes in base64 so no quoting and
# no plain password in the command line.
_GET_SCRIPT = """
import base64, json, ssl, sys, urllib.error, urllib.request
r = json.loads(base64.b64decode(sys.argv[1]))
request = urllib.request.Request(r["url"])
if r["user"]:
    token = base64.b64encode((r["user"] + ":" + r["password"]).encode()).decode()
    request.add_header("Authorization", "Basic " + token)
context = ssl.create_default_context(cafile=r["ca"] or None)
try:
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "body": error.read().decode()}))
"""


def web_endpoint(variables: Any, role: str) -> dict[str, str]:
    """How a role's own checks reach its web endpoint (role prometheus, alertmanager or node_exporter) from the
    host: loopback when it listens on every address, https when it has a TLS cert, as the first basic auth user
    in sort order."""
    address, port = str(variables[f"{role}_web_listen_address"]).rsplit(":", 1)
    if address in ("", "0.0.0.0", "[::]", "::"):
        address = "127.0.0.1"
    users: Mapping[str, str] = variables[f"{role}_web_basic_auth_users"]
    user = sorted(users)[0] if users else ""
    tls = bool(variables[f"{role}_web_tls_cert_file"])
    return {
        "base": f"{'https' if tls else 'http'}://{address}:{port}",
        "user": user,
        "password": str(users[user]) if user else "",
        "ca": str(variables[f"{role}_web_tls_ca_file"]) if tls else "",
    }


def http_get(host: Any, endpoint: Mapping[str, str], path: str, *, anonymous: bool = False) -> tuple[int, str]:
    """(status, body) of a GET on the host itself (the firewall does not matter there)."""
    request = {**endpoint, "url": endpoint["base"] + path}
    if anonymous:
        request.update(user="", password="")
    encoded = base64.b64encode(json.dumps(request).encode()).decode()
    result = host.run(f"python3 -c {shlex.quote(_GET_SCRIPT)} {encoded}")
    # The command line carries the credentials: report the error, never the command.
    assert result.rc == 0, f"GET {request['url']} failed on the host: {result.stderr[-2000:]}"
    answer = json.loads(result.stdout)
    return int(answer["status"]), str(answer["body"])
