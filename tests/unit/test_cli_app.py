"""The CLI's error boundary, end to end: the real `python -m toolkit` in a subprocess against a tmp project.

Every usage problem must be exit 2 with one `error:` line (and maybe a `hint:` line) on stderr, nothing on
stdout and no traceback. Nothing here runs Ansible: each case fails before a run would start.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.conftest import Project

REPO = Path(__file__).resolve().parents[2]


def toolkit(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    # The autouse fixture has already pointed TOOLKIT_PROJECT/TOOLKIT_HOME at tmp_path in os.environ.
    return subprocess.run(
        [sys.executable, "-m", "toolkit", *args],
        cwd=project.root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_usage_error(completed: subprocess.CompletedProcess[str], error: str, hint: str | None = None) -> None:
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == 2, completed.stderr
    assert completed.stdout == ""  # stdout is for --json documents only
    assert "Traceback" not in completed.stderr
    assert lines[0].startswith("error: "), completed.stderr
    assert error in lines[0], completed.stderr
    assert len(lines) <= 2, completed.stderr
    if hint is not None:
        assert lines[1].startswith("hint: ")
        assert hint in lines[1]


def test_an_unknown_service_lists_the_valid_ones(project: Project) -> None:
    assert_usage_error(toolkit(project, "converge", "nosuch"), "unknown service 'nosuch'; valid: base, site")


def test_a_malformed_extra_var_is_a_usage_error(project: Project) -> None:
    assert_usage_error(toolkit(project, "converge", "base", "-e", "novalue"), "-e 'novalue': expected key=value")


def test_a_missing_inventory_is_a_usage_error(project: Project) -> None:
    assert_usage_error(
        toolkit(project, "converge", "base", "-i", "/nonexistent"), "inventory /nonexistent does not exist"
    )


@pytest.mark.parametrize("command", ["converge", "drift"])
@pytest.mark.parametrize("timeout", ["10", "5x", "-1m", "soon"])
def test_a_bad_lock_timeout_is_a_usage_error(project: Project, command: str, timeout: str) -> None:
    assert_usage_error(
        toolkit(project, command, "base", "--lock-timeout", timeout),
        f"--lock-timeout {timeout!r} is not a duration like 30s, 10m, 24h, 7d or 2w",
    )


@pytest.mark.parametrize("command", ["converge", "verify"])
def test_without_the_lab_the_hint_says_how_to_bring_it_up(project: Project, command: str) -> None:
    assert not (project.root / "inventories" / "lab" / "hosts.yml").exists()
    assert_usage_error(toolkit(project, command, "base"), "the lab is not up", hint="toolkit lab up")


def test_verify_of_an_unknown_service_is_a_usage_error(project: Project) -> None:
    assert_usage_error(toolkit(project, "verify", "nosuch"), "unknown service 'nosuch'")


def test_showing_an_unknown_run_is_a_usage_error(project: Project) -> None:
    assert_usage_error(toolkit(project, "runs", "show", "nosuch"), "no run 'nosuch' in the history")


def test_a_limit_matching_no_host_is_one_line_without_ansible_chatter(project: Project) -> None:
    inventory = project.inventory({"web": ["web-1", "web-2"]})
    completed = toolkit(project, "converge", "base", "-i", str(inventory), "-l", "db")
    assert_usage_error(completed, "--limit 'db' matches no host", hint="hosts: web-1, web-2")
    assert "[WARNING]" not in completed.stderr


def test_a_malformed_inventory_is_one_line_with_the_yaml_problem(project: Project) -> None:
    inventory = project.root / "bad.yml"
    inventory.write_text("all:\n  hosts:\n    web-1:\n   bad: [\n")
    completed = toolkit(project, "converge", "base", "-i", str(inventory))
    assert_usage_error(completed, "YAML parsing failed")
    assert "[WARNING]" not in completed.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["converge"], id="missing argument"),
        pytest.param(["converge", "base", "--bogus"], id="unknown option"),
        pytest.param(["converge", "base", "--forks", "0"], id="out of range"),
        pytest.param(["runs", "show"], id="missing run id"),
    ],
)
def test_command_line_mistakes_are_usage_errors_not_internal_errors(project: Project, args: list[str]) -> None:
    completed = toolkit(project, *args)
    assert completed.returncode == 2, completed.stderr
    assert "Error:" in completed.stderr
    assert "internal error" not in completed.stderr
    assert not (project.home / "debug.log").exists()


def test_no_arguments_shows_the_help(project: Project) -> None:
    completed = toolkit(project)
    assert completed.returncode == 2
    assert "converge" in completed.stdout + completed.stderr
    assert "internal error" not in completed.stderr


def test_version(project: Project) -> None:
    completed = toolkit(project, "--version")
    assert completed.returncode == 0
    assert completed.stdout == "toolkit 0.1.0\n"


def test_an_empty_history_lists_as_an_empty_json_array(project: Project) -> None:
    completed = toolkit(project, "runs", "list", "--json")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []
