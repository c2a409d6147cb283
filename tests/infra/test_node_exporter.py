"""The node_exporter role's behaviour: what Prometheus gets when it scrapes a host, and who may scrape it.

Runs unchanged on a molecule container and on a live fleet (`toolkit verify node_exporter`, every host).
Expected values are each host's inventory variables over the role's defaults (tests/infra/toolkit_infra.py).
Metrics are fetched on the host itself from the listen address, as Prometheus would fetch them; the firewall
is checked in its rules file, in the kernel's ruleset when nftables runs, and from this controller.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import time
import uuid
from typing import Any

import pytest
from toolkit_infra import (
    SANDBOXED,
    Network,
    address_of,
    assert_kernel_matches,
    controller_address,
    covers,
    expected_vars,
    firewall_state,
    http_get,
    inventory_variables,
    nft_sources,
    other_host,
    reachable,
    unit_settings,
    web_endpoint,
)

ROLE = "node_exporter"
SERVICE = "prometheus-node-exporter"
RULES_FILE = "/etc/nftables.d/node-exporter.nft"
RULE_COMMENT = "node-exporter: prometheus"
SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)", re.MULTILINE)
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def ne(host: Any) -> dict[str, Any]:
    return expected_vars(host, ROLE)


def listen_port(ne: dict[str, Any]) -> int:
    return int(ne["node_exporter_web_listen_address"].rsplit(":", 1)[1])


def scrape(host: Any, ne: dict[str, Any]) -> str:
    """The exporter's /metrics page, fetched on the host as Prometheus fetches it (https and basic auth when
    the role turned them on); retried: it may be restarting after a converge."""
    endpoint = web_endpoint(ne, ROLE)
    for _ in range(10):
        try:
            status, body = http_get(host, endpoint, "/metrics")
        except AssertionError:  # no answer yet
            status, body = 0, ""
        if status == 200:
            return body
        time.sleep(1)
    raise AssertionError(f"{endpoint['base']}/metrics did not answer 200 (last status {status})")


def samples(metrics: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric in Prometheus's text format, as (labels, value)."""
    return [
        (dict(LABEL.findall(match["labels"] or "")), float(match["value"]))
        for match in SAMPLE.finditer(metrics)
        if match["name"] == name
    ]


# --- the service ----------------------------------------------------------------------------------------


def test_the_exporter_is_enabled_and_running(host: Any) -> None:
    service = host.service(SERVICE)
    assert service.is_enabled
    assert service.is_running


def test_the_exporter_runs_sandboxed(host: Any) -> None:
    assert unit_settings(host, SERVICE, *SANDBOXED) == SANDBOXED


def test_the_unit_runs_the_binary_of_the_install_method(host: Any, ne: dict[str, Any]) -> None:
    """Debian's binary, or the release tarball's versioned one with `current` pointing at it (no package)."""
    exec_start = unit_settings(host, SERVICE, "ExecStart")["ExecStart"]
    if ne["node_exporter_install_method"] == "tarball":
        home = f"{ne['node_exporter_install_dir']}/node_exporter-{ne['node_exporter_version']}"
        assert f"path={home}/node_exporter " in exec_start
        assert host.file(f"{ne['node_exporter_install_dir']}/current").linked_to == home
        assert not host.package("prometheus-node-exporter").is_installed
    else:
        assert "path=/usr/bin/prometheus-node-exporter " in exec_start


def test_the_listen_address_serves_this_hosts_node_metrics(host: Any, ne: dict[str, Any]) -> None:
    metrics = scrape(host, ne)
    uname = samples(metrics, "node_uname_info")
    assert [labels.get("nodename") for labels, _ in uname] == [host.check_output("uname -n")]
    assert samples(metrics, "node_cpu_seconds_total"), "no CPU series"
    assert samples(metrics, "node_memory_MemAvailable_bytes"), "no memory series"
    assert samples(metrics, "node_filesystem_avail_bytes"), "no filesystem series"


def test_enabled_collectors_succeed_and_disabled_ones_are_absent(host: Any, ne: dict[str, Any]) -> None:
    metrics = scrape(host, ne)
    success = {labels["collector"]: value for labels, value in samples(metrics, "node_scrape_collector_success")}
    failing = [name for name in ne["node_exporter_enabled_collectors"] if success.get(name) != 1]
    assert failing == [], f"enabled collectors missing or failing: {failing}"
    running = [name for name in ne["node_exporter_disabled_collectors"] if name in success]
    assert running == [], f"disabled collectors still run: {running}"


def test_a_metric_written_to_the_textfile_directory_is_served(host: Any, ne: dict[str, Any]) -> None:
    directory = ne["node_exporter_textfile_dir"]
    listing = host.file(directory)
    assert (listing.user, listing.group, listing.mode) == ("root", "prometheus", 0o750)
    probe = uuid.uuid4().hex
    path = f"{directory}/toolkit_verify_{probe}.prom"
    # Written under another name and renamed, as a writer must, so a scrape never reads half a file.
    write = (
        f"printf 'toolkit_verify_probe{{probe=\"{probe}\"}} 1\\n' > {shlex.quote(path + '.tmp')}"
        f" && mv {shlex.quote(path + '.tmp')} {shlex.quote(path)}"
    )
    with host.sudo():
        host.check_output(write)
    try:
        metrics = scrape(host, ne)
        assert samples(metrics, "toolkit_verify_probe") == [({"probe": probe}, 1.0)]
        assert samples(metrics, "node_textfile_scrape_error") == [({}, 0.0)]
    finally:
        with host.sudo():
            host.run(f"rm -f {shlex.quote(path)} {shlex.quote(path + '.tmp')}")
    assert not samples(scrape(host, ne), "toolkit_verify_probe"), "the probe metric outlived its file"


