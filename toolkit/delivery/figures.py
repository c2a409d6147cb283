"""The four figures DORA popularised, read from what toolkit records (runs and drift history).

- A deployment is a finished ``toolkit converge`` that was not in check mode and not a drift remediation
  (those are restorations, counted apart). Refused runs (bad input, lock held, budget gate) never ran and are
  not recorded.
- A deployment failed when a task failed or a host was unreachable (exit 1 or 4); an interrupted run (130)
  was stopped by a person and is not a failure of the change.
- Time to restore, two ways: a failed deployment -> the next successful converge of the same service and
  inventory; a drifted resource -> the run that saw it resolved (remediated, or fixed otherwise).
"""

import datetime as dt
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from toolkit.drift.store import DriftRecord
from toolkit.exit_codes import ExitCode
from toolkit.runner.history import RunRecord

FAILED_EXITS = frozenset({int(ExitCode.TASK_FAILED), int(ExitCode.UNREACHABLE)})
REMEDIATION_NOTE = "drift --remediate"


def _time(iso: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Restores:
    """Durations (seconds) of the restorations that ended, and how many have not ended yet."""

    durations: list[float]
    still_open: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": len(self.durations),
            "open": self.still_open,
            "median_seconds": round(statistics.median(self.durations), 1) if self.durations else None,
            "max_seconds": round(max(self.durations), 1) if self.durations else None,
        }


@dataclass
class ServiceFigures:
    deployments: int = 0
    failed: int = 0
    changed: int = 0


@dataclass
class DeliveryFigures:
    since: dt.datetime
    until: dt.datetime
    deployments: int = 0
    changed: int = 0  # deployments that changed something
    failed: int = 0
    remediations: int = 0
    per_service: dict[str, ServiceFigures] = field(default_factory=dict)
    failed_change_restores: Restores = field(default_factory=lambda: Restores([], 0))
    drift_restores: Restores = field(default_factory=lambda: Restores([], 0))

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400

    @property
    def deployments_per_day(self) -> float:
        return self.deployments / self.days if self.days > 0 else 0.0

    @property
    def change_failure_rate(self) -> float | None:
        return self.failed / self.deployments if self.deployments else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(timespec="seconds"),
            "until": self.until.isoformat(timespec="seconds"),
            "days": round(self.days, 3),
            "deployments": self.deployments,
            "deployments_per_day": round(self.deployments_per_day, 3),
            "changed": self.changed,
            "failed": self.failed,
            "change_failure_rate": None if self.change_failure_rate is None else round(self.change_failure_rate, 4),
            "remediations": self.remediations,
            "time_to_restore": {
                "failed_change": self.failed_change_restores.to_dict(),
                "drift": self.drift_restores.to_dict(),
            },
            "services": {name: figures.__dict__ for name, figures in sorted(self.per_service.items())},
        }


def _is_change(run: RunRecord) -> bool:
    return run.kind == "converge" and not run.check_mode and run.finished_at is not None


def _is_remediation(run: RunRecord) -> bool:
    return (run.note or "").startswith(REMEDIATION_NOTE)


def _failed_change_restores(runs: list[RunRecord]) -> Restores:
    """Each failed deployment -> the first later successful converge (remediations too) of its service."""
    changes = sorted((r for r in runs if _is_change(r)), key=lambda r: r.started_at)
    durations: list[float] = []
    still_open = 0
    for index, run in enumerate(changes):
        if run.exit_code not in FAILED_EXITS or _is_remediation(run):
            continue
        fixed = next(
            (
                later
                for later in changes[index + 1 :]
                if later.target == run.target and later.inventory == run.inventory and later.exit_code == 0
            ),
            None,
        )
        if fixed is None or fixed.finished_at is None or run.finished_at is None:
            still_open += 1
        else:
            durations.append((_time(fixed.finished_at) - _time(run.finished_at)).total_seconds())
    return Restores(durations, still_open)


def _drift_restores(records: Iterable[DriftRecord], since: dt.datetime) -> Restores:
    durations: list[float] = []
    still_open = 0
    for record in records:
        if record.resolved_at is None:
            still_open += 1
        elif record.resolution != "ignored" and _time(record.resolved_at) >= since:
            durations.append((_time(record.resolved_at) - _time(record.first_seen)).total_seconds())
    return Restores(durations, still_open)


def delivery_figures(
    runs: list[RunRecord], drift: Iterable[DriftRecord], *, since: dt.datetime, until: dt.datetime
) -> DeliveryFigures:
    """The figures over [since, until] from every run started since then and the drift history."""
    in_window = [r for r in runs if since <= _time(r.started_at) <= until]
    figures = DeliveryFigures(since=since, until=until)
    for run in in_window:
        if not _is_change(run):
            continue
        if _is_remediation(run):
            figures.remediations += 1
            continue
        service = figures.per_service.setdefault(run.target, ServiceFigures())
        failed = run.exit_code in FAILED_EXITS
        changed = bool(run.changed)
        figures.deployments += 1
        service.deployments += 1
        figures.failed += failed
        service.failed += failed
        figures.changed += changed
        service.changed += changed
    figures.failed_change_restores = _failed_change_restores(in_window)
    figures.drift_restores = _drift_restores(drift, since)
    return figures
