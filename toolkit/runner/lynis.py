"""Lynis, the auditing tool `toolkit verify hardening` scores hosts with: the scan and its report.

Lynis (Debian package `lynis`) writes its findings to a report file of ``key=value`` lines, where list
values repeat the key with ``[]`` (``warning[]=PKGS-7392|Found one or more vulnerable packages.|-|-|``).
This module holds the command that runs a scan on a host and prints that report, and the parser that turns
the report into a :class:`LynisReport`. Who runs the command (``podman exec``, ``ssh``, testinfra) is up to
the caller: scripts/lynis-scan and tests/infra/test_hardening.py both use it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# `toolkit verify` points the suites at a directory through this variable; a suite that scans a host writes
# lynis-<host>.json there (write_host_report) and the runner reads them back (read_host_reports).
REPORTS_ENV = "TOOLKIT_VERIFY_REPORTS"

# Where the scan writes its report on the host (a fixed path, so the scan's own cleanup is simple).
REPORT_PATH = "/var/tmp/toolkit-lynis-report.dat"
LOG_PATH = "/var/tmp/toolkit-lynis.log"


@dataclass(frozen=True)
class Finding:
    """One warning or suggestion: the Lynis test that raised it, what it says, and its details."""

    test: str
    message: str
    details: str = ""

    @classmethod
    def parse(cls, value: str) -> Finding:
        # TEST-ID|message|details|solution| ; the details and solution are "-" when empty.
        parts = value.split("|")
        test = parts[0].strip()
        message = parts[1].strip() if len(parts) > 1 else ""
        extra = [part.strip() for part in parts[2:] if part.strip() and part.strip() != "-"]
        return cls(test=test, message=message, details="; ".join(extra))

    def __str__(self) -> str:
        return f"{self.test}: {self.message}" + (f" ({self.details})" if self.details else "")


@dataclass
class LynisReport:
    """What a Lynis scan concluded about one host."""

    hardening_index: int | None
    lynis_version: str = ""
    tests_performed: int | None = None
    warnings: list[Finding] = field(default_factory=list)
    suggestions: list[Finding] = field(default_factory=list)
    skipped_tests: list[str] = field(default_factory=list)

    def passes(self, min_index: int) -> bool:
        """Whether the host reaches ``min_index`` with no warning."""
        return self.hardening_index is not None and self.hardening_index >= min_index and not self.warnings

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["warnings"] = [asdict(f) for f in self.warnings]
        document["suggestions"] = [asdict(f) for f in self.suggestions]
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> LynisReport:
        index = document.get("hardening_index")
        tests = document.get("tests_performed")
        return cls(
            hardening_index=int(index) if isinstance(index, int) else None,
            lynis_version=str(document.get("lynis_version", "")),
            tests_performed=int(tests) if isinstance(tests, int) else None,
            warnings=[Finding(**f) for f in document.get("warnings", [])],
            suggestions=[Finding(**f) for f in document.get("suggestions", [])],
            skipped_tests=[str(t) for t in document.get("skipped_tests", [])],
        )


class LynisReportError(ValueError):
    """The text is not a Lynis report (the scan did not run, or did not finish)."""


def parse_report(text: str) -> LynisReport:
    """Parse the contents of a Lynis report file (``lynis-report.dat``)."""
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key.endswith("[]"):
            lists.setdefault(key[:-2], []).append(value)
        else:
            values[key] = value
    if "report_version_major" not in values and "lynis_version" not in values:
        raise LynisReportError("not a Lynis report: no report_version_major or lynis_version line")
    index = values.get("hardening_index", "")
    tests = values.get("lynis_tests_done", "")
    return LynisReport(
        hardening_index=int(index) if index.isdigit() else None,
        lynis_version=values.get("lynis_version", ""),
        tests_performed=int(tests) if tests.isdigit() else None,
        warnings=_unique(Finding.parse(v) for v in lists.get("warning", [])),
        suggestions=_unique(Finding.parse(v) for v in lists.get("suggestion", [])),
        skipped_tests=[v for v in lists.get("skipped_test", []) if v],
    )


def _unique(findings: Any) -> list[Finding]:
    """Findings in report order, each once (Lynis repeats some when a test runs twice)."""
    seen: dict[Finding, None] = {}
    for finding in findings:
        seen.setdefault(finding, None)
    return list(seen)


def scan_script() -> str:
    """A POSIX shell script that runs a full Lynis audit as root and prints only the report file.

    Lynis' screen output goes to a log on the host, so stdout carries the report alone; the exit status is
    Lynis' own (non-zero when it could not run). ``--quick`` skips the pauses between sections, not tests.
    """
    report = shlex.quote(REPORT_PATH)
    log = shlex.quote(LOG_PATH)
    return (
        f"rm -f {report} && "
        f"lynis audit system --quick --no-colors --no-log --report-file {report} >{log} 2>&1; "
        f"status=$?; cat {report} 2>/dev/null; rm -f {report}; exit $status"
    )


def scan_command(prefix: list[str]) -> list[str]:
    """The argv that runs :func:`scan_script` through ``prefix`` (e.g. ``["podman", "exec", "web-1"]``)."""
    return [*prefix, "sh", "-c", scan_script()]


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def write_host_report(directory: Path, host: str, report: LynisReport) -> Path:
    """Save one host's report as lynis-<host>.json in ``directory`` (for ``toolkit verify``)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"lynis-{_SAFE_NAME.sub('_', host)}.json"
    path.write_text(json.dumps({"host": host, **report.to_dict()}, indent=2) + "\n")
    return path


def read_host_reports(directory: Path) -> dict[str, LynisReport]:
    """Every report write_host_report saved in ``directory``, by host; unreadable files are left out."""
    reports: dict[str, LynisReport] = {}
    for path in sorted(directory.glob("lynis-*.json")) if directory.is_dir() else []:
        try:
            document = json.loads(path.read_text())
            reports[str(document["host"])] = LynisReport.from_dict(document)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return reports
