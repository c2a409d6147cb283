"""The bootstrap command's logic without hosts: placement, inventory registration, EC2 tags, the step sequence.

The steps that touch a host (SSH, playbooks, verify) are replaced by recorders here; the lab test
(tests/lab/test_bootstrap.py) runs them for real on a bare container.
"""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.unit.conftest import Project
from tests.unit.test_cli_app import assert_usage_error, toolkit
from toolkit import console
from toolkit.bootstrap import flow, register
from toolkit.bootstrap.hostkeys import HostKey
from toolkit.bootstrap.placement import parse_host_vars, place
from toolkit.bootstrap.reachability import SshReady
from toolkit.bootstrap.target import Target
from toolkit.errors import UsageError
from toolkit.exit_codes import ExitCode
from toolkit.paths import state_paths
from toolkit.runner import inventory as inventory_layer
from toolkit.runner.execute import RunSettings
from toolkit.runner.testinfra import HostVerdict, VerifyResult

LAB_GROUPS = {"postgresql_primary": ["pg-1"], "postgresql_replica": ["pg-2"], "prometheus": ["prom-1"]}

# --- placement ----------------------------------------------------------------------------------------


def test_a_postgresql_host_joins_as_a_replica_and_its_service_step_includes_the_primary() -> None:
    placed = place(name="pg-3", address="10.0.0.3", service="postgresql", existing_groups=LAB_GROUPS)
    assert placed.group == "postgresql_replica"
    assert placed.service_limit == "pg-3:postgresql_primary"


def test_the_first_postgresql_host_is_the_primary() -> None:
    placed = place(name="pg-1", address="10.0.0.1", service="postgresql", existing_groups={})
    assert placed.group == "postgresql_primary" and placed.service_limit == "pg-1"


@pytest.mark.parametrize(
    ("service", "group", "error"),
    [
        ("postgresql", "postgresql_primary", "has a PostgreSQL primary already"),
        ("postgresql", "cassandra", "not a group of postgresql"),
        ("base", "prometheus", "not a group of base"),
        ("mysql", None, "cannot bootstrap into 'mysql'"),
    ],
)
def test_placements_that_would_break_the_fleet_are_refused(service: str, group: str | None, error: str) -> None:
    with pytest.raises(UsageError, match=error):
        place(name="new-1", address="10.0.0.9", service=service, existing_groups=LAB_GROUPS, group=group)


def test_a_replica_needs_a_primary() -> None:
    with pytest.raises(UsageError, match="needs a primary"):
        place(name="pg-9", address="10.0.0.9", service="postgresql", existing_groups={}, group="postgresql_replica")


def test_host_vars_are_yaml_scalars_and_connection_settings_are_refused() -> None:
    assert parse_host_vars(["cassandra_dc=dc2", "weight=3", "seed=true"]) == {
        "cassandra_dc": "dc2",
        "weight": 3,
        "seed": True,
    }
    for bad in ("nokey", "1x=2", "ansible_user=root"):
        with pytest.raises(UsageError):
            parse_host_vars([bad])


# --- registration in a file inventory -----------------------------------------------------------------


