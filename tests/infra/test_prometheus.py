"""The prometheus role's result, checked through Prometheus's own HTTP API, not by reading its files.

Runs unchanged on the molecule instance (`molecule test -s prometheus`) and on a live fleet
(`toolkit verify prometheus`). What the server should scrape is computed from the same inventory the role
read: every host of each job's group, labelled from its variables.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import time
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from toolkit_infra import (
    PROJECT,
    SANDBOXED,
    UntrustedText,
    expected_vars,
    http_get,
    inventory_variables,
    nft_sources,
    unit_settings,
    web_endpoint,
)

ROLE = "prometheus"
RULES_DIR = "/etc/prometheus/rules"
# Long enough for two scrapes at the default 15 s interval after a fresh converge.
UP_DEADLINE_SECONDS = 90


def _filter_module() -> ModuleType:
    # The role's own filter, so the expected labels follow the same rules as the file_sd files.
    spec = importlib.util.spec_from_file_location(
        "prometheus_targets", PROJECT / "plugins/filter/prometheus_targets.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prom(host: Any) -> Any:
    return expected_vars(host, ROLE)


@pytest.fixture(autouse=True)
def _only_prometheus_servers(host: Any) -> None:
    variables = inventory_variables(host)
    if variables["inventory_hostname"] not in variables.get("groups", {}).get("prometheus", []):
        pytest.skip(f"{variables['inventory_hostname']} is not a Prometheus server")


def get_json(host: Any, endpoint: Mapping[str, str], path: str) -> Any:
    status, body = http_get(host, endpoint, path)
    assert status == 200, f"{path}: HTTP {status}: {body[:500]}"
    return json.loads(body)


def api(host: Any, prom: Any, path: str) -> Any:
    """GET a path of the server's HTTP API from the host itself, with the role's credentials when set."""
    document = get_json(host, web_endpoint(prom, ROLE), path)
    return document.get("data", document) if isinstance(document, dict) else document


class _TemplatedVars(Mapping[str, Any]):
    """One host's inventory variables, each templated when first read (as in a play): a value the labels do
    not use (a key file lookup in molecule's inventory) is never rendered."""

    def __init__(self, raw: dict[str, Any], group_names: list[str]) -> None:
        self._raw = {**raw, "group_names": group_names}
        self._templar = Templar(loader=DataLoader(), variables=self._raw)

    def __getitem__(self, name: str) -> Any:
        value = self._raw[name]
        if isinstance(value, UntrustedText) or not isinstance(value, str):
            return value
        return self._templar.template(trust_as_template(value))

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _hostvars(host: Any) -> dict[str, Mapping[str, Any]]:
    """Every inventory host's variables as ansible-inventory lists them, with group_names."""
    backend = getattr(host, "inventory_host", host).backend
    listed: dict[str, dict[str, Any]] = backend.ansible_runner.inventory["_meta"].get("hostvars", {})
    groups: dict[str, list[str]] = inventory_variables(host).get("groups", {})
    return {
        name: _TemplatedVars(
            listed.get(name, {}), sorted(g for g, members in groups.items() if name in members and g != "all")
        )
        for name in groups.get("all", [])
    }


@pytest.fixture(scope="module")
def expected_targets(host: Any, prom: Any) -> dict[tuple[str, str], dict[str, str]]:
    """(job, instance) to the labels the target must carry (job included), from the inventory."""
    groups: dict[str, list[str]] = inventory_variables(host).get("groups", {})
    hostvars = _hostvars(host)
    file_sd = _filter_module().file_sd
    expected: dict[tuple[str, str], dict[str, str]] = {}
    for job in prom["prometheus_scrape_jobs"]:
        static = {"service": job["service"]} if job.get("service") else {}
        for group in file_sd(
            groups.get(job["group"], []),
            hostvars,
            job["port"],
            prom["prometheus_target_labels"],
            static,
            prom["prometheus_service_groups"],
        ):
            labels = {**group["labels"], "job": job["name"]}
            expected[(job["name"], labels["instance"])] = labels
    return expected


def active_targets(host: Any, prom: Any) -> list[dict[str, Any]]:
    return list(api(host, prom, "/api/v1/targets?state=active")["activeTargets"])


# --- the server ------------------------------------------------------------------------------------------


def test_prometheus_runs_enabled(host: Any) -> None:
    service = host.service("prometheus")
    assert service.is_running
    assert service.is_enabled


def test_the_loaded_configuration_passes_promtool_and_was_loaded(host: Any, prom: Any) -> None:
    checked = host.run("promtool check config /etc/prometheus/prometheus.yml")
    assert checked.rc == 0, checked.stdout + checked.stderr
    runtime = api(host, prom, "/api/v1/status/runtimeinfo")
    assert runtime["reloadConfigSuccess"] is True


@pytest.mark.parametrize(
    ("role", "unit", "package", "binary", "tools"),
    [
        ("prometheus", "prometheus", "prometheus", "prometheus", ["promtool"]),
        ("alertmanager", "prometheus-alertmanager", "prometheus-alertmanager", "alertmanager", ["amtool"]),
    ],
)
def test_the_units_run_the_binaries_of_the_install_method(
    host: Any, prom: Any, am: Any, role: str, unit: str, package: str, binary: str, tools: list[str]
) -> None:
    """Debian's binaries, or the release tarball's versioned ones, `current` and the tools on PATH (no package)."""
    variables = prom if role == "prometheus" else am
    exec_start = unit_settings(host, unit, "ExecStart")["ExecStart"]
    if variables[f"{role}_install_method"] == "tarball":
        home = f"{variables[f'{role}_install_dir']}/{binary}-{variables[f'{role}_version']}"
        assert f"path={home}/{binary} " in exec_start
        assert host.file(f"{variables[f'{role}_install_dir']}/current").linked_to == home
        for tool in tools:
            assert host.run(f"{tool} --version").rc == 0, tool
            assert host.file(f"/usr/local/bin/{tool}").linked_to == f"{home}/{tool}"
        assert not host.package(package).is_installed
    else:
        assert f"path=/usr/bin/{'prometheus-alertmanager' if role == 'alertmanager' else 'prometheus'} " in exec_start


def test_storage_and_retention_are_the_configured_ones(host: Any, prom: Any) -> None:
    flags = api(host, prom, "/api/v1/status/flags")
    assert flags["storage.tsdb.path"] == prom["prometheus_storage_path"]
    assert flags["storage.tsdb.retention.time"] == prom["prometheus_storage_retention_time"]
    assert size_bytes(flags["storage.tsdb.retention.size"]) == size_bytes(
        prom["prometheus_storage_retention_size"] or "0B"
    )
    assert flags["web.listen-address"] == prom["prometheus_web_listen_address"]


def size_bytes(text: str) -> int:
    """Prometheus's byte sizes: 20GB is 20 GiB (its units are powers of 1024); it prints them as GiB."""
    number = text.rstrip("BiKMGTPE")
    unit = text[len(number) :].replace("i", "")
    return int(number) * 1024 ** ["B", "KB", "MB", "GB", "TB", "PB", "EB"].index(unit)


# --- targets ---------------------------------------------------------------------------------------------


def test_every_inventory_host_is_a_target_of_its_job_and_nothing_else_is(
    host: Any, prom: Any, expected_targets: dict[tuple[str, str], dict[str, str]]
) -> None:
    generated = {job["name"] for job in prom["prometheus_scrape_jobs"]}
    # Prometheus hands file_sd changes to its scrape pools a few seconds after it reads them (its discovery
    # manager batches updates): right after a converge the pools may still be filling.
    deadline = time.monotonic() + UP_DEADLINE_SECONDS
    while True:
        live = {
            (t["labels"]["job"], t["labels"].get("instance", ""))
            for t in active_targets(host, prom)
            if t["labels"]["job"] in generated
        }
        if live == set(expected_targets) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert sorted(live - set(expected_targets)) == [], "scraped but not in the inventory"
    assert sorted(set(expected_targets) - live) == [], "in the inventory but not scraped"


def test_targets_carry_the_labels_of_their_hosts(
    host: Any, prom: Any, expected_targets: dict[tuple[str, str], dict[str, str]]
) -> None:
    for target in active_targets(host, prom):
        key = (target["labels"]["job"], target["labels"].get("instance", ""))
        if key in expected_targets:
            assert target["labels"] == expected_targets[key], key


def test_every_target_is_up(host: Any, prom: Any) -> None:
    """up == 1 for every target, as Prometheus itself reports it (each host's exporter really answers)."""
    deadline = time.monotonic() + UP_DEADLINE_SECONDS
    while True:
        targets = active_targets(host, prom)
        down = {
            f"{t['labels']['job']}/{t['labels'].get('instance')}": t.get("lastError") or t["health"]
            for t in targets
            if t["health"] != "up"
        }
        if (targets and not down) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert targets, "no active targets"
    assert down == {}, f"targets not up after {UP_DEADLINE_SECONDS} s: {down}"
    # The same through PromQL: the `up` series Prometheus stores, not only the scrape pool's state.
    result = api(host, prom, "/api/v1/query?query=up%20%3D%3D%200")["result"]
    assert result == [], f"up == 0 for {[r['metric'] for r in result]}"


# --- rules -----------------------------------------------------------------------------------------------


def project_slos() -> list[Any]:
    """playbooks/prometheus.yml hands the project's slos.yml to the role (play vars: over any inventory value)."""
    return list(yaml.safe_load((PROJECT / "slos.yml").read_text())["slos"])


def test_the_loaded_rules_are_exactly_the_managed_files(host: Any, prom: Any) -> None:
    overridden = set(prom["prometheus_rule_files"]) | ({"slo"} if project_slos() else set())
    wanted = {f"{RULES_DIR}/{name}.yml" for name in [*prom["prometheus_builtin_rule_files"], *overridden]}
    groups = api(host, prom, "/api/v1/rules")["groups"]
    assert {group["file"] for group in groups} == wanted
    slo_groups = {group["name"] for group in groups if group["file"] == f"{RULES_DIR}/slo.yml"}
    assert slo_groups == {f"slo:{slo['name']}" for slo in project_slos()}
    failing = {
        group["name"]: rule.get("lastError") for group in groups for rule in group["rules"] if rule.get("lastError")
    }
    assert failing == {}, "rules fail to evaluate"


def test_rule_files_on_disk_pass_promtool(host: Any) -> None:
    checked = host.run(f"promtool check rules {RULES_DIR}/*.yml")
    assert checked.rc == 0, checked.stdout + checked.stderr


# --- Alertmanager (roles/alertmanager, on the same hosts) --------------------------------------------------


@pytest.fixture(scope="module")
def am(host: Any) -> Any:
    return expected_vars(host, "alertmanager")


def am_api(host: Any, am: Any, path: str) -> Any:
    return get_json(host, web_endpoint(am, "alertmanager"), path)


def assert_serving_sandboxed_with_a_checked_configuration(host: Any, unit: str, check: str) -> None:
    """The unit enabled and running under the role's sandbox, and its configuration passing its own checker."""
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled
    checked = host.run(check)
    assert checked.rc == 0, checked.stdout + checked.stderr
    assert unit_settings(host, unit, *SANDBOXED) == SANDBOXED


def test_alertmanager_runs_sandboxed_with_the_checked_configuration(host: Any, am: Any) -> None:
    assert_serving_sandboxed_with_a_checked_configuration(
        host, "prometheus-alertmanager", "amtool check-config /etc/prometheus/alertmanager.yml"
    )


def test_alertmanager_routes_to_the_configured_receivers(host: Any, am: Any) -> None:
    status = am_api(host, am, "/api/v2/status")
    loaded = yaml.safe_load(status["config"]["original"])
    assert loaded["route"]["receiver"] == am["alertmanager_route"]["receiver"]
    assert [r["name"] for r in loaded["receivers"]] == [r["name"] for r in am["alertmanager_receivers"]]


def test_prometheus_sends_alerts_to_every_alertmanager_of_the_inventory(host: Any, prom: Any) -> None:
    groups: dict[str, list[str]] = inventory_variables(host).get("groups", {})
    hostvars = _hostvars(host)
    scheme = prom["prometheus_alertmanager_scheme"]
    expected = {
        f"{scheme}://{target}/api/v2/alerts"
        for group in _filter_module().file_sd(
            groups.get(prom["prometheus_alertmanager_group"], []), hostvars, prom["prometheus_alertmanager_port"]
        )
        for target in group["targets"]
    }
    active = {entry["url"] for entry in api(host, prom, "/api/v1/alertmanagers")["activeAlertmanagers"]}
    assert active == expected


# --- basic auth on the web endpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("service", ["prometheus", "alertmanager"])
def test_basic_auth_refuses_anonymous_requests_and_admits_every_user(
    host: Any, prom: Any, am: Any, service: str
) -> None:
    """With basic auth on, a request without credentials gets 401 and each configured user gets 200."""
    variables, path = (prom, "/api/v1/status/buildinfo") if service == "prometheus" else (am, "/api/v2/status")
    users = variables[f"{service}_web_basic_auth_users"]
    endpoint = web_endpoint(variables, service)
    if not users:
        status, _ = http_get(host, endpoint, path, anonymous=True)
        assert status == 200, "no basic auth configured, yet the endpoint refuses an anonymous request"
        return
    assert http_get(host, endpoint, path, anonymous=True)[0] == 401
    assert http_get(host, {**endpoint, "password": "wrong"}, path)[0] == 401
    for user, password in users.items():
        assert http_get(host, {**endpoint, "user": user, "password": str(password)}, path)[0] == 200, user


def test_web_config_files_are_private_to_the_service(host: Any, prom: Any, am: Any) -> None:
    for path, on in (
        ("/etc/prometheus/web.yml", prom["prometheus_web_basic_auth_users"] or prom["prometheus_web_tls_cert_file"]),
        (
            "/etc/prometheus/alertmanager-web.yml",
            am["alertmanager_web_basic_auth_users"] or am["alertmanager_web_tls_cert_file"],
        ),
    ):
        web = host.file(path)
        assert web.exists == bool(on), path
        if on:
            assert (web.user, web.group, web.mode) == ("root", "prometheus", 0o640), path


# --- firewall --------------------------------------------------------------------------------------------


def test_the_web_port_is_open_to_the_listed_networks_only(host: Any, prom: Any) -> None:
    rules = host.file("/etc/nftables.d/prometheus.nft")
    assert rules.exists, "the role writes its rules file even where the firewall is off"
    port = int(str(prom["prometheus_web_listen_address"]).rsplit(":", 1)[1])
    expected = sorted({ipaddress.ip_network(s, strict=False) for s in prom["prometheus_firewall_sources"]}, key=str)
    assert sorted(nft_sources(rules.content_string, port, "prometheus: web UI and API"), key=str) == expected


# --- blackbox_exporter: the probes the SLIs count -------------------------------------------------------


@pytest.fixture(scope="module")
def bbx(host: Any) -> Any:
    return expected_vars(host, "blackbox_exporter")


def probe_series(host: Any, bbx: Any, module: str, target: str) -> dict[str, float]:
    """blackbox_exporter's answer to one probe, asked on the host: its unlabelled series by name."""
    address, port = str(bbx["blackbox_exporter_listen_address"]).rsplit(":", 1)
    base = f"http://{address if address not in ('', '0.0.0.0') else '127.0.0.1'}:{port}"
    status, body = http_get(
        host, {"base": base, "user": "", "password": "", "ca": ""}, f"/probe?module={module}&target={target}"
    )
    assert status == 200, f"probe {module} {target}: HTTP {status}: {body[:300]}"
    return {
        name: float(value)
        for name, value in (line.split() for line in body.splitlines() if line and not line.startswith("#"))
        if "{" not in name
    }


def test_blackbox_runs_sandboxed_with_the_checked_modules_on_loopback_only(host: Any, bbx: Any) -> None:
    assert_serving_sandboxed_with_a_checked_configuration(
        host,
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter --config.check --config.file=/etc/prometheus/blackbox.yml",
    )
    loaded = yaml.safe_load(host.file("/etc/prometheus/blackbox.yml").content_string)
    assert loaded["modules"] == bbx["blackbox_exporter_modules"]
    port = str(bbx["blackbox_exporter_listen_address"]).rsplit(":", 1)[1]
    listening = host.check_output(f"ss -Htln 'sport = :{port}'")
    assert [line.split()[3] for line in listening.splitlines()] == [bbx["blackbox_exporter_listen_address"]]


def test_a_probe_succeeds_on_a_listening_port_and_fails_on_a_closed_one(host: Any, bbx: Any, prom: Any) -> None:
    prometheus_port = str(prom["prometheus_web_listen_address"]).rsplit(":", 1)[1]
    assert probe_series(host, bbx, "tcp_connect", f"127.0.0.1:{prometheus_port}")["probe_success"] == 1
    assert probe_series(host, bbx, "tcp_connect", "127.0.0.1:1")["probe_success"] == 0


def test_every_probe_target_of_the_inventory_answers(
    host: Any, prom: Any, expected_targets: dict[tuple[str, str], dict[str, str]]
) -> None:
    """probe_success == 1 for every (probe job, host) the inventory gives: the services' ports answer."""
    probes = {job["name"] for job in prom["prometheus_scrape_jobs"] if job.get("probe_module")}
    wanted = {key for key in expected_targets if key[0] in probes}
    deadline = time.monotonic() + UP_DEADLINE_SECONDS
    while True:
        result = api(host, prom, "/api/v1/query?query=probe_success")["result"]
        answers = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in result}
        if all(answers.get(key) == "1" for key in wanted) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert {key: answers.get(key) for key in wanted} == dict.fromkeys(wanted, "1")
