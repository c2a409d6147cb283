"""When drift runs on its own: a systemd timer, or a cron entry where systemd is not PID 1.

``install`` writes the job for one service (``toolkit drift check SERVICE ... --scheduled``), ``remove``
deletes exactly what ``install`` wrote, ``status`` reads it back. Both backends run a service at the same
wall-clock times (``calendar_for``), so an interval means the same thing wherever it runs.

Runs never overlap: systemd does not start a oneshot service that is still running, and every drift run
takes the inventory's lock (exit 5 when another run holds it), which covers cron, manual runs and both
backends at once. A run that does not happen (lock held, controller off, daemon stopped) is not retried:
the drift metrics' timestamp goes stale, and that is what alerts.

Nothing here touches the machine directly: the directories and the command runner come from a
``Machine``, which tests point into tmp_path.

One module a job: ``timing`` (intervals and their slots), ``job`` (what runs), ``machine`` (directories,
commands, backend detection), ``installed`` (the status report and toolkit's managed files), ``systemd`` and
``cron`` (each backend's files); this module holds the three operations.
"""

import os
from dataclasses import replace

from toolkit.drift.schedule.cron import cron_entries, install_cron, remove_cron
from toolkit.drift.schedule.installed import ScheduleStatus
from toolkit.drift.schedule.job import SERVICE_NAME, DriftJob, captured_environment
from toolkit.drift.schedule.machine import (
    BACKENDS,
    Backend,
    BackendChoice,
    CommandResult,
    Machine,
    detect_backend,
)
from toolkit.drift.schedule.systemd import install_systemd, remove_systemd, systemd_installed, systemd_status
from toolkit.drift.schedule.timing import Calendar, calendar_for, format_every, parse_every
from toolkit.errors import UsageError

# What toolkit/cli/drift_schedule.py, toolkit/console.py and the tests use, and the types of its signatures.
__all__ = [
    "Backend",
    "BackendChoice",
    "Calendar",
    "CommandResult",
    "DriftJob",
    "Machine",
    "ScheduleStatus",
    "calendar_for",
    "captured_environment",
    "detect_backend",
    "format_every",
    "install",
    "parse_every",
    "remove",
    "status",
]


def install(job: DriftJob, backend: BackendChoice = "auto", machine: Machine | None = None) -> ScheduleStatus:
    """Install (or update) a service's schedule; the same job twice writes nothing the second time.

    A schedule of the same service in the other backend is removed: one service, one schedule.
    """
    machine = machine or Machine()
    chosen = detect_backend(backend, machine)
    calendar = calendar_for(job.every, job.service)  # before anything is written
    if not (job.toolkit.is_file() and os.access(job.toolkit, os.X_OK)):
        raise UsageError(f"{job.toolkit} is not an executable toolkit", hint="run scripts/setup")
    install_in = install_systemd if chosen == "systemd" else install_cron
    status = install_in(job, calendar, machine)
    moved = [
        f"removed its {other} schedule"
        for other in BACKENDS
        if other != chosen and _remove(other, job.service, machine)
    ]
    return replace(status, notes=(*moved, *status.notes))


def _remove(backend: Backend, service: str, machine: Machine) -> bool:
    if backend == "systemd":
        return remove_systemd(service, machine)
    if machine.root or machine.which("crontab"):
        return remove_cron(service, machine)
    return False


def _backends(backend: BackendChoice) -> tuple[Backend, ...]:
    return BACKENDS if backend == "auto" else (backend,)


def _check_name(service: str) -> None:
    if not SERVICE_NAME.fullmatch(service):
        raise UsageError(f"{service!r} is not a service name (letters, digits, _ and -)")


def remove(service: str, backend: BackendChoice = "auto", machine: Machine | None = None) -> bool:
    """Remove exactly toolkit's files or crontab lines for ``service``; False when there were none."""
    _check_name(service)
    machine = machine or Machine()
    removed = [_remove(chosen, service, machine) for chosen in _backends(backend)]
    return any(removed)


def status(
    service: str | None = None, backend: BackendChoice = "auto", machine: Machine | None = None
) -> list[ScheduleStatus]:
    """The schedules installed (all of them, or ``service``'s: then never empty, installed or not)."""
    machine = machine or Machine()
    found: list[ScheduleStatus] = []
    for chosen in _backends(backend):
        if chosen == "systemd":
            timers = systemd_installed(machine)
            found += [systemd_status(timer, machine) for timer in timers]
        elif machine.root or machine.which("crontab"):
            found += cron_entries(machine).values()
    if service is None:
        return sorted(found, key=lambda s: (s.service, s.backend))
    _check_name(service)
    mine = [s for s in found if s.service == service]
    return mine or [ScheduleStatus(service=service, backend=detect_backend(backend, machine), installed=False)]
