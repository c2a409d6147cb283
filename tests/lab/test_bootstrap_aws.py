"""End to end by EC2 instance id: `toolkit bootstrap i-...` with moto standing in for EC2, a lab container as the host.

The lab's hosts get EC2 twins in moto at their addresses, tagged as the fleet's (tests/lab/aws_twins.py), and a
bare container (postgresql-4: sshd and one key login, no Python) gets an instance at its address with only the
tags a fresh instance has (Name, env). The bootstrap resolves the id to that private address, tags the instance
so the aws_fleet inventory groups it as a replica, and runs every later step through that inventory.

Also proven here, on the same host: wrong credentials and an unknown instance id stop before anything changes;
a bootstrap that fails half-way (the route to the primary gone while the replica clones it) is completed by a
re-run. Runs after the other lab modules (tests/lab/conftest.py), and puts the fleet back as it found it.
"""

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.aws_twins import REGION, inventory_folder, launch_twins
from tests.lab.helpers import (
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
NAME = "postgresql-4"
ADDRESS = "10.242.10.42"
LOGIN = "admin"
PRIMARY = "postgresql-1"
PRIMARY_ADDRESS = "10.242.10.21"
FRESH_TAGS = [{"Key": "Name", "Value": NAME}, {"Key": "env", "Value": "lab"}]  # a new instance's, no service


@dataclass(frozen=True)
class Instance:
    instance_id: str
    config: Path  # the *.aws.yml inventory
    env: dict[str, str]  # what reaches moto instead of AWS
    key: Path  # the bare host's login key
    moto: str

    def tags(self) -> dict[str, str]:
        described = ec2(self.moto, REGION).describe_instances(InstanceIds=[self.instance_id])
        tags = described["Reservations"][0]["Instances"][0].get("Tags", [])
        return {tag["Key"]: tag["Value"] for tag in tags}


def bootstrap(instance: Instance, *args: str, target: str | None = None) -> subprocess.CompletedProcess[str]:
    return toolkit(
        "bootstrap", target or instance.instance_id, "--service", "postgresql", "--region", REGION,
        "-i", str(instance.config), "--user", LOGIN, *args,
        env=instance.env, timeout=1800,
    )  # fmt: skip


def host_namespace(command: str) -> subprocess.CompletedProcess[str]:
    """Run an `ip` command in the bare host's network namespace, from outside (the host has no say in it)."""
    pid = podman("inspect", "--format", "{{.State.Pid}}", f"toolkit-lab-{NAME}").stdout.strip()
    return subprocess.run(
        ["nsenter", "--target", pid, "--net", "ip", *command.split()], capture_output=True, text=True, check=False
    )


def untouched() -> None:
    """What a bootstrap that stopped before its first playbook must have left: a bare host."""
    assert on_host(NAME, "command -v python3").returncode != 0, "Python was installed"
    assert on_host(NAME, "id toolkit").returncode != 0, "the admin account was created"


@pytest.fixture(scope="module")
def instance(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    if not {PRIMARY, "prometheus-1"} <= set(lab.hosts):
        pytest.fail(f"the {lab.profile} profile has no PostgreSQL primary and Prometheus server")
    ensure_converged("base", "postgresql", "prometheus")
    directory = tmp_path_factory.mktemp("aws")
    key = directory / "login_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    made = toolkit("lab", "bare", NAME, "--address", ADDRESS, "--login", LOGIN, "--authorized-key", f"{key}.pub")
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
            instance_id = launched["Instances"][0]["InstanceId"]
            yield Instance(instance_id, inventory_folder(directory / "inventory"), env, key, url)
    finally:
        podman("rm", "--force", "--time", "2", f"toolkit-lab-{NAME}", check=False)
        forget_bootstrapped_replica(NAME, ADDRESS, PRIMARY)


def test_an_unknown_instance_id_is_one_line_and_exit_2(instance: Instance) -> None:
    refused = bootstrap(instance, "--key", str(instance.key), target="i-0123456789abcdef0")
    assert refused.returncode == 2, refused.stderr
    assert "i-0123456789abcdef0" in refused.stderr and "Traceback" not in refused.stderr
    assert "→" not in refused.stderr, "no step may start"
    untouched()


def test_wrong_credentials_stop_before_the_inventory_or_the_host_changes(instance: Instance, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    refused = bootstrap(instance, "--key", str(stranger), "--json")
    assert refused.returncode == 4, refused.stderr
    document = parse_json(refused.stdout)
    assert [step["name"] for step in document["steps"]] == ["ssh", "host key", "login"]
    assert document["error"].startswith(f"login: cannot log in to {ADDRESS} as {LOGIN} with key {stranger}")
    assert "Permission denied" in document["error"]
    assert "service" not in instance.tags(), "the instance was tagged"
    untouched()


def test_a_bootstrap_cut_off_half_way_is_completed_by_a_re_run(instance: Instance) -> None:
    cut = host_namespace(f"route add unreachable {PRIMARY_ADDRESS}/32")
    assert cut.returncode == 0, cut.stderr
    try:
        failed = bootstrap(instance, "--key", str(instance.key), "--json")
    finally:
        assert host_namespace(f"route del unreachable {PRIMARY_ADDRESS}/32").returncode == 0
    assert failed.returncode == 1, failed.stderr
    document = parse_json(failed.stdout)
    assert document["host"] == NAME and document["group"] == "postgresql_replica"
    steps = {step["name"]: step["status"] for step in document["steps"]}
    assert list(steps) == [
        "ssh", "host key", "login", "inventory", "access", "base", "hardening", "node_exporter", "service",
    ]  # fmt: skip
    assert steps["inventory"] == "changed" and steps["access"] == "changed" and steps["service"] == "failed"
    assert document["error"].startswith(f"service: {NAME}: ") and "\n" not in document["error"]
    assert instance.tags() == {"Name": NAME, "env": "lab", "service": "postgresql", "role": "replica"}

    done = bootstrap(instance, "--key", str(instance.key), "--json")
    assert done.returncode == 0, done.stderr
    document = parse_json(done.stdout)
    steps = {step["name"]: step for step in document["steps"]}
    assert steps["login"]["detail"].startswith("as toolkit"), "the re-run logs in as the admin account"
    assert steps["inventory"]["changed"] == 0, "the tags were already there"
    assert steps["service"]["changed"] > 0, "the clone that failed is done now"
    assert list(steps)[-2:] == ["verify", "prometheus"]

    verify = toolkit("verify", "postgresql", "-i", str(instance.config), "--limit", NAME, "--json", env=instance.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert parse_json(verify.stdout)["hosts"][NAME]["failed"] == 0
    assert_a_streaming_replica_that_prometheus_scrapes(NAME, ADDRESS, PRIMARY)
