"""Lynis reports: parsing, the scan command, saving per-host reports for `toolkit verify`, scripts/lynis-scan."""

import importlib.machinery
import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit.conftest import Project
from toolkit.paths import state_paths
from toolkit.runner import testinfra
from toolkit.runner.inventory import ResolvedInventory
from toolkit.runner.lynis import (
    REPORTS_ENV,
    Finding,
    LynisReport,
    LynisReportError,
    parse_report,
    read_host_reports,
    scan_command,
    scan_script,
    write_host_report,
)

# The shape of /var/log/lynis-report.dat from Lynis 3.0.8 on Debian 12 (abridged).
REPORT = """# Lynis Report
report_version_major=1
report_version_minor=0
report_datetime_start=2026-11-25 10:58:20
lynis_version=3.0.8
os=Linux
lynis_tests_done=240
warning[]=PKGS-7392|Found one or more vulnerable packages.|-|-|
suggestion[]=DEB-0810|Install apt-listbugs to display a list of critical bugs prior to each APT installation.|-|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|MaxSessions (set 10 to 2)|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|MaxSessions (set 10 to 2)|-|
suggestion[]=FILE-7524|Consider restricting file permissions|See screen output or log file|text:Use chmod|
skipped_test[]=KRNL-5788
hardening_index=59
report_datetime_end=2026-11-25 10:58:51
"""


def test_a_report_gives_index_version_tests_and_findings() -> None:
    report = parse_report(REPORT)
    assert report.hardening_index == 59
    assert report.lynis_version == "3.0.8"
    assert report.tests_performed == 240
    assert report.warnings == [Finding("PKGS-7392", "Found one or more vulnerable packages.")]
    assert [f.test for f in report.suggestions] == ["DEB-0810", "SSH-7408", "FILE-7524"]  # repeated once
    assert report.suggestions[1].details == "MaxSessions (set 10 to 2)"
    assert report.suggestions[2].details == "See screen output or log file; text:Use chmod"
    assert str(report.suggestions[1]) == "SSH-7408: Consider hardening SSH configuration (MaxSessions (set 10 to 2))"
    assert report.skipped_tests == ["KRNL-5788"]


@pytest.mark.parametrize(
    ("index", "warnings", "minimum", "passes"),
    [(86, 0, 85, True), (85, 0, 85, True), (84, 0, 85, False), (90, 1, 85, False), (None, 0, 0, False)],
)
def test_passing_needs_the_index_and_no_warning(index: int | None, warnings: int, minimum: int, passes: bool) -> None:
    report = LynisReport(hardening_index=index, warnings=[Finding("X-1", "bad")] * warnings)
    assert report.passes(minimum) is passes


def test_an_unfinished_scan_has_no_index() -> None:
    assert parse_report("report_version_major=1\nlynis_version=3.0.8\n").hardening_index is None


@pytest.mark.parametrize("text", ["", "lynis: command not found\n", "hardening_index=80\n"])
def test_text_that_is_not_a_report_is_refused(text: str) -> None:
    with pytest.raises(LynisReportError):
        parse_report(text)


def test_reports_round_trip_through_json(tmp_path: Path) -> None:
    report = parse_report(REPORT)
    path = write_host_report(tmp_path / "reports", "web-1", report)
    assert path.name == "lynis-web-1.json"
    assert json.loads(path.read_text())["host"] == "web-1"
    (tmp_path / "reports" / "lynis-broken.json").write_text("{not json")
    assert read_host_reports(tmp_path / "reports") == {"web-1": report}
    assert read_host_reports(tmp_path / "missing") == {}


def test_the_scan_prints_only_the_report_and_keeps_lynis_exit_status() -> None:
    script = scan_script()
    assert "lynis audit system" in script and "--report-file" in script and "--no-colors" in script
    assert script.rstrip().endswith("exit $status")
    assert scan_command(["podman", "exec", "web-1"]) == ["podman", "exec", "web-1", "sh", "-c", script]


def test_verify_collects_the_lynis_reports_the_suite_saved(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_pytest(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        reports = Path(kwargs["env"][REPORTS_ENV])
        write_host_report(reports, "web-1", parse_report(REPORT))
        write_host_report(reports, "not-in-inventory", parse_report(REPORT))
        junit = Path(next(arg for arg in command if arg.startswith("--junitxml=")).split("=", 1)[1])
        junit.write_text('<testsuite><testcase classname="t" name="test_x[ansible://web-1]" /></testsuite>')
        return subprocess.CompletedProcess(command, 0, stdout="1 passed", stderr="")

    monkeypatch.setattr(subprocess, "run", fake_pytest)
    inventory = ResolvedInventory(source=project.root / "inv.yml", hosts=("web-1",), limit=None)
    result = testinfra.run_suites("hardening", [], inventory, state_paths(), keep_runs=5)
    assert set(result.lynis) == {"web-1"}
    document = result.to_dict()
    assert document["lynis"]["web-1"]["hardening_index"] == 59
    assert document["lynis"]["web-1"]["warnings"] == [
        {"test": "PKGS-7392", "message": "Found one or more vulnerable packages.", "details": ""}
    ]


def load_script() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "lynis-scan"
    loader = importlib.machinery.SourceFileLoader("lynis_scan", str(path))
    spec = importlib.util.spec_from_loader("lynis_scan", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize(("minimum", "code"), [(None, 0), (50, 1), (59, 1)])
def test_the_script_prints_json_and_fails_below_the_minimum_or_on_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], minimum: int | None, code: int
) -> None:
    script = load_script()
    seen: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, stdout=REPORT, stderr="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    argv = ["--json", *(["--min-index", str(minimum)] if minimum is not None else []), "podman", "exec", "h"]
    assert script.main(argv) == code
    document = json.loads(capsys.readouterr().out)
    assert document["hardening_index"] == 59
    assert seen[0][:3] == ["podman", "exec", "h"]
    if minimum is not None:
        assert document["passed"] is False  # the warning fails it even at 50


def test_the_script_exits_2_when_no_report_comes_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script()
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda command, **kwargs: subprocess.CompletedProcess(command, 127, "", "sh: lynis: not found"),
    )
    assert script.main(["podman", "exec", "h"]) == 2
    assert "did not produce a report" in capsys.readouterr().err


def test_the_verify_summary_shows_each_hosts_lynis_index_and_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    from toolkit import console
    from toolkit.exit_codes import ExitCode
    from toolkit.runner.testinfra import HostVerdict, VerifyResult

    result = VerifyResult(
        run_id="r1",
        target="hardening",
        inventory="inv",
        limit=None,
        suites=[],
        started_at="2026-11-25T00:00:00Z",
        duration=1.0,
        exit_code=ExitCode.TASK_FAILED,
        hosts={"web-1": HostVerdict(passed=3, failed=1)},
        lynis={"web-1": parse_report(REPORT)},
    )
    console.print_verify_summary(result)
    err = capsys.readouterr().err
    assert "Lynis" in err and "59" in err
    assert "lynis warning web-1 | PKGS-7392: Found one or more vulnerable packages." in err
