"""End to end on the lab: `toolkit bootstrap` turns a bare container (sshd and one password login with sudo, no
Python, in no inventory) into a PostgreSQL replica that passes `toolkit verify postgresql` and that Prometheus
scrapes, without the password ever being written down and with password logins off afterwards; a second
bootstrap changes nothing; a host whose key changed is refused before any login. (The key login is
tests/lab/test_bootstrap_aws.py's.)

Runs after every other lab module (tests/lab/conftest.py orders it last): it joins a host to the fleet they
converged, and takes it out again at the end.
"""

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.helpers import (
    PROJECT,
    assert_a_streaming_replica_that_prometheus_scrapes,
    ensure_converged,
    forget_bootstrapped_replica,
    on_host,
    parse_json,
    podman,
    toolkit,
)

pytestmark = pytest.mark.lab
NAME = "postgresql-3"
ADDRESS = "10.242.10.41"
LOGIN = "admin"
PRIMARY = "postgresql-1"
BOOTSTRAP_FILE = PROJECT / "inventories" / "lab" / "bootstrap.yml"


def bootstrap(password: str, *args: str) -> subprocess.CompletedProcess[str]:
    return toolkit(
        "bootstrap", ADDRESS, "--service", "postgresql", "--user", LOGIN, "--password-prompt", "--name", NAME, *args,
        timeout=1800, stdin=password + "\n",
    )  # fmt: skip


@pytest.fixture(scope="module")
def bare(lab: Any) -> Iterator[str]:
    """A bare host whose login has a password (for SSH and sudo), and the fleet it joins: the primary and
    Prometheus converged (by the other modules, or here when this module runs alone). Yields the password."""
    if not {PRIMARY, "prometheus-1"} <= set(lab.hosts):
        pytest.fail(f"the {lab.profile} profile has no PostgreSQL primary and Prometheus server")
    ensure_converged("base", "postgresql", "prometheus")
    password = "bootstrap-" + secrets.token_hex(12)
    made = toolkit(
        "lab", "bare", NAME, "--address", ADDRESS, "--login", LOGIN, "--password-stdin", stdin=password + "\n"
    )
    assert made.returncode == 0, made.stderr
    yield password
    podman("rm", "--force", "--time", "2", f"toolkit-lab-{NAME}", check=False)
    BOOTSTRAP_FILE.unlink(missing_ok=True)
    forget_bootstrapped_replica(NAME, ADDRESS, PRIMARY)


def files_written_since(start: float) -> Iterator[Path]:
    """Every file toolkit wrote under .toolkit/ (run history, artifacts, logs, facts) since `start`."""
    skip = PROJECT / ".toolkit" / "lab" / "apt-cache"
    for folder, _, names in os.walk(PROJECT / ".toolkit"):
        if Path(folder).is_relative_to(skip):
            continue
        for name in names:
            path = Path(folder) / name
            if path.is_file() and path.stat().st_mtime >= start:
                yield path


def log_in_with_password(password: str, known_hosts: Path) -> subprocess.CompletedProcess[str]:
    """One SSH login with the password only (keys off), trusting the host key on first use into `known_hosts`."""
    return subprocess.run(
        [
            "sshpass", "-e", "ssh", "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
            "-o", "ConnectTimeout=10", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=accept-new", f"{LOGIN}@{ADDRESS}", "true",
        ],
        env={**os.environ, "SSHPASS": password}, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_a_bare_host_becomes_a_verified_replica_that_prometheus_scrapes(bare: str, tmp_path: Path) -> None:
    assert on_host(NAME, "command -v python3").returncode != 0, "the bare host must start without Python"
    before = log_in_with_password(bare, tmp_path / "known_hosts")
    assert before.returncode == 0, f"the bare host must take its password: {before.stderr}"
    assert not BOOTSTRAP_FILE.exists() or NAME not in BOOTSTRAP_FILE.read_text()

    started = time.time() - 1
    done = bootstrap(bare, "--json")
    assert done.returncode == 0, done.stderr
    assert bare not in done.stdout + done.stderr
    leaked = [str(path) for path in files_written_since(started) if bare.encode() in path.read_bytes()]
    assert leaked == [], "the login's password was written down"
    document = parse_json(done.stdout)
    assert document["group"] == "postgresql_replica" and document["changed"] > 0
    steps = {step["name"]: step for step in document["steps"]}
    assert list(steps) == [
        "ssh", "host key", "login", "inventory", "access", "base", "hardening", "node_exporter", "service", "verify",
        "prometheus",
    ]  # fmt: skip
    assert steps["access"]["changed"] > 0, "Python and the admin account were installed"
    assert all(step["seconds"] >= 0 for step in document["steps"])
    assert NAME in BOOTSTRAP_FILE.read_text()

    verify = toolkit("verify", "postgresql", "--limit", NAME, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert parse_json(verify.stdout)["hosts"][NAME]["failed"] == 0
    assert_a_streaming_replica_that_prometheus_scrapes(NAME, ADDRESS, PRIMARY)
    # The hardening role owns sshd's configuration: the login's password no longer opens SSH, the keys do.
    after = log_in_with_password(bare, tmp_path / "known_hosts")
    assert after.returncode != 0 and "Permission denied (publickey)" in after.stderr, after.stderr


def test_a_second_bootstrap_changes_nothing_and_says_so(bare: str) -> None:
    again = bootstrap(bare, "--json")
    assert again.returncode == 0, again.stderr
    document = parse_json(again.stdout)
    assert document["changed"] == 0, [s for s in document["steps"] if s["changed"]]
    assert "nothing changed" in again.stderr


def test_a_placement_that_would_break_the_cluster_is_refused_before_any_step(bare: str) -> None:
    refused = bootstrap(bare, "--group", "postgresql_primary")
    assert refused.returncode == 2, refused.stderr
    assert "has a PostgreSQL primary already" in refused.stderr
    assert "→" not in refused.stderr, "no step may start"


def test_a_host_whose_key_changed_is_refused_before_any_login(bare: str) -> None:
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
