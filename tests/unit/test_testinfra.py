"""toolkit verify: per-host verdicts from JUnit XML, the exit code, and the pytest command line."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import Project
from toolkit.exit_codes import ExitCode
from toolkit.paths import state_paths
from toolkit.runner import testinfra
from toolkit.runner.history import History
from toolkit.runner.inventory import ResolvedInventory

# TestFailure is used through the module: imported by name, pytest would try to collect it as a test class.
from toolkit.runner.testinfra import HostVerdict, decide_verify_exit, parse_junit, pytest_command

HOSTS = ("web-1", "web-10")

# The shape pytest writes with testinfra's ansible backend: the host is the first id parameter.
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="8">
  <testcase classname="test_base" name="test_timezone[ansible://web-1]" time="0.1" />
  <testcase classname="test_base" name="test_port[ansible://web-1-22]" time="0.1" />
  <testcase classname="test_base" name="test_timezone[ansible://web-10]" time="0.1">
    <failure message="AssertionError: assert 'UTC' == 'Europe/Paris'&#10;  - Europe/Paris">trace</failure>
  </testcase>
  <testcase classname="test_base" name="test_port[ansible://web-10-22]" time="0.1">
    <skipped type="pytest.skip" message="not on this host">skipped</skipped>
  </testcase>
  <testcase classname="test_base" name="test_users[ansible://web-10]" time="0.1">
    <error message="failed on setup with &quot;RuntimeError: Ansible failed&quot;">
      ssh: connect to host 10.242.10.20 port 22: Connection refused
    </error>
  </testcase>
  <testcase classname="test_base" name="test_users[ansible://db-1]" time="0.1" />
  <testcase classname="test_base" name="test_collection_only" time="0.1" />
</testsuite></testsuites>
"""


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    return path


def test_junit_results_go_to_the_right_host_even_with_prefix_names(report: Path) -> None:
    verdicts, _ = parse_junit(report, HOSTS)
    # web-1 must not swallow web-10's results (or the other way round).
    assert verdicts["web-1"] == HostVerdict(passed=2, failed=0, skipped=0, unreachable=False)
    assert verdicts["web-10"] == HostVerdict(passed=0, failed=2, skipped=1, unreachable=True)
    # Hosts outside the inventory and tests without a host are not counted.
    assert set(verdicts) == set(HOSTS)


def test_a_host_named_like_another_plus_a_suffix_gets_its_own_results(tmp_path: Path) -> None:
    # "web" is a prefix of "web-1" (and web-1's id "web-1-22" starts with "web-"): the longest name must win.
    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuite><testcase classname="t" name="test_x[ansible://web-1]"><failure message="no" /></testcase>'
        '<testcase classname="t" name="test_port[ansible://web-1-22]" />'
        '<testcase classname="t" name="test_port[ansible://web-22]" /></testsuite>'
    )
    verdicts, _ = parse_junit(path, ("web", "web-1"))
    assert verdicts == {"web": HostVerdict(passed=1), "web-1": HostVerdict(passed=1, failed=1)}


def test_junit_failures_name_host_test_and_first_message_line(report: Path) -> None:
    _, failures = parse_junit(report, HOSTS)
    assert failures == [
        testinfra.TestFailure(
            "web-10", "test_base::test_timezone[ansible://web-10]", "AssertionError: assert 'UTC' == 'Europe/Paris'"
        ),
        testinfra.TestFailure(
            "web-10", "test_base::test_users[ansible://web-10]", 'failed on setup with "RuntimeError: Ansible failed"'
        ),
    ]


def test_a_connection_failure_in_the_message_marks_the_host_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuite><testcase classname="t" name="test_x[ansible://web-1]">'
        '<failure message="kex_exchange_identification: read: Connection reset by peer" /></testcase></testsuite>'
    )
    verdicts, _ = parse_junit(path, ("web-1",))
    assert verdicts["web-1"].unreachable


def test_an_ordinary_failure_is_not_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuite><testcase classname="t" name="test_x[ansible://web-1]">'
        '<failure message="AssertionError: port 5432 not listening" /></testcase></testsuite>'
    )
    verdicts, _ = parse_junit(path, ("web-1",))
    assert verdicts["web-1"] == HostVerdict(failed=1)


