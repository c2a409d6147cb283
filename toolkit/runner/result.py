"""The outcome of a run and the one place where it becomes an exit code."""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolkit.exit_codes import ExitCode
from toolkit.runner.events import HostStats, TaskResult

# playbooks/tasks/batch_gate.yml's task: when it fails, the budget and health gate stopped a rolling play.
BATCH_GATE_TASK = "Gate | budget and health before the next batch"


def decide_exit_code(
    status: str, stats: dict[str, HostStats], *, canceled: bool = False, gate_stopped: bool = False
) -> ExitCode:
    """Map a run's runner status and recap to a documented exit code.

    Precedence: interrupted (130) > a host unreachable (4: the run's coverage is incomplete, so its
    other results cannot be trusted as a whole) > stopped between batches by the budget and health gate
    (6) > a task failed (1) > success (0). A run that failed without any recap (the playbook did not
    parse, ansible-playbook crashed) is a failure too: a non-successful runner status never maps to 0.
    """
    if canceled or status == "canceled":
        return ExitCode.INTERRUPTED
    if any(host.unreachable for host in stats.values()):
        return ExitCode.UNREACHABLE
    if gate_stopped:
        return ExitCode.BUDGET_GATE
    if any(host.failed for host in stats.values()):
        return ExitCode.TASK_FAILED
    if status != "successful":
        return ExitCode.TASK_FAILED
    return ExitCode.OK


@dataclass(frozen=True)
class TaskRef:
    host: str
    task: str
    action: str
    message: str = ""

    @classmethod
    def of(cls, result: TaskResult) -> "TaskRef":
        return cls(result.host, result.task, result.action, result.message)


@dataclass(frozen=True)
class HostSummary:
    stats: HostStats
    duration: float


@dataclass(frozen=True)
class RunResult:
    """Everything toolkit reports about one run (the --json document is built from it)."""

    run_id: str
    kind: str
    target: str
    inventory: str
    limit: str | None
    check: bool
    status: str
    exit_code: ExitCode
    started_at: str
    duration: float
    hosts: dict[str, HostSummary]
    changed: list[TaskRef] = field(default_factory=list)
    failed: list[TaskRef] = field(default_factory=list)
    unreachable: list[TaskRef] = field(default_factory=list)
    # Messages of debug tasks: what a playbook wanted the operator to read (e.g. a pending restart).
    notes: list[TaskRef] = field(default_factory=list)
    artifacts: Path | None = None
    error: str = ""

    @property
    def changed_count(self) -> int:
        return sum(host.stats.changed for host in self.hosts.values())

    def totals(self) -> HostStats:
        fields = HostStats.__dataclass_fields__
        return HostStats(**{name: sum(getattr(h.stats, name) for h in self.hosts.values()) for name in fields})

    def unreachable_hosts(self) -> list[str]:
        return [name for name, host in self.hosts.items() if host.stats.unreachable]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "target": self.target,
            "inventory": self.inventory,
            "limit": self.limit,
            "check": self.check,
            "status": self.status,
            "exit_code": int(self.exit_code),
            "started_at": self.started_at,
            "duration": round(self.duration, 3),
            "hosts": {
                name: {**asdict(host.stats), "duration": round(host.duration, 3)} for name, host in self.hosts.items()
            },
            "totals": asdict(self.totals()),
            "changed_tasks": [asdict(ref) for ref in self.changed],
            "failed_tasks": [asdict(ref) for ref in self.failed],
            "unreachable": [asdict(ref) for ref in self.unreachable],
            "notes": [asdict(ref) for ref in self.notes],
            "artifacts": str(self.artifacts) if self.artifacts else None,
            "error": self.error,
        }
