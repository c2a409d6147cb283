"""TOOLKIT_STRATEGY: which strategy plugin ansible-playbook is told to use, and bad values refused early."""

import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.errors import UsageError
from toolkit.runner import artifacts
from toolkit.runner.execute import PlaybookRun, build_runner_kwargs
from toolkit.runner.inventory import ResolvedInventory
from toolkit.runner.strategy import strategy_environment, strategy_from_env


def test_unset_or_empty_is_mitogen_the_default() -> None:
    assert strategy_from_env({}) == "mitogen"
    assert strategy_from_env({"TOOLKIT_STRATEGY": "  "}) == "mitogen"


def test_linear_opts_out_to_the_stock_strategy_with_nothing_added() -> None:
    assert strategy_from_env({"TOOLKIT_STRATEGY": "Linear"}) == "linear"
    assert strategy_environment("linear") == {}


def test_mitogen_points_ansible_at_mitogen_linear_and_its_plugin_directory() -> None:
    assert strategy_from_env({"TOOLKIT_STRATEGY": "Mitogen"}) == "mitogen"
    env = strategy_environment("mitogen")
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()


def test_an_unknown_strategy_is_one_clear_error() -> None:
    with pytest.raises(UsageError, match=r"TOOLKIT_STRATEGY='free' is not a strategy toolkit knows \(use one of"):
        strategy_from_env({"TOOLKIT_STRATEGY": "free"})


def test_the_strategy_reaches_ansible_playbooks_environment(tmp_path: Path) -> None:
    run = PlaybookRun(
        kind="converge",
        target="base",
        playbook=tmp_path / "base.yml",
        inventory=ResolvedInventory(source=tmp_path / "hosts.yml", hosts=("web-1",), limit=None),
    )
    kwargs = build_runner_kwargs(
        run,
        artifacts.RunDirectory("run1", tmp_path / "run1"),
        [],
        event_handler=lambda event: True,
        cancel_callback=lambda: False,
        strategy="mitogen",
    )
    assert kwargs["envvars"]["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert kwargs["envvars"]["ANSIBLE_CONFIG"].endswith("ansible.cfg")  # the project's settings stay


def test_the_cli_refuses_an_unknown_strategy_before_anything_runs(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    web-1:\n      ansible_host: 192.0.2.10\n")
    env = {"TOOLKIT_STRATEGY": "turbo", "TOOLKIT_HOME": str(tmp_path), "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "converge", "base", "-i", str(inventory)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "TOOLKIT_STRATEGY='turbo' is not a strategy" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
