"""End to end on the lab: `toolkit bootstrap` turns a bare container (sshd and one key login with sudo, no Python,
in no inventory) into a PostgreSQL replica that passes `toolkit verify postgresql` and that Prometheus scrapes; a
second bootstrap changes nothing; a host whose key changed is refused before any login.

Runs after every other lab module (tests/lab/conftest.py orders it last): it joins a host to the fleet they
converged, and takes it out again at the end.
"""

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.helpers import PROJECT, on_host, parse_json, podman, toolkit

pytestmark = pytest.mark.lab
NAME = "postgresql-3"
ADDRESS = "10.242.10.41"
LOGIN = "admin"
PRIMARY = "postgresql-1"
PROMETHEUS = "http://10.242.10.31:9090"
BOOTSTRAP_FILE = PROJECT / "inventories" / "lab" / "bootstrap.yml"


def bootstrap(key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return toolkit(
        "bootstrap", ADDRESS, "--service", "postgresql", "--user", LOGIN, "--key", str(key), "--name", NAME, *args,
        timeout=1800,
    )  # fmt: skip


def node_target_health() -> str:
    with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/targets?state=active", timeout=10) as response:
        targets = json.loads(response.read())["data"]["activeTargets"]
    found = [t["health"] for t in targets if t["labels"]["job"] == "node" and t["labels"]["instance"] == NAME]
    return found[0] if found else "absent"


@pytest.fixture(scope="module")
def bare(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A bare host, and the fleet it joins: the primary and Prometheus converged (no-change runs after the other
    modules; the whole work when this module runs alone)."""
    if not {PRIMARY, "prometheus-1"} <= set(lab.hosts):
        pytest.fail(f"the {lab.profile} profile has no PostgreSQL primary and Prometheus server")
    for service, limit in (("base", "postgresql:prometheus"), ("postgresql", "all"), ("prometheus", "all")):
        converged = toolkit("converge", service, "--limit", limit)
        assert converged.returncode == 0, f"converge {service}: {converged.stderr}"
    key = tmp_path_factory.mktemp("bootstrap") / "login_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    made = toolkit("lab", "bare", NAME, "--address", ADDRESS, "--login", LOGIN, "--authorized-key", f"{key}.pub")
    assert made.returncode == 0, made.stderr
    yield key
    podman("rm", "--force", "--time", "2", f"toolkit-lab-{NAME}", check=False)
    BOOTSTRAP_FILE.unlink(missing_ok=True)
    known_hosts = PROJECT / ".toolkit" / "lab" / "known_hosts"
    subprocess.run(["ssh-keygen", "-R", ADDRESS, "-f", str(known_hosts)], capture_output=True, check=False)
    toolkit("converge", "prometheus")  # drop its scrape targets


def test_a_bare_host_becomes_a_verified_replica_that_prometheus_scrapes(bare: Path) -> None:
    assert on_host(NAME, "command -v python3").returncode != 0, "the bare host must start without Python"
    assert not BOOTSTRAP_FILE.exists() or NAME not in BOOTSTRAP_FILE.read_text()

    done = bootstrap(bare, "--json")
    assert done.returncode == 0, done.stderr
    document = parse_json(done.stdout)
    assert document["group"] == "postgresql_replica" and document["changed"] > 0
    steps = {step["name"]: step for step in document["steps"]}
    assert list(steps) == [
        "ssh", "host key", "inventory", "access", "base", "hardening", "node_exporter", "service", "verify",
        "prometheus",
    ]  # fmt: skip
    assert steps["access"]["changed"] > 0, "Python and the admin account were installed"
    assert all(step["seconds"] >= 0 for step in document["steps"])
    assert NAME in BOOTSTRAP_FILE.read_text()

    verify = toolkit("verify", "postgresql", "--limit", NAME, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert parse_json(verify.stdout)["hosts"][NAME]["failed"] == 0
    streaming = on_host(
        PRIMARY,
        f'su postgres -c "psql -tAc \\"SELECT state FROM pg_stat_replication WHERE client_addr = \'{ADDRESS}\'\\""',
    )
    assert streaming.stdout.strip() == "streaming", streaming.stdout + streaming.stderr
    deadline = time.monotonic() + 90
    while node_target_health() != "up":
        assert time.monotonic() < deadline, f"Prometheus reports {NAME}'s node exporter {node_target_health()}"
        time.sleep(3)


def test_a_second_bootstrap_changes_nothing_and_says_so(bare: Path) -> None:
    again = bootstrap(bare, "--json")
    assert again.returncode == 0, again.stderr
    document = parse_json(again.stdout)
    assert document["changed"] == 0, [s for s in document["steps"] if s["changed"]]
    assert "nothing changed" in again.stderr


def test_a_placement_that_would_break_the_cluster_is_refused_before_any_step(bare: Path) -> None:
    refused = bootstrap(bare, "--group", "postgresql_primary")
    assert refused.returncode == 2, refused.stderr
    assert "has a PostgreSQL primary already" in refused.stderr
    assert "→" not in refused.stderr, "no step may start"


def test_a_host_whose_key_changed_is_refused_before_any_login(bare: Path) -> None:
    keep = "mkdir -p /root/keys && cp -a /etc/ssh/ssh_host_* /root/keys/"
    assert on_host(NAME, keep).returncode == 0
    try:
        rekey = on_host(NAME, "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q && systemctl restart ssh")
        assert rekey.returncode == 0, rekey.stderr
        refused = bootstrap(bare, "--json")
        assert refused.returncode == 1, refused.stderr
        document = parse_json(refused.stdout)
        assert [step["name"] for step in document["steps"]] == ["ssh", "host key"]
        assert "host key of " + ADDRESS + " changed" in document["error"]
    finally:
        restored = on_host(NAME, "cp -a /root/keys/ssh_host_* /etc/ssh/ && systemctl restart ssh")
        assert restored.returncode == 0, restored.stderr
