"""Running a service's testinfra suite against an inventory's hosts (``toolkit verify``).

The suites in tests/infra/ are the same files molecule uses as verifiers, so one suite checks a
test container and a live fleet. pytest runs in a subprocess (testinfra is a pytest plugin); the
per-host outcome is read from its JUnit XML report, where every test id carries its host.
"""

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolkit.exit_codes import ExitCode
from toolkit.paths import StatePaths, project_root
from toolkit.runner import artifacts
from toolkit.runner.history import History
from toolkit.runner.inventory import ResolvedInventory
from toolkit.runner.lynis import REPORTS_ENV, LynisReport, read_host_reports
from toolkit.timestamps import utc_iso

# Messages that mean testinfra never reached the host (as opposed to a check that failed).
_UNREACHABLE = re.compile(
    r"ssh: connect to host|Connection refused|No route to host|Connection timed out|Could not resolve hostname"
    r"|Connection closed by|UNREACHABLE|kex_exchange_identification",
    re.IGNORECASE,
)


@dataclass
class HostVerdict:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: bool = False


@dataclass(frozen=True)
class TestFailure:
    host: str
    test: str
    message: str


@dataclass
class VerifyResult:
    run_id: str
    target: str
    inventory: str
    limit: str | None
    suites: list[str]
    started_at: str
    duration: float
    exit_code: ExitCode
    hosts: dict[str, HostVerdict] = field(default_factory=dict)
    failures: list[TestFailure] = field(default_factory=list)
    artifacts: Path | None = None
    error: str = ""
    # Lynis scans a suite made (test_hardening.py), by host: the hardening index and what is left.
    lynis: dict[str, LynisReport] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "successful" if self.exit_code == ExitCode.OK else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": "verify",
            "target": self.target,
            "inventory": self.inventory,
            "limit": self.limit,
            "suites": self.suites,
            "status": self.status,
            "exit_code": int(self.exit_code),
            "started_at": self.started_at,
            "duration": round(self.duration, 3),
            "hosts": {name: asdict(verdict) for name, verdict in self.hosts.items()},
            "failures": [asdict(f) for f in self.failures],
            "artifacts": str(self.artifacts) if self.artifacts else None,
            "error": self.error,
            "lynis": {host: report.to_dict() for host, report in sorted(self.lynis.items())},
        }


def parse_junit(report: Path, hosts: tuple[str, ...]) -> tuple[dict[str, HostVerdict], list[TestFailure]]:
    verdicts = {host: HostVerdict() for host in hosts}
    failures: list[TestFailure] = []
    root = ET.parse(report).getroot()
    for case in root.iter("testcase"):
        name = case.get("name", "")
        host = _host_from_case(name, hosts)
        if host is None:
            continue
        verdict = verdicts.setdefault(host, HostVerdict())
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if case.find("skipped") is not None:
            verdict.skipped += 1
        elif problem is not None:
            message = (problem.get("message") or problem.text or "").strip()
            if _UNREACHABLE.search(message) or _UNREACHABLE.search(problem.text or ""):
                verdict.unreachable = True
            verdict.failed += 1
            first_line = message.splitlines()[0][:300] if message else ""
            failures.append(TestFailure(host, f"{case.get('classname', '')}::{name}", first_line))
        else:
            verdict.passed += 1
    return verdicts, failures


def _host_from_case(name: str, hosts: tuple[str, ...]) -> str | None:
    """Match the test id's parameter against the known host names (longest first: web-1 vs web-10)."""
    bracket = name.rsplit("[", 1)[-1].rstrip("]") if "[" in name else ""
    bracket = bracket.removeprefix("ansible://")
    for host in sorted(hosts, key=len, reverse=True):
        if bracket == host or bracket.startswith(host + "-") or bracket.endswith("-" + host):
            return host
    return None


def decide_verify_exit(verdicts: dict[str, HostVerdict], pytest_rc: int) -> ExitCode:
    if any(v.unreachable for v in verdicts.values()):
        return ExitCode.UNREACHABLE
    if any(v.failed for v in verdicts.values()) or pytest_rc not in (0,):
        return ExitCode.TASK_FAILED
    if not any(v.passed for v in verdicts.values()):
        return ExitCode.TASK_FAILED  # a suite that checked nothing proves nothing
    return ExitCode.OK


