"""Drift results as Prometheus metrics, for node_exporter's textfile collector.

One file per drift target (``toolkit_drift_<target>.prom``), rewritten atomically (a temporary file in
the same directory, then rename) so the collector never reads half a file. A missed or hung run leaves
the file as it was: ``toolkit_drift_last_run_timestamp_seconds`` ages and ToolkitDriftCheckStale fires.
"""

from collections.abc import Iterable
from pathlib import Path

from toolkit.drift.report import DriftReport
from toolkit.metrics.textfile import file_name, labels, number, write_atomically

PREFIX = "toolkit_drift_"


def render(report: DriftReport, finished_at: float) -> str:
    """The exposition text for one drift run (every checked host and service, zeros included)."""
    target = report.target
    drift: dict[tuple[str, str], int] = {}
    ignored: dict[tuple[str, str], int] = {}
    for resource in report.drift:
        drift[(resource.host, resource.service)] = drift.get((resource.host, resource.service), 0) + 1
    for resource, _ in report.triage.ignored:
        ignored[(resource.host, resource.service)] = ignored.get((resource.host, resource.service), 0) + 1
    pairs = sorted(report.coverage | set(drift) | set(ignored))
    hosts = sorted(report.run.hosts)
    unreachable = set(report.unreachable_hosts)
    failed = {ref.host for ref in report.failed}

    lines: list[str] = []

    def family(name: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
        lines.append(f"# HELP {PREFIX}{name} {help_text}")
        lines.append(f"# TYPE {PREFIX}{name} gauge")
        lines.extend(f"{PREFIX}{name}{label_set} {number(value)}" for label_set, value in samples)

    family(
        "resources",
        "Managed resources that differ from the code, per host and service, at the last drift run.",
        ((labels(target=target, host=h, service=s), drift.get((h, s), 0)) for h, s in pairs),
    )
    family(
        "ignored_resources",
        "Drifted resources silenced by an unexpired drift-ignore.yml entry.",
        ((labels(target=target, host=h, service=s), ignored.get((h, s), 0)) for h, s in pairs),
    )
    family(
        "host_unreachable",
        "1 if the host could not be reached by the last drift run (its drift is unknown).",
        ((labels(target=target, host=h), float(h in unreachable)) for h in hosts),
    )
    family(
        "host_check_failed",
        "1 if a task failed on the host during the last drift run (its check is incomplete).",
        ((labels(target=target, host=h), float(h in failed)) for h in hosts),
    )
    family(
        "last_run_timestamp_seconds",
        "When the last drift run finished (Unix time).",
        [(labels(target=target), finished_at)],
    )
    family(
        "last_run_duration_seconds",
        "How long the last drift run took.",
        [(labels(target=target), report.run.duration)],
    )
    family(
        "last_run_exit_code",
        "The last drift run's exit code: 0 no drift, 3 drift, 1 a check failed, 4 a host unreachable.",
        [(labels(target=target), float(int(report.exit_code)))],
    )
    return "\n".join(lines) + "\n"


def write(directory: Path, report: DriftReport, finished_at: float) -> Path:
    """Write the target's file atomically; returns its path."""
    return write_atomically(directory / file_name(PREFIX, report.target), render(report, finished_at))
