"""What a check-mode run found on each host: drifted resources, handlers that would run, coverage.

A ``DriftCollector`` observes the redacted events of a ``--check --diff`` run (it is an observer of
``run_playbook``, beside the live view). A resource is one task on one host, or one changed item of a
looped task, named ``role : task [item]`` and attributed to the service whose play ran it.
"""

from dataclasses import dataclass, field

from toolkit.runner.events import HandlerStarted, RunEvent, TaskResult
from toolkit.services import ServiceCoverage

HIDDEN_DIFF = "(hidden: the task is no_log)"


@dataclass(frozen=True)
class Resource:
    """A managed resource that a converge would change: what differs from the code."""

    host: str
    service: str
    task: str  # "role : task name", as Ansible prints it
    item: str  # the loop item's label, '' for a task without loop
    action: str
    diff: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.host, self.service, self.task, self.item)

    @property
    def label(self) -> str:
        return f"{self.task} [{self.item}]" if self.item else self.task


@dataclass
class DriftCollector:
    """Collects drifted resources from a check-mode run's events (use ``observe`` as the run's observer)."""

    play_services: dict[str, str]
    default_service: str
    resources: list[Resource] = field(default_factory=list)
    handlers: list[Resource] = field(default_factory=list)
    _handler_uuids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # (host, service) pairs that ran at least one task: where "no drift" is a finding, not an absence.
        self.services = ServiceCoverage(self.play_services, self.default_service)

    @property
    def coverage(self) -> set[tuple[str, str]]:
        return self.services.pairs

    def observe(self, event: RunEvent) -> None:
        self.services.observe(event)
        if isinstance(event, HandlerStarted):
            self._handler_uuids.add(event.task_uuid)
        elif isinstance(event, TaskResult) and event.status == "changed":
            found = self._resources(event)
            if event.task_uuid and event.task_uuid in self._handler_uuids:
                # A handler would run because something above drifted: a consequence, not a resource.
                self.handlers.extend(found)
            else:
                self.resources.extend(found)

    def _resources(self, event: TaskResult) -> list[Resource]:
        service = self.play_services.get(event.play.strip(), self.default_service)
        task = f"{event.role} : {event.task}" if event.role else event.task
        diff = HIDDEN_DIFF if event.censored else event.diff
        if event.items:
            return [
                Resource(
                    event.host, service, task, item.label, event.action, HIDDEN_DIFF if event.censored else item.diff
                )
                for item in event.items
            ]
        return [Resource(event.host, service, task, "", event.action, diff)]