def fleet_inventory(project: Project, key: Path) -> Path:
    """An inventory directory like the lab's: connection settings in all.vars, a primary and Prometheus."""
    directory = project.root / "inventories" / "fleet"
    directory.mkdir(parents=True)
    hosts = {
        "all": {
            "vars": {
                "ansible_user": "toolkit",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={project.home / 'known_hosts'}",
            },
            "children": {
                "postgresql": {
                    "children": {
                        "postgresql_primary": {"hosts": {"pg-1": {"ansible_host": "10.0.0.1"}}},
                        "postgresql_replica": {"hosts": {}},
                    }
                },
                "prometheus": {"hosts": {"prom-1": {"ansible_host": "10.0.0.5"}}},
            },
        }
    }
    (directory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return directory


@pytest.fixture
def admin_key(tmp_path: Path) -> Path:
    key = tmp_path / "admin_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_a_registered_host_is_in_its_group_and_the_parent_group_for_ansible(project: Project, admin_key: Path) -> None:
    inventory = fleet_inventory(project, admin_key)
    placed = place(
        name="pg-3", address="10.0.0.3", service="postgresql", existing_groups={"postgresql_primary": ["pg-1"]}
    )
    assert register.register_in_file(inventory, placed)
    assert not register.register_in_file(inventory, placed), "the same entry again changes nothing"
    loaded = inventory_layer.load(inventory, "postgresql")
    assert sorted(h.name for h in loaded.selected) == ["pg-1", "pg-3"]
    host = loaded.manager.get_host("pg-3")
    assert loaded.host_vars(host)["ansible_host"] == "10.0.0.3"
    assert loaded.host_vars(host)["ansible_user"] == "toolkit", "the inventory's connection settings apply"


def test_re_registering_moves_the_host_and_keeps_the_others(project: Project, admin_key: Path) -> None:
    inventory = fleet_inventory(project, admin_key)
    groups = {"postgresql_primary": ["pg-1"]}
    register.register_in_file(inventory, place(name="a", address="10.0.0.7", service="base", existing_groups={}))
    register.register_in_file(
        inventory, place(name="b", address="10.0.0.8", service="postgresql", existing_groups=groups)
    )
    register.register_in_file(
        inventory, place(name="a", address="10.0.0.7", service="prometheus", existing_groups=groups)
    )
    children = yaml.safe_load((inventory / "bootstrap.yml").read_text())["all"]["children"]
    assert children == {
        "postgresql_replica": {"hosts": {"b": {"ansible_host": "10.0.0.8"}}},
        "prometheus": {"hosts": {"a": {"ansible_host": "10.0.0.7"}}},
    }


def test_a_single_file_inventory_cannot_take_a_host(project: Project) -> None:
    inventory = project.inventory({"all": ["x"]})
    with pytest.raises(UsageError, match="adds hosts to an inventory directory"):
        register.bootstrap_file(inventory)


# --- registration on EC2 --------------------------------------------------------------------------------


def test_an_instance_is_tagged_so_the_fleet_inventory_groups_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        image = ec2.describe_images()["Images"][0]["ImageId"]
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        placed = place(name="db", address="10.0.0.3", service="postgresql", existing_groups=LAB_GROUPS)
        wanted = register.ec2_tags(placed)
        assert wanted == {"service": "postgresql", "role": "replica"}
        assert register.register_on_ec2(instance, "eu-west-1", {}, wanted)
        tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance]}])["Tags"]
        assert {t["Key"]: t["Value"] for t in tags} == wanted
        assert not register.register_on_ec2(instance, "eu-west-1", wanted, wanted), "tags in place: no call"


# --- the step sequence ----------------------------------------------------------------------------------


