"""The podman wrapper: clear errors (with the setup hint) when podman or the lab's config is missing.

podman itself is never run: shutil.which and subprocess.run are replaced.
"""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from toolkit.errors import LabError
from toolkit.exit_codes import ExitCode
from toolkit.lab.podman import Podman


@pytest.fixture
def containers_conf(tmp_path: Path) -> Path:
    path = tmp_path / "containers.conf"
    path.write_text("[engine]\nruntime = 'runc'\n")
    return path


@pytest.fixture
def podman_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if name == "podman" else None)


def test_missing_podman_is_a_lab_error_with_the_setup_hint(
    monkeypatch: pytest.MonkeyPatch, containers_conf: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LabError) as raised:
        Podman(containers_conf)
    assert raised.value.message == "podman is not installed (not found on PATH)"
    assert raised.value.hint is not None
    assert "scripts/setup" in raised.value.hint
    assert raised.value.exit_code == ExitCode.USAGE


@pytest.mark.usefixtures("podman_on_path")
def test_a_missing_containers_conf_is_a_lab_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(LabError) as raised:
        Podman(tmp_path / "nope.conf")
    assert str(tmp_path / "nope.conf") in raised.value.message
    assert raised.value.hint is not None
    assert "scripts/setup" in raised.value.hint


@pytest.mark.usefixtures("podman_on_path")
def test_podman_runs_with_the_lab_config_and_reports_its_last_error_line(
    monkeypatch: pytest.MonkeyPatch, containers_conf: Path
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append({"command": command, **kwargs})
        return subprocess.CompletedProcess(command, 125, stdout="", stderr="Trying...\nError: no such network\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    lab = Podman(containers_conf)
    with pytest.raises(LabError) as raised:
        lab.run("network", "inspect", "toolkit-lab")
    assert raised.value.message == "podman network failed: Error: no such network"
    assert calls[0]["command"] == ["podman", "network", "inspect", "toolkit-lab"]
    assert calls[0]["env"]["CONTAINERS_CONF"] == str(containers_conf)
    # check=False hands the failure back instead; exists() reads it as "no".
    assert lab.run("ps", check=False).returncode == 125
    assert lab.exists("container", "toolkit-lab-web-1") is False


def test_lab_hosts_get_the_capabilities_the_hardening_role_needs(tmp_path: Path) -> None:
    """nftables, process accounting and AIDE need capabilities podman does not give by default."""
    from toolkit.lab import profiles
    from toolkit.lab.lab import CAPABILITIES, Lab, LabPaths

    calls: list[tuple[str, ...]] = []

    class FakePodman:
        def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            calls.append(args)
            missing = args[:2] == ("container", "inspect")
            return subprocess.CompletedProcess(list(args), 1 if missing else 0, stdout="", stderr="")

    lab = Lab(LabPaths(tmp_path, tmp_path / "hosts.yml"))
    lab._podman = FakePodman()  # type: ignore[assignment]
    host = profiles.hosts_of("full")[0]
    lab._ensure_container(host)
    [run] = [call for call in calls if call[0] == "run"]
    added = [run[i + 1] for i, argument in enumerate(run) if argument == "--cap-add"]
    assert added == list(CAPABILITIES)
    assert {"NET_ADMIN", "SYS_PACCT", "DAC_READ_SEARCH", "AUDIT_WRITE"} <= set(added)
    assert run[-2:] == (profiles.IMAGE, "/sbin/init")


def test_lab_hosts_get_the_hardening_roles_network_sysctls_from_the_runtime(tmp_path: Path) -> None:
    """A container cannot write /proc/sys: the lab's runtime sets the role's network sysctls instead."""
    import yaml

    from toolkit.lab import profiles
    from toolkit.lab.lab import NETWORK_SYSCTLS, Lab, LabPaths

    project = Path(__file__).resolve().parents[2]
    defaults = yaml.safe_load((project / "roles" / "hardening" / "defaults" / "main.yml").read_text())
    assert dict(item.split("=", 1) for item in NETWORK_SYSCTLS) == {
        key: str(value) for key, value in defaults["hardening_sysctl_network"].items()
    }
    scenario = yaml.safe_load((project / "molecule" / "hardening" / "molecule.yml").read_text())
    [platform] = scenario["platforms"]
    assert [opt.removeprefix("--sysctl=") for opt in platform["extra_opts"]] == list(NETWORK_SYSCTLS)

    calls: list[tuple[str, ...]] = []

    class FakePodman:
        def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            calls.append(args)
            return subprocess.CompletedProcess(list(args), 1 if args[0] == "container" else 0, stdout="", stderr="")

    lab = Lab(LabPaths(tmp_path, tmp_path / "hosts.yml"))
    lab._podman = FakePodman()  # type: ignore[assignment]
    lab._ensure_container(profiles.hosts_of("full")[0])
    [run] = [call for call in calls if call[0] == "run"]
    assert [run[i + 1] for i, argument in enumerate(run) if argument == "--sysctl"] == list(NETWORK_SYSCTLS)


class _LabelledContainers:
    """podman with some lab containers already there, each with its labels; records every other call."""

    def __init__(self, containers: list[dict[str, Any]]) -> None:
        self.containers = containers
        self.calls: list[tuple[str, ...]] = []

    def json(self, *args: str) -> Any:
        return self.containers if args[0] == "ps" else None

    def run(self, *args: str, **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess(list(args), 1, stdout="", stderr="")

    def exists(self, kind: str, name: str) -> bool:
        self.calls.append(("exists", kind, name))
        return False


def _checkout(root: Path, *, live: bool) -> Path:
    state = root / ".toolkit" / "lab"
    state.mkdir(parents=True)
    if live:
        (state / "state.json").write_text('{"profile": "minimal"}\n')
    return state


def _owned_by(state: Path) -> dict[str, Any]:
    from toolkit.lab import profiles

    return {
        "Names": ["toolkit-lab-cassandra-1"],
        "Labels": {profiles.LABEL: "1", profiles.OWNER_LABEL: str(state)},
        "Pid": os.getpid(),  # a live process
    }


def test_a_lab_of_another_checkout_is_neither_brought_up_over_nor_taken_down(tmp_path: Path) -> None:
    """Names, addresses and the package cache are machine-wide: a second checkout must not reuse or remove them."""
    from toolkit.lab.lab import Lab, LabPaths

    theirs = _checkout(tmp_path / "main", live=True)
    ours = tmp_path / "clone" / ".toolkit" / "lab"
    podman = _LabelledContainers([_owned_by(theirs)])
    lab = Lab(LabPaths(ours, tmp_path / "clone" / "hosts.yml"))
    lab._podman = podman  # type: ignore[assignment]
    for action in (lambda: lab.up("minimal"), lab.down):
        with pytest.raises(LabError) as raised:
            action()
        assert str(theirs) in raised.value.message
        assert "toolkit-lab-cassandra-1" in raised.value.message
        assert raised.value.hint == f"run `toolkit lab down` in {tmp_path / 'main'} first"
    assert podman.calls == []  # refused before any container, network or file was touched
    assert not ours.exists()


class _FilteringContainers(_LabelledContainers):
    """As podman does: `ps --filter label=KEY=VALUE` lists only the containers with that label."""

    def json(self, *args: str) -> Any:
        if args[0] != "ps":
            return None
        wanted = next((a.removeprefix("label=") for a in args if a.startswith("label=")), None)
        if wanted is None:
            return self.containers
        key, _, value = wanted.partition("=")
        return [c for c in self.containers if (c.get("Labels") or {}).get(key) == value]


def test_hosts_on_a_network_of_their_own_come_and_go_beside_another_checkouts_lab(tmp_path: Path) -> None:
    """An environment's (or a test's) network is found by its own label: another checkout's live lab neither
    blocks its down nor loses a container to it."""
    from toolkit.lab.lab import Lab, LabPaths
    from toolkit.lab.profiles import LabNetwork

    theirs = _checkout(tmp_path / "main", live=True)
    twin = {"Names": ["toolkit-twin-db-1"], "Labels": {"io.toolkit.twins": "1"}, "Pid": os.getpid()}
    podman = _FilteringContainers([_owned_by(theirs), twin])
    network = LabNetwork("toolkit-twins", "10.242.40.0/24", "10.242.40.1", "io.toolkit.twins=1", "toolkit-twin-")
    twins = Lab(LabPaths(tmp_path / "twins", tmp_path / "twins" / "hosts.yml"), network)
    twins._podman = podman  # type: ignore[assignment]
    assert twins.down() == ["container toolkit-twin-db-1"]
    removed = [call for call in podman.calls if call[0] == "rm"]
    assert removed == [("rm", "--force", "--time", "2", "toolkit-twin-db-1")]


def test_an_orphaned_or_own_lab_is_not_refused(tmp_path: Path) -> None:
    """A deleted clone's containers, or ones whose processes were killed, are orphans; our own are ours."""
    from toolkit.lab.lab import Lab, LabPaths

    orphan = _checkout(tmp_path / "deleted", live=False)
    ours = _checkout(tmp_path / "main", live=True)
    lab = Lab(LabPaths(ours, tmp_path / "main" / "hosts.yml"))
    killed = {**_owned_by(_checkout(tmp_path / "killed", live=True)), "Pid": 999999999}
    lab._podman = _LabelledContainers([_owned_by(orphan), _owned_by(ours), killed])  # type: ignore[assignment]
    assert lab._foreign_owner() is None


def test_a_container_whose_processes_were_killed_is_replaced_not_waited_for(tmp_path: Path) -> None:
    """podman keeps calling such a container running; exec and start both fail on it, so boot never comes."""
    from toolkit.lab import profiles
    from toolkit.lab.lab import Lab, LabPaths

    calls: list[tuple[str, ...]] = []

    class StalePodman:
        def run(self, *args: str, check: bool = True, **_: Any) -> subprocess.CompletedProcess[str]:
            calls.append(args)
            inspected = args[:2] == ("container", "inspect")
            answer = "running 999999999" if inspected and len(calls) == 1 else ""
            return subprocess.CompletedProcess(list(args), 0, stdout=answer, stderr="")

    lab = Lab(LabPaths(tmp_path, tmp_path / "hosts.yml"))
    lab._podman = StalePodman()  # type: ignore[assignment]
    host = profiles.hosts_of("minimal")[0]
    assert lab._container_state(host) == "dead"
    calls.clear()
    lab._ensure_container(host)
    assert [call[0] for call in calls[1:]] == ["rm", "run"]
    assert calls[1][-1] == host.container
