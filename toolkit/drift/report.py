"""A drift run's verdict: what drifted where, what was excused, what could not be checked, and the exit code."""

from dataclasses import asdict, dataclass, field
from typing import Any

from toolkit.drift.findings import DriftCollector, Resource
from toolkit.drift.ignore import Triage
from toolkit.exit_codes import ExitCode
from toolkit.runner.result import RunResult, TaskRef
from toolkit.slo.gate import GateDecision


def drift_exit_code(run_exit: ExitCode, drifted: bool) -> ExitCode:
    """Precedence: interrupted > unreachable (4) > a check failed (1) > drift (3) > none (0).

    A host that could not be checked is never reported as "no drift"; and an incomplete run's
    drift list is still shown, but its exit code says the coverage is incomplete.
    """
    if run_exit != ExitCode.OK:
        return run_exit
    return ExitCode.DRIFT if drifted else ExitCode.OK


_SEVERITY = [ExitCode.INTERRUPTED, ExitCode.UNREACHABLE, ExitCode.TASK_FAILED, ExitCode.DRIFT, ExitCode.OK]


def worst(*codes: ExitCode) -> ExitCode:
    return min(codes, key=lambda code: _SEVERITY.index(code) if code in _SEVERITY else 0)


@dataclass(frozen=True)
class Remediation:
    """What ``--remediate`` did: the converge of the drifted hosts and the check that followed it."""

    hosts: list[str]
    converge: RunResult
    recheck: "DriftReport | None"

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": self.hosts,
            "converge_run_id": self.converge.run_id,
            "converge_exit_code": int(self.converge.exit_code),
            "changed_tasks": [asdict(ref) for ref in self.converge.changed],
            "failed_tasks": [asdict(ref) for ref in self.converge.failed],
            "recheck": self.recheck.to_dict() if self.recheck else None,
        }


@dataclass
class DriftReport:
    target: str
    services: list[str]
    run: RunResult
    triage: Triage
    handlers: list[Resource]
    coverage: set[tuple[str, str]]
    # Filled from the history once recorded: (host, service, task, item) -> first seen (UTC, ISO 8601).
    first_seen: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    remediation: Remediation | None = None
    # What the budget gate said before remediating (None: not asked). Closed and not forced: nothing converged.
    budget_gate: GateDecision | None = None

    @property
    def remediation_refused(self) -> bool:
        return self.remediation is None and self.budget_gate is not None and not self.budget_gate.open

    @classmethod
    def build(
        cls, target: str, services: list[str], run: RunResult, collector: DriftCollector, triage: Triage
    ) -> "DriftReport":
        return cls(target, services, run, triage, collector.handlers, collector.coverage)

    @property
    def drift(self) -> list[Resource]:
        return self.triage.drift

    @property
    def unreachable_hosts(self) -> list[str]:
        return self.run.unreachable_hosts()

    @property
    def failed(self) -> list[TaskRef]:
        return self.run.failed

    @property
    def checked_hosts(self) -> list[str]:
        """Hosts whose check ran to the end: only there may absent drift be read as "resolved"."""
        return sorted(h for h, s in self.run.hosts.items() if not s.stats.unreachable and not s.stats.failed)

    @property
    def drifted_hosts(self) -> list[str]:
        return sorted({r.host for r in self.drift})

    @property
    def exit_code(self) -> ExitCode:
        """The check's verdict; after ``--remediate``, the worst of what is left and of the re-check."""
        remediation = self.remediation
        if remediation is None:
            code = drift_exit_code(self.run.exit_code, bool(self.drift))
            return ExitCode.BUDGET_GATE if code == ExitCode.DRIFT and self.remediation_refused else code
        if remediation.recheck is None:
            return worst(drift_exit_code(self.run.exit_code, bool(self.drift)), remediation.converge.exit_code)
        untouched = [r for r in self.drift if r.host not in remediation.hosts]
        return worst(drift_exit_code(self.run.exit_code, bool(untouched)), remediation.recheck.exit_code)

    @property
    def remaining_drift(self) -> list[Resource]:
        """What still drifts after this command: the check's findings, remediated hosts' from their re-check."""
        remediation = self.remediation
        if remediation is None or remediation.recheck is None:
            return self.drift
        return [r for r in self.drift if r.host not in remediation.hosts] + remediation.recheck.drift

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "drift",
            "target": self.target,
            "services": self.services,
            "run_id": self.run.run_id,
            "started_at": self.run.started_at,
            "duration": round(self.run.duration, 3),
            "exit_code": int(self.exit_code),
            "hosts": {
                host: {
                    "drifted": sum(1 for r in self.drift if r.host == host),
                    "ignored": sum(1 for r, _ in self.triage.ignored if r.host == host),
                    "unreachable": bool(summary.stats.unreachable),
                    "failed": bool(summary.stats.failed),
                }
                for host, summary in sorted(self.run.hosts.items())
            },
            "drift": [self._resource(r) for r in self.drift],
            "ignored": [{**self._resource(r), "ignore": rule.to_dict()} for r, rule in self.triage.ignored],
            "expired_ignores": [{**self._resource(r), "ignore": rule.to_dict()} for r, rule in self.triage.expired],
            "handlers": [{"host": r.host, "service": r.service, "task": r.task} for r in self.handlers],
            "unreachable": [asdict(ref) for ref in self.run.unreachable],
            "failed": [asdict(ref) for ref in self.run.failed],
            "remediation": self.remediation.to_dict() if self.remediation else None,
            "budget_gate": self.budget_gate.to_dict() if self.budget_gate else None,
            "artifacts": str(self.run.artifacts) if self.run.artifacts else None,
            "error": self.run.error,
        }

    def _resource(self, resource: Resource) -> dict[str, Any]:
        return {
            "host": resource.host,
            "service": resource.service,
            "task": resource.task,
            "item": resource.item,
            "action": resource.action,
            "diff": resource.diff,
            "first_seen": self.first_seen.get(resource.key),
        }
