"""What is installed, as reported by status and install: ``ScheduleStatus``, and toolkit's managed files.

Every file toolkit writes starts with ``HEADER`` and carries the job's meta comment (``DriftJob.meta``);
that is how ``status`` reads a schedule back and how ``remove`` knows a file is toolkit's to delete.
"""

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from toolkit.drift.schedule.machine import Backend
from toolkit.drift.schedule.timing import calendar_for, format_every
from toolkit.errors import UsageError

HEADER = "# Managed by `toolkit drift schedule`: do not edit; `toolkit drift schedule install|remove` rewrites it."
_META = re.compile(r"^# toolkit-drift: service=(?P<service>\S+) every=(?P<every>\d+) command=(?P<command>.*)$", re.M)


@dataclass(frozen=True)
class ScheduleStatus:
    service: str
    backend: Backend
    installed: bool
    every: int | None = None
    when: str | None = None  # for people: "every hour at minute 17"
    calendar: str | None = None  # as installed: the cron time fields, or OnCalendar=
    command: str | None = None  # the drift command line (shell-quoted)
    files: tuple[str, ...] = ()  # what holds the schedule
    log: str | None = None  # where a run's output goes
    next_run: str | None = None  # systemd only: the timer's next and last trigger
    last_run: str | None = None
    changed: bool = False  # install: whether anything was written
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["files"] = list(self.files)
        document["notes"] = list(self.notes)
        document["every_text"] = format_every(self.every) if self.every else None
        return document


@dataclass(frozen=True)
class _Meta:
    service: str
    every: int
    command: str


def read_meta(text: str) -> _Meta | None:
    match = _META.search(text)
    return _Meta(match["service"], int(match["every"]), match["command"]) if match else None


def when_text(meta: _Meta) -> str | None:
    try:
        return calendar_for(meta.every, meta.service).text
    except UsageError:
        return None  # written by another version of toolkit, with intervals this one does not know


def is_ours(path: Path) -> bool:
    try:
        return path.read_text().startswith(HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write atomically (a dotted temporary name: neither cron nor systemd reads it) unless already so."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.chmod(mode)  # cron skips a cron.d file that is group- or other-writable
    temporary.replace(path)
    return True


def refuse_foreign(path: Path) -> None:
    if path.exists() and not is_ours(path):
        raise UsageError(f"{path} exists and was not written by toolkit: leaving it alone", hint=f"move {path} away")