def pytest_command(suites: list[Path], inventory: ResolvedInventory, report: Path) -> list[str]:
    # Ansible resolved the limit and the service's groups into hosts; testinfra's own matching is fnmatch
    # on one name, so it is given the hosts themselves.
    hosts = ",".join(f"ansible://{host}" for host in inventory.hosts)
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",  # the project's unit-test options do not apply here
        "-o",
        "testpaths=",
        "--rootdir",
        str(project_root() / "tests" / "infra"),
        "-q",
        "--tb=line",
        "--color=no",
        f"--hosts={hosts}",
        f"--ansible-inventory={inventory.source}",
        "--connection=ansible",
        # The suites read what only root may (configs, journals, nft rulesets): as the playbooks do, through
        # sudo, whether or not the inventory sets ansible_become (an AWS inventory's admin does not).
        "--sudo",
        f"--junitxml={report}",
        *(str(s) for s in suites),
    ]


def run_suites(
    target: str, suites: list[Path], inventory: ResolvedInventory, state: StatePaths, keep_runs: int
) -> VerifyResult:
    run_dir = artifacts.create(state.runs)
    run_dir.artifacts.mkdir(parents=True, exist_ok=True)
    history = History(state.history_db)
    started = time.time()
    started_at = utc_iso(started)
    history.record_start(
        run_id=run_dir.run_id,
        kind="verify",
        target=target,
        inventory=str(inventory.source),
        limit=inventory.limit,
        check=False,
        started_at=started_at,
        artifacts=str(run_dir.artifacts),
    )
    report = run_dir.artifacts / "junit.xml"
    reports_dir = run_dir.artifacts / "reports"
    env = {
        "ANSIBLE_CONFIG": str(project_root() / "ansible.cfg"),
        "PYTHONDONTWRITEBYTECODE": "1",
        # testinfra's ansible backend runs `ansible-inventory` from PATH: use the one beside this interpreter,
        # so `.venv/bin/toolkit verify` works without an activated virtualenv (as converge does).
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        # Suites that measure something (a Lynis score) leave it here as JSON for the summary.
        REPORTS_ENV: str(reports_dir),
    }
    completed = subprocess.run(
        pytest_command(suites, inventory, report),
        cwd=project_root(),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    (run_dir.artifacts / "stdout").write_text(completed.stdout + completed.stderr)
    duration = time.time() - started
    error = ""
    if report.exists():
        verdicts, failures = parse_junit(report, inventory.hosts)
    else:
        verdicts, failures = {h: HostVerdict() for h in inventory.hosts}, []
        tail = [line for line in (completed.stdout + completed.stderr).splitlines() if line.strip()][-3:]
        error = "pytest did not run: " + " | ".join(tail)
    result = VerifyResult(
        run_id=run_dir.run_id,
        target=target,
        inventory=str(inventory.source),
        limit=inventory.limit,
        suites=[str(s.relative_to(project_root())) for s in suites],
        started_at=started_at,
        duration=duration,
        exit_code=decide_verify_exit(verdicts, completed.returncode),
        hosts=verdicts,
        failures=failures,
        artifacts=run_dir.artifacts,
        error=error,
        lynis={host: r for host, r in read_host_reports(reports_dir).items() if host in inventory.hosts},
    )
    history.finish(
        run_dir.run_id,
        finished_at=utc_iso(),
        duration=duration,
        status=result.status,
        exit_code=int(result.exit_code),
        counts=(
            len(verdicts),
            sum(v.passed for v in verdicts.values()),
            0,
            sum(v.failed for v in verdicts.values()),
            sum(1 for v in verdicts.values() if v.unreachable),
        ),
        detail=result.to_dict(),
        error=error,
    )
    artifacts.rotate(state.runs, keep_runs, current=run_dir.run_id, active=history.active_run_ids())
    return result