class Recorder:
    """Stands in for the console: keeps what the flow reported."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[flow.StepRecord] = []

    def step_started(self, name: str, description: str) -> None:
        self.started.append(name)

    def step_finished(self, record: flow.StepRecord) -> None:
        self.finished.append(record)

    def playbook_view(self, title: str, hosts: tuple[str, ...]) -> Any:
        from contextlib import nullcontext

        return nullcontext(lambda event: None)


def fake_host(monkeypatch: pytest.MonkeyPatch, *, fail_at: str | None = None, changed: int = 2) -> list[Any]:
    """Replace everything that would reach a host; return the playbook runs the flow asked for."""
    runs: list[Any] = []
    monkeypatch.setattr(flow.reachability, "wait_for_ssh", lambda *a, **k: SshReady("SSH-2.0-OpenSSH_9.2p1", 0.1))
    monkeypatch.setattr(flow.hostkeys, "scan", lambda *a, **k: [HostKey("ssh-ed25519", "QUFBQQ==")])
    monkeypatch.setattr(flow.Bootstrap, "_admin_login_works", lambda self: False)
    monkeypatch.setattr(flow.Bootstrap, "_prove_bootstrap_login", lambda self: None)
    monkeypatch.setattr(flow.shutil, "which", lambda name: f"/usr/bin/{name}")

    def run_playbook(run: Any, settings: Any, **_: Any) -> Any:
        runs.append(run)
        failed = run.note.endswith(f": {fail_at}")
        return SimpleNamespace(
            exit_code=ExitCode.TASK_FAILED if failed else ExitCode.OK,
            failed=[SimpleNamespace(host="pg-3", task="base : Install", message="no space left")] if failed else [],
            changed_count=changed,
            duration=1.0,
            run_id=f"run-{len(runs)}",
            error="",
            status="failed" if failed else "successful",
        )

    def run_suites(target: str, suites: list[Path], inventory: Any, state: Any, keep: int) -> VerifyResult:
        return VerifyResult(
            run_id="verify-1",
            target=target,
            inventory=str(inventory.source),
            limit=inventory.limit,
            suites=[],
            started_at="",
            duration=1.0,
            exit_code=ExitCode.OK,
            hosts={host: HostVerdict(passed=7) for host in inventory.hosts},
        )

    monkeypatch.setattr(flow, "run_playbook", run_playbook)
    monkeypatch.setattr(flow, "run_suites", run_suites)
    return runs


def request(inventory: Path, **overrides: Any) -> flow.BootstrapRequest:
    fields: dict[str, Any] = {
        "target": Target(address="10.0.0.3"),
        "service": "base",
        "inventory": inventory,
        "login": flow.Login(user="debian"),
        "name": "pg-3",
    }
    return flow.BootstrapRequest(**{**fields, **overrides})


def test_the_steps_run_in_order_and_the_admin_account_comes_from_the_inventory(
    project: Project, admin_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = fleet_inventory(project, admin_key)
    runs = fake_host(monkeypatch)
    recorder = Recorder()
    result = flow.Bootstrap(
        request(inventory, service="postgresql", login=flow.Login(user="debian", password="s3cret-login")),
        RunSettings(state_paths()),
        recorder,
    ).run()
    assert result.exit_code == ExitCode.OK, result.error
    assert recorder.started == [
        "ssh", "host key", "login", "inventory", "access", "base", "hardening", "node_exporter", "service", "verify",
        "prometheus",
    ]  # fmt: skip
    access = runs[0]
    assert access.playbook.name == "bootstrap.yml" and access.tags == "bootstrap_access"
    assert access.skip_tags == "always", "the imported playbooks' always-tasks are not part of the access step"
    inline = access.extra_vars.inline
    assert inline["ansible_user"] == "debian" and inline["bootstrap_admin_user"] == "toolkit"
    assert inline["bootstrap_admin_public_key"] == (admin_key.with_suffix(".pub")).read_text().strip()
    assert "s3cret-login" in access.extra_vars.secret_values(), "the password is scrubbed from artifacts"
    assert [r.playbook.name for r in runs[1:]] == [
        "base.yml", "hardening.yml", "node_exporter.yml", "postgresql.yml", "prometheus.yml",
    ]  # fmt: skip
    assert runs[4].inventory.limit == "pg-3:postgresql_primary", "the primary learns its new replica"
    assert runs[5].inventory.limit == "prometheus"
    assert (project.home / "known_hosts").read_text().startswith("10.0.0.3 ssh-ed25519 ")
    document = result.to_dict()
    assert document["group"] == "postgresql_replica" and document["exit_code"] == 0
    assert "s3cret-login" not in json.dumps(document)


def test_a_failed_step_stops_the_bootstrap_with_its_exit_code(
    project: Project, admin_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = fleet_inventory(project, admin_key)
    runs = fake_host(monkeypatch, fail_at="hardening")
    recorder = Recorder()
    result = flow.Bootstrap(request(inventory), RunSettings(state_paths()), recorder).run()
    assert result.exit_code == ExitCode.TASK_FAILED
    assert [s.name for s in result.steps][-1] == "hardening" and result.steps[-1].status == "failed"
    assert "no space left" in result.error
    assert [r.playbook.name for r in runs] == ["bootstrap.yml", "base.yml", "hardening.yml"]


def test_bad_input_changes_nothing(project: Project, admin_key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = fleet_inventory(project, admin_key)
    runs = fake_host(monkeypatch)
    recorder = Recorder()
    result = flow.Bootstrap(
        request(inventory, name="pg-1", service="postgresql"), RunSettings(state_paths()), recorder
    ).run()
    assert result.exit_code == ExitCode.USAGE and "pg-1 at 10.0.0.1" in result.error
    assert runs == [] and recorder.started == [] and not (inventory / "bootstrap.yml").exists()


def test_known_hosts_come_from_the_inventorys_ssh_arguments() -> None:
    assert flow.known_hosts_from("-o UserKnownHostsFile=/x/kh -o StrictHostKeyChecking=yes") == Path("/x/kh")
    assert flow.known_hosts_from("-o UserKnownHostsFile /y/kh") == Path("/y/kh")
    assert flow.known_hosts_from("-o ControlMaster=auto") is None


# --- the command line -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["10.0.0.3", "--service", "mysql"], "cannot bootstrap into 'mysql'"),
        (["not an address", "--service", "base"], "is neither an IP address"),
        (["10.0.0.3", "--service", "base", "--host-var", "ansible_user=x"], "a connection setting"),
        (["10.0.0.3", "--service", "base", "--key", "/nonexistent"], "--key /nonexistent: no such file"),
        (["i-0123456789abcdef0", "--service", "base"], "no AWS region"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(project: Project, args: list[str], error: str) -> None:
    completed = toolkit(project, "bootstrap", *args, "-i", str(project.root))
    assert_usage_error(completed, error)


def test_a_re_run_keeps_the_group_and_entry_the_first_run_wrote(
    project: Project, admin_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = fleet_inventory(project, admin_key)
    fake_host(monkeypatch)
    first = flow.Bootstrap(request(inventory, service="postgresql"), RunSettings(state_paths()), Recorder()).run()
    assert first.exit_code == ExitCode.OK, first.error
    written = (inventory / "bootstrap.yml").read_text()
    again = flow.Bootstrap(request(inventory, service="postgresql"), RunSettings(state_paths()), Recorder()).run()
    assert again.exit_code == ExitCode.OK, again.error
    assert again.placement is not None and again.placement.group == "postgresql_replica"
    assert (inventory / "bootstrap.yml").read_text() == written
    assert next(s for s in again.steps if s.name == "inventory").status == "ok"


def test_an_unreachable_host_is_a_bounded_wait_then_one_clear_error(project: Project, admin_key: Path) -> None:
    import socket

    inventory = fleet_inventory(project, admin_key)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    completed = toolkit(
        project, "bootstrap", "127.0.0.1", "--service", "base", "--port", str(port), "--ssh-timeout", "2",
        "-i", str(inventory), "--json",
    )  # fmt: skip
    assert completed.returncode == int(ExitCode.UNREACHABLE), completed.stderr
    document = json.loads(completed.stdout)
    assert [step["name"] for step in document["steps"]] == ["ssh"]
    assert f"127.0.0.1:{port} did not answer SSH within 2s (last attempt: connection refused)" in document["error"]
    assert "Traceback" not in completed.stderr
    assert not (inventory / "bootstrap.yml").exists(), "nothing is registered for a host never reached"


@pytest.mark.parametrize(
    ("changed", "said"),
    [
        (0, "pg-3 (10.0.0.3) is bootstrapped already: nothing changed"),
        (2, "pg-3 (10.0.0.3) bootstrapped into postgresql_replica"),
    ],
)
def test_a_re_runs_summary_says_whether_it_changed_anything(
    project: Project,
    admin_key: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    changed: int,
    said: str,
) -> None:
    inventory = fleet_inventory(project, admin_key)
    fake_host(monkeypatch, changed=changed)
    for _ in range(2):  # the second run finds the host placed: its inventory step changes nothing
        result = flow.Bootstrap(request(inventory, service="postgresql"), RunSettings(state_paths()), Recorder()).run()
    assert result.exit_code == ExitCode.OK and result.changed == changed * 6
    capsys.readouterr()
    console.print_bootstrap_summary(result)
    assert said in capsys.readouterr().err
