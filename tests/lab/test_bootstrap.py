"""End to end on the lab: `toolkit bootstrap` turns a bare container (sshd and one password login with sudo, no
Python, in no inventory) into a PostgreSQL replica that passes `toolkit verify postgresql` and that Prometheus
scrapes, without the password ever being written down and with password logins off afterwards.

One host carries every claim, so the suite pays for one full bootstrap (two of the most expensive runs in the
lab otherwise):
- by address, with the route to the primary cut while the replica clones it: the run fails at the service
  step, and a re-run completes it;
- by EC2 instance id, with moto standing in for EC2 (the lab's hosts get twins at their addresses,
  tests/lab/aws_twins.py, and the bare host an instance with only a fresh instance's tags): an unknown id and a
  refused password stop before anything changes; on the bootstrapped host, the id tags the instance so the
  aws_fleet inventory groups it as a replica, and every other step of that third run changes nothing (the
  bootstrap's idempotence; a run with nothing at all to change is told apart in its summary, which
  tests/unit/test_bootstrap_flow.py checks without a host);
- a placement that would break the cluster, and a host whose key changed, are refused before any step.

Runs after every other lab module (tests/lab/conftest.py orders it last): it joins a host to the fleet they
converged, and takes it out again at the end.
"""

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.aws_twins import REGION, inventory_folder, launch_twins
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
from tests.unit.plugins.moto_fleet import AMI, ec2, env_for, moto_server

pytestmark = pytest.mark.lab
NAME = "postgresql-3"
ADDRESS = "10.242.10.41"
LOGIN = "admin"
PRIMARY = "postgresql-1"
PRIMARY_ADDRESS = "10.242.10.21"
BOOTSTRAP_FILE = PROJECT / "inventories" / "lab" / "bootstrap.yml"
FRESH_TAGS = [{"Key": "Name", "Value": NAME}, {"Key": "env", "Value": "lab"}]  # a new instance's, no service
STEPS = ["ssh", "host key", "login", "inventory", "access", "base", "hardening", "node_exporter", "service"]


@dataclass(frozen=True)
class Bare:
    password: str
    instance_id: str  # the host's EC2 twin in moto
    config: Path  # the *.aws.yml inventory that lists the twins
    env: dict[str, str]  # what reaches moto instead of AWS
    moto: str

    def tags(self) -> dict[str, str]:
        described = ec2(self.moto, REGION).describe_instances(InstanceIds=[self.instance_id])
        tags = described["Reservations"][0]["Instances"][0].get("Tags", [])
        return {tag["Key"]: tag["Value"] for tag in tags}


def bootstrap(password: str, *args: str) -> subprocess.CompletedProcess[str]:
    """By address, through the lab inventory, the password typed at the prompt."""
    return toolkit(
        "bootstrap", ADDRESS, "--service", "postgresql", "--user", LOGIN, "--password-prompt", "--name", NAME, *args,
        timeout=1800, stdin=password + "\n",
    )  # fmt: skip


def bootstrap_instance(bare: Bare, password: str, *args: str, target: str = "") -> subprocess.CompletedProcess[str]:
    """By instance id, through the aws_fleet inventory on moto."""
    return toolkit(
        "bootstrap", target or bare.instance_id, "--service", "postgresql", "--region", REGION, "-i", str(bare.config),
        "--user", LOGIN, "--password-prompt", *args,
        env=bare.env, timeout=1800, stdin=password + "\n",
    )  # fmt: skip


