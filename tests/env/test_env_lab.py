"""`toolkit env up demo --provider lab`: environments/demo.yml from nothing to a converged, verified fleet.

Six containers on a network of the environment's own (the lab suite's hosts may run beside them: CI runs
this module next to tests/lab), `converge site`, then every service's testinfra suite, and `down` leaves no
container, network or state behind. A second `up` changing nothing is test_env_aws.py's, on two hosts (six
more hosts converging again on two shared cores cost the suite ~6 min). The environment keeps its history
and runs in a state directory of its own (TOOLKIT_HOME), so the lab suite's own counts never see them.
"""

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.helpers import PROJECT, parse_json, podman, toolkit

pytestmark = pytest.mark.env_lab

NAME = "demo"
HOSTS = [
    "demo-cassandra-1", "demo-cassandra-2", "demo-cassandra-3",
    "demo-postgresql-1", "demo-postgresql-2", "demo-prometheus-1",
]  # fmt: skip
SUITES = {"base", "cassandra", "hardening", "node_exporter", "postgresql", "prometheus"}
HOME = PROJECT / ".toolkit" / "env-e2e"


@pytest.fixture(scope="module")
def home() -> Iterator[dict[str, str]]:
    """A state directory of the environment's own, with the machine's podman settings (scripts/setup's)."""
    (HOME / "lab").mkdir(parents=True, exist_ok=True)
    conf = HOME / "lab" / "containers.conf"
    if not conf.exists():
        conf.symlink_to(PROJECT / ".toolkit" / "lab" / "containers.conf")
    env = {"TOOLKIT_HOME": str(HOME)}
    yield env
    if os.environ.get("TOOLKIT_LAB_KEEP") != "1":
        toolkit("env", "down", NAME, "--provider", "lab", "--purge-cache", env=env, timeout=300)
        shutil.rmtree(HOME, ignore_errors=True)


def environment_containers() -> list[dict[str, Any]]:
    listed = podman("ps", "--all", "--filter", f"label=io.toolkit.env={NAME}", "--format", "json").stdout
    return list(json.loads(listed or "[]"))


def verdicts(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["target"]: result for result in document["verify"]}


def test_demo_comes_up_verified_and_goes_without_a_trace(home: dict[str, str]) -> None:
    up = toolkit("env", "up", NAME, "--provider", "lab", "--json", env=home, timeout=3000)
    assert up.returncode == 0, up.stderr[-4000:]
    document = parse_json(up.stdout)
    print(f"\n{NAME}: from nothing to verified in {document['seconds_to_verified']:.0f} s; steps: {document['steps']}")

    hosts = {host["name"]: host for host in document["hosts"]}
    assert sorted(hosts) == HOSTS
    assert all(host["reachable"] for host in hosts.values())
    addresses = [host["address"] for host in hosts.values()]
    assert all(a.startswith("10.242.") and not a.startswith("10.242.10.") for a in addresses)  # not the lab's
    # Every suite ran on its hosts, and every host passed it.
    found = verdicts(document)
    assert set(found) == SUITES
    assert sorted(found["cassandra"]["hosts"]) == HOSTS[:3]
    assert sorted(found["postgresql"]["hosts"]) == HOSTS[3:5]
    for suite, result in found.items():
        assert result["exit_code"] == 0, f"{suite}: {result['failures']}"
        by_host = result["hosts"]
        assert all(v["passed"] > 0 and v["failed"] == 0 for v in by_host.values()), f"{suite}: {by_host}"
    endpoints = {(e["host"], e["service"]): e["address"] for e in document["endpoints"]}
    assert endpoints[("demo-postgresql-1", "postgresql")] == f"{hosts['demo-postgresql-1']['address']}:5432"
    assert endpoints[("demo-prometheus-1", "prometheus")] == f"{hosts['demo-prometheus-1']['address']}:9090"

    # The environment's containers are its own: labelled for it, never as the lab's.
    containers = environment_containers()
    assert sorted(c["Names"][0] for c in containers) == [f"toolkit-env-{host}" for host in HOSTS]
    assert not [c for c in containers if (c.get("Labels") or {}).get("io.toolkit.lab") == "1"]

    down = toolkit("env", "down", NAME, "--provider", "lab", "--json", env=home, timeout=300)
    assert down.returncode == 0, down.stderr
    removed = parse_json(down.stdout)["removed"]
    assert len([item for item in removed if item.startswith("container ")]) == len(HOSTS)
    assert environment_containers() == []
    assert podman("network", "exists", f"toolkit-env-{NAME}", check=False).returncode != 0
    assert not (HOME / "environments" / NAME / "lab" / "state.json").exists()
    again_down = toolkit("env", "down", NAME, "--provider", "lab", env=home)
    assert again_down.returncode == 0 and "nothing to remove" in again_down.stderr