def test_basic_auth_refuses_anonymous_scrapes_and_admits_every_user(host: Any, ne: dict[str, Any]) -> None:
    """With basic auth on, a scrape without credentials or with a wrong password gets 401; each user gets 200."""
    users = ne["node_exporter_web_basic_auth_users"]
    endpoint = web_endpoint(ne, ROLE)
    scrape(host, ne)  # up, whatever it asks for
    if not users:
        assert http_get(host, endpoint, "/metrics", anonymous=True)[0] == 200, "no users, yet anonymous refused"
        return
    assert http_get(host, endpoint, "/metrics", anonymous=True)[0] == 401
    assert http_get(host, {**endpoint, "password": "wrong"}, "/metrics")[0] == 401
    for user, password in users.items():
        assert http_get(host, {**endpoint, "user": user, "password": str(password)}, "/metrics")[0] == 200, user


def test_tls_is_on_exactly_when_a_certificate_is_given(host: Any, ne: dict[str, Any]) -> None:
    """With a certificate the port speaks TLS only: a plain HTTP request gets no metrics."""
    endpoint = web_endpoint(ne, ROLE)
    scrape(host, ne)
    plain = {**endpoint, "base": endpoint["base"].replace("https://", "http://", 1)}
    status, body = http_get(host, plain, "/metrics")
    if ne["node_exporter_web_tls_cert_file"]:
        # Go's TLS server answers a plain request with 400 "Client sent an HTTP request to an HTTPS server".
        assert status == 400 and "HTTPS" in body, (status, body[:200])
    else:
        assert status == 200


def test_the_web_configuration_is_private_to_the_service(host: Any, ne: dict[str, Any]) -> None:
    web = host.file("/etc/prometheus-node-exporter/web.yml")
    on = bool(ne["node_exporter_web_basic_auth_users"] or ne["node_exporter_web_tls_cert_file"])
    assert web.exists == on
    if on:
        assert (web.user, web.group, web.mode) == ("root", "prometheus", 0o640)
        # Hashes only: no password the inventory holds is in the file.
        content = web.content_string
        assert not [u for u, pw in ne["node_exporter_web_basic_auth_users"].items() if str(pw) in content]


def test_the_packages_optional_timers_do_not_run(host: Any, ne: dict[str, Any]) -> None:
    for unit in ne["node_exporter_disabled_units"]:
        assert host.run(f"systemctl is-active --quiet {shlex.quote(unit)}").rc != 0, f"{unit} is active"
        state = host.run(f"systemctl is-enabled {shlex.quote(unit)}").stdout.strip()
        assert state not in ("enabled", "enabled-runtime"), f"{unit} is {state}"


# --- the firewall ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def firewall(host: Any, ne: dict[str, Any]) -> dict[str, Any]:
    """The role's rules file and, when the hardening firewall runs, the kernel's live ruleset."""
    if not ne["node_exporter_firewall_enabled"]:
        pytest.skip("node_exporter_firewall_enabled is false")
    return firewall_state(host, RULES_FILE)


def expected_sources(host: Any, ne: dict[str, Any]) -> list[Network]:
    """node_exporter_firewall_sources as the inventory sets it, or the role's default: one address per
    Prometheus host (its ansible_host, else its inventory name)."""
    variables = inventory_variables(host)
    if "node_exporter_firewall_sources" in variables:
        listed = [str(source) for source in ne["node_exporter_firewall_sources"]]
    else:
        names = variables.get("groups", {}).get(ne["node_exporter_prometheus_group"], [])
        listed = [str(inventory_variables(other_host(host, name)).get("ansible_host", name)) for name in names]
    return sorted({ipaddress.ip_network(source, strict=False) for source in listed}, key=str)


def test_the_rules_file_admits_exactly_the_sources(host: Any, ne: dict[str, Any], firewall: dict[str, Any]) -> None:
    expected = expected_sources(host, ne)
    rules = [line for line in firewall["file"].splitlines() if line.strip() and not line.startswith("#")]
    assert [line for line in rules if f'comment "{RULE_COMMENT}"' not in line] == [], "rules the role did not write"
    assert sorted(nft_sources(firewall["file"], listen_port(ne), RULE_COMMENT), key=str) == expected
    if not expected:
        assert rules == [], "no source is configured, yet the file opens the port"


def test_the_kernel_admits_exactly_the_sources(host: Any, ne: dict[str, Any], firewall: dict[str, Any]) -> None:
    if firewall["ruleset"] is None:
        pytest.skip("nftables does not run on this host (the hardening role's firewall is off)")
    expected = expected_sources(host, ne)
    assert_kernel_matches(firewall["ruleset"], listen_port(ne), RULE_COMMENT, expected)


def test_this_controller_gets_in_exactly_when_a_source_admits_it(
    host: Any, ne: dict[str, Any], firewall: dict[str, Any]
) -> None:
    """Through the live firewall: the exporter answers this controller iff a source covers its address."""
    if firewall["ruleset"] is None:
        pytest.skip("nftables does not run on this host (the hardening role's firewall is off)")
    address = address_of(host)
    admitted = covers(expected_sources(host, ne), ipaddress.ip_network(controller_address(address)))
    assert reachable(address, listen_port(ne)) is admitted