@pytest.mark.parametrize(
    ("verdicts", "rc", "expected"),
    [
        pytest.param({"a": HostVerdict(passed=3)}, 0, ExitCode.OK, id="all passed"),
        pytest.param({"a": HostVerdict(passed=3), "b": HostVerdict(passed=2, failed=1)}, 1, ExitCode.TASK_FAILED),
        pytest.param({"a": HostVerdict(failed=1), "b": HostVerdict(unreachable=True, failed=1)}, 1, 4, id="unreach"),
        pytest.param({"a": HostVerdict(skipped=3)}, 0, ExitCode.TASK_FAILED, id="nothing passed"),
        pytest.param({}, 5, ExitCode.TASK_FAILED, id="nothing collected"),
        pytest.param({"a": HostVerdict(passed=3)}, 2, ExitCode.TASK_FAILED, id="pytest itself failed"),
    ],
)
def test_verify_exit_code(verdicts: dict[str, HostVerdict], rc: int, expected: ExitCode) -> None:
    assert decide_verify_exit(verdicts, rc) == expected


def test_the_pytest_command_targets_the_inventory_and_limit(project: Project, tmp_path: Path) -> None:
    inventory = ResolvedInventory(source=tmp_path / "inv.yml", hosts=("web-1", "web-3"), limit="web:!web-2")
    suite = project.root / "tests" / "infra" / "test_base.py"
    command = pytest_command([suite], inventory, tmp_path / "junit.xml")
    assert command[:3] == [sys.executable, "-m", "pytest"]
    assert command[-1] == str(suite)
    for expected in (
        # Ansible resolved the pattern; testinfra gets the hosts themselves (it only knows fnmatch).
        "--hosts=ansible://web-1,ansible://web-3",
        f"--ansible-inventory={tmp_path / 'inv.yml'}",
        "--connection=ansible",
        "--sudo",  # the suites read root-only files, whatever the inventory's ansible_become
        f"--junitxml={tmp_path / 'junit.xml'}",
        "addopts=",  # the unit layer's options must not leak into a fleet check
        "no:cacheprovider",
    ):
        assert expected in command, expected
    assert command[command.index("--rootdir") + 1] == str(project.root / "tests" / "infra")


def test_without_a_limit_every_resolved_host_is_checked(project: Project, tmp_path: Path) -> None:
    inventory = ResolvedInventory(source=tmp_path / "inv.yml", hosts=("db-1", "db-2"), limit=None)
    assert "--hosts=ansible://db-1,ansible://db-2" in pytest_command([], inventory, tmp_path / "junit.xml")


def test_run_suites_records_the_verdicts_and_finds_ansible_without_an_activated_venv(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as from cron: the virtualenv is not activated
    calls: list[dict[str, Any]] = []

    def fake_pytest(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append({"command": command, **kwargs})
        report = Path(next(arg for arg in command if arg.startswith("--junitxml=")).split("=", 1)[1])
        report.write_text(JUNIT)
        return subprocess.CompletedProcess(command, 1, stdout="1 failed, 2 passed", stderr="")

    monkeypatch.setattr(subprocess, "run", fake_pytest)
    inventory = ResolvedInventory(source=project.root / "inv.yml", hosts=HOSTS, limit=None)
    suite = project.root / "tests" / "infra" / "test_base.py"

    result = testinfra.run_suites("base", [suite], inventory, state_paths(), keep_runs=5)

    assert result.exit_code is ExitCode.UNREACHABLE
    assert result.suites == ["tests/infra/test_base.py"]
    assert result.artifacts is not None
    assert (result.artifacts / "stdout").read_text() == "1 failed, 2 passed"
    [call] = calls
    assert call["cwd"] == project.root
    # testinfra's ansible backend runs `ansible-inventory` from PATH: the one beside this interpreter.
    assert call["env"]["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert call["env"]["ANSIBLE_CONFIG"] == str(project.root / "ansible.cfg")
    record = History(project.home / "toolkit.db").get(result.run_id)
    assert record is not None
    assert (record.kind, record.status, record.exit_code) == ("verify", "failed", 4)
    assert (record.hosts, record.ok, record.failed, record.unreachable) == (2, 2, 2, 1)


def test_run_suites_reports_pytest_that_did_not_run(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_pytest(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 4, stdout="", stderr="ERROR: usage: bad option\n")

    monkeypatch.setattr(subprocess, "run", broken_pytest)
    inventory = ResolvedInventory(source=project.root / "inv.yml", hosts=HOSTS, limit=None)
    result = testinfra.run_suites("base", [], inventory, state_paths(), keep_runs=5)
    assert result.exit_code is ExitCode.TASK_FAILED
    assert result.error == "pytest did not run: ERROR: usage: bad option"
    assert result.hosts == {"web-1": HostVerdict(), "web-10": HostVerdict()}