@pytest.fixture(scope="module")
def bare(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bare]:
    """The bare host, its twin in moto, and the fleet it joins: the primary and Prometheus converged (by the
    other modules, or here when this module runs alone)."""
    if not {PRIMARY, "prometheus-1"} <= set(lab.hosts):
        pytest.fail(f"the {lab.profile} profile has no PostgreSQL primary and Prometheus server")
    ensure_converged("base", "postgresql", "prometheus")
    password = "bootstrap-" + secrets.token_hex(12)
    made = toolkit(
        "lab", "bare", NAME, "--address", ADDRESS, "--login", LOGIN, "--password-stdin", stdin=password + "\n"
    )
    assert made.returncode == 0, made.stderr
    try:
        with moto_server() as url:
            subnet = launch_twins(url, lab.hosts)
            launched = ec2(url, REGION).run_instances(
                ImageId=AMI,
                MinCount=1,
                MaxCount=1,
                SubnetId=subnet,
                PrivateIpAddress=ADDRESS,
                TagSpecifications=[{"ResourceType": "instance", "Tags": FRESH_TAGS}],
            )
            env = {**env_for(url), "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
            config = inventory_folder(tmp_path_factory.mktemp("aws") / "inventory")
            yield Bare(password, launched["Instances"][0]["InstanceId"], config, env, url)
    finally:
        podman("rm", "--force", "--time", "2", f"toolkit-lab-{NAME}", check=False)
        BOOTSTRAP_FILE.unlink(missing_ok=True)
        forget_bootstrapped_replica(NAME, ADDRESS, PRIMARY)


def untouched() -> None:
    """What a bootstrap that stopped before its first playbook must have left: a bare host."""
    assert on_host(NAME, "command -v python3").returncode != 0, "Python was installed"
    assert on_host(NAME, "id toolkit").returncode != 0, "the admin account was created"


def host_namespace(command: str) -> subprocess.CompletedProcess[str]:
    """Run an `ip` command in the bare host's network namespace, from outside (the host has no say in it)."""
    pid = podman("inspect", "--format", "{{.State.Pid}}", f"toolkit-lab-{NAME}").stdout.strip()
    return subprocess.run(
        ["nsenter", "--target", pid, "--net", "ip", *command.split()], capture_output=True, text=True, check=False
    )


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


def test_an_unknown_instance_id_is_one_line_and_exit_2(bare: Bare) -> None:
    refused = bootstrap_instance(bare, bare.password, target="i-0123456789abcdef0")
    assert refused.returncode == 2, refused.stderr
    assert "i-0123456789abcdef0" in refused.stderr and "Traceback" not in refused.stderr
    assert "→" not in refused.stderr, "no step may start"
    untouched()


def test_a_refused_password_stops_before_the_inventory_or_the_host_changes(bare: Bare) -> None:
    refused = bootstrap_instance(bare, "not-" + bare.password, "--json")
    assert refused.returncode == 4, refused.stderr
    document = parse_json(refused.stdout)
    assert [step["name"] for step in document["steps"]] == ["ssh", "host key", "login"]
    assert document["error"].startswith(f"login: cannot log in to {ADDRESS} as {LOGIN} with password: ")
    assert "service" not in bare.tags(), "the instance was tagged"
    untouched()


def test_a_bootstrap_cut_off_half_way_is_completed_by_a_re_run(bare: Bare, tmp_path: Path) -> None:
    assert on_host(NAME, "command -v python3").returncode != 0, "the bare host must start without Python"
    before = log_in_with_password(bare.password, tmp_path / "known_hosts")
    assert before.returncode == 0, f"the bare host must take its password: {before.stderr}"
    assert not BOOTSTRAP_FILE.exists() or NAME not in BOOTSTRAP_FILE.read_text()

    started = time.time() - 1
    assert host_namespace(f"route add unreachable {PRIMARY_ADDRESS}/32").returncode == 0
    try:
        failed = bootstrap(bare.password, "--json")
    finally:
        assert host_namespace(f"route del unreachable {PRIMARY_ADDRESS}/32").returncode == 0
    assert failed.returncode == 1, failed.stderr
    document = parse_json(failed.stdout)
    assert document["host"] == NAME and document["group"] == "postgresql_replica"
    steps = {step["name"]: step["status"] for step in document["steps"]}
    assert list(steps) == STEPS
    assert steps["inventory"] == "changed" and steps["access"] == "changed" and steps["service"] == "failed"
    assert document["error"].startswith(f"service: {NAME}: ") and "\n" not in document["error"]
    assert NAME in BOOTSTRAP_FILE.read_text()

    done = bootstrap(bare.password, "--json")
    assert done.returncode == 0, done.stderr
    document = parse_json(done.stdout)
    steps = {step["name"]: step for step in document["steps"]}
    assert list(steps) == [*STEPS, "verify", "prometheus"]
    assert steps["login"]["detail"].startswith("as toolkit"), "the re-run logs in as the admin account"
    assert steps["inventory"]["changed"] == 0, "the host was placed already"
    assert steps["service"]["changed"] > 0, "the clone that failed is done now"
    assert all(step["seconds"] >= 0 for step in document["steps"])
    for run in (failed, done):
        assert bare.password not in run.stdout + run.stderr
    leaked = [str(path) for path in files_written_since(started) if bare.password.encode() in path.read_bytes()]
    assert leaked == [], "the login's password was written down"

    verify = toolkit("verify", "postgresql", "--limit", NAME, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert parse_json(verify.stdout)["hosts"][NAME]["failed"] == 0
    assert_a_streaming_replica_that_prometheus_scrapes(NAME, ADDRESS, PRIMARY)
    # The hardening role owns sshd's configuration: the login's password no longer opens SSH, the keys do.
    after = log_in_with_password(bare.password, tmp_path / "known_hosts")
    assert after.returncode != 0 and "Permission denied (publickey)" in after.stderr, after.stderr


def test_the_instance_id_tags_the_host_and_runs_every_step_through_the_aws_inventory(bare: Bare) -> None:
    again = bootstrap_instance(bare, bare.password, "--json")
    assert again.returncode == 0, again.stderr
    document = parse_json(again.stdout)
    assert document["host"] == NAME and document["group"] == "postgresql_replica"
    assert bare.tags() == {"Name": NAME, "env": "lab", "service": "postgresql", "role": "replica"}
    changed = {step["name"]: step["changed"] for step in document["steps"]}
    assert list(changed) == [*STEPS, "verify", "prometheus"]
    assert changed.pop("inventory") > 0, "the instance was tagged"
    # Nothing else changes, on the host or fleet-wide: the files rendered from the whole inventory (the
    # primary's pg_hba.conf and firewall rules, Prometheus's targets) do not depend on the order an inventory
    # lists its hosts in, so the aws_fleet view of the fleet writes what the lab inventory wrote.
    assert set(changed.values()) == {0}, changed

    verify = toolkit("verify", "postgresql", "-i", str(bare.config), "--limit", NAME, "--json", env=bare.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert parse_json(verify.stdout)["hosts"][NAME]["failed"] == 0


def test_a_placement_that_would_break_the_cluster_is_refused_before_any_step(bare: Bare) -> None:
    refused = bootstrap(bare.password, "--group", "postgresql_primary")
    assert refused.returncode == 2, refused.stderr
    assert "has a PostgreSQL primary already" in refused.stderr
    assert "→" not in refused.stderr, "no step may start"


def test_a_host_whose_key_changed_is_refused_before_any_login(bare: Bare) -> None:
    keep = "mkdir -p /root/keys && cp -a /etc/ssh/ssh_host_* /root/keys/"
    assert on_host(NAME, keep).returncode == 0
    try:
        rekey = on_host(NAME, "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q && systemctl restart ssh")
        assert rekey.returncode == 0, rekey.stderr
        refused = bootstrap(bare.password, "--json")
        assert refused.returncode == 1, refused.stderr
        document = parse_json(refused.stdout)
        assert [step["name"] for step in document["steps"]] == ["ssh", "host key"]
        assert "host key of " + ADDRESS + " changed" in document["error"]
    finally:
        restored = on_host(NAME, "cp -a /root/keys/ssh_host_* /etc/ssh/ && systemctl restart ssh")
        assert restored.returncode == 0, restored.stderr
