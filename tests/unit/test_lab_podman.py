"""The podman wrapper: clear errors (with the setup hint) when podman or the lab's config is missing.

podman itself is never run: shutil.which and subprocess.run are replaced.
"""

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
