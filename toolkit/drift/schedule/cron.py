"""cron: /etc/cron.d as root, the user's crontab otherwise; the entry rendered, installed, read back and removed."""

import re
import shlex
from dataclasses import replace

from toolkit.drift.schedule.installed import (
    HEADER,
    ScheduleStatus,
    is_ours,
    read_meta,
    refuse_foreign,
    when_text,
    write_if_changed,
)
from toolkit.drift.schedule.job import DriftJob
from toolkit.drift.schedule.machine import Machine, first_line
from toolkit.drift.schedule.timing import Calendar
from toolkit.errors import ToolkitError, UsageError
from toolkit.exit_codes import ExitCode

_BEGIN = re.compile(r"^# >>> toolkit drift schedule: (?P<service>\S+) >>>")
_END = re.compile(r"^# <<< toolkit drift schedule: (?P<service>\S+) <<<$")


def cron_quote(word: str) -> str:
    """One shell word that survives cron first: cron turns an unescaped % into a newline, and \\% into %.

    Each %-free piece is shell-quoted on its own and the pieces are joined by \\%, so no backslash of a
    piece can ever stand right before that escape.
    """
    return "\\%".join(shlex.quote(piece) if piece else "" for piece in word.split("%")) or "''"


def cron_command(job: DriftJob) -> str:
    """The command part of the crontab line: cd, the environment, the run, output appended to the log.

    timeout(1) stops a hung run as TimeoutStartSec= does under systemd (SIGTERM, SIGKILL a minute later).
    """
    assignments = " ".join(f"{name}={cron_quote(value)}" for name, value in job.environment().items())
    command = " ".join(cron_quote(word) for word in job.argv())
    log = cron_quote(str(job.log))
    return f"cd {cron_quote(str(job.project))} && {assignments} timeout -k 60 {job.timeout} {command} >>{log} 2>&1"


def _cron_lines(job: DriftJob, calendar: Calendar, user: str | None) -> list[str]:
    """The job's lines; ``user`` is the cron.d user field (a personal crontab has none)."""
    who = f" {user}" if user else ""
    return [
        HEADER,
        job.meta(),
        f"# Runs {calendar.text}; output appended to {job.log}.",
        f"{calendar.cron}{who} {cron_command(job)}",
    ]


def render_cron_file(job: DriftJob, calendar: Calendar, user: str) -> str:
    return "\n".join(_cron_lines(job, calendar, user)) + "\n"


def crontab_block(job: DriftJob, calendar: Calendar) -> list[str]:
    begin = f"# >>> toolkit drift schedule: {job.service} >>> (toolkit's lines: `toolkit drift schedule` edits them)"
    return [begin, *_cron_lines(job, calendar, None), f"# <<< toolkit drift schedule: {job.service} <<<"]


def replace_crontab_block(text: str, service: str, block: list[str] | None) -> str:
    """The crontab with ``service``'s block replaced in place (or appended, or removed); other lines kept."""
    kept: list[str] = []
    position: int | None = None
    inside = False
    for line in text.splitlines():
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin and begin["service"] == service:
            inside = True
            position = len(kept) if position is None else position
        elif inside:
            inside = not (end and end["service"] == service)
        else:
            kept.append(line)
    if inside:
        raise UsageError(
            f"the crontab has the start of toolkit's block for {service} but not its end: not touching it",
            hint=f"crontab -e: remove the lines of `toolkit drift schedule: {service}`, then try again",
        )
    if block:
        at = len(kept) if position is None else position
        kept[at:at] = block
    return "\n".join(kept) + "\n" if kept else ""


def _crontab_blocks(text: str) -> dict[str, str]:
    """Each toolkit block of a crontab (service -> its lines), for status."""
    blocks: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            current = begin["service"]
            blocks[current] = []
        elif end:
            current = None
        elif current is not None:
            blocks[current].append(line)
    return {service: "\n".join(lines) for service, lines in blocks.items()}


def _read_crontab(machine: Machine) -> str | None:
    """The user's crontab ("" when there is none); None where there is no crontab command."""
    if not machine.which("crontab"):
        return None
    listed = machine.run(["crontab", "-l"], None)
    if listed.returncode == 0:
        return listed.stdout
    if "no crontab" in listed.stderr:
        return ""
    raise ToolkitError(f"crontab -l failed: {first_line(listed.stderr)}", exit_code=ExitCode.TASK_FAILED)


def _write_crontab(machine: Machine, text: str) -> None:
    written = machine.run(["crontab", "-"], text)
    if written.returncode != 0:
        raise ToolkitError(f"crontab - failed: {first_line(written.stderr)}", exit_code=ExitCode.TASK_FAILED)


def _cron_notes(machine: Machine) -> tuple[str, ...]:
    if not machine.cron_daemon_installed():
        return ("no cron daemon is installed (cron or crond): nothing runs the entry until one is",)
    if not machine.cron_daemon_running():
        return ("no cron daemon is running: nothing runs the entry until one starts",)
    return ()


def install_cron(job: DriftJob, calendar: Calendar, machine: Machine) -> ScheduleStatus:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    if machine.root:
        path = machine.cron_dir / job.unit
        refuse_foreign(path)
        changed = write_if_changed(path, render_cron_file(job, calendar, machine.user))
    else:
        current = _read_crontab(machine)
        if current is None:
            raise UsageError("there is no crontab command here", hint="apt-get install cron")
        wanted = replace_crontab_block(current, job.service, crontab_block(job, calendar))
        changed = wanted != current
        if changed:
            _write_crontab(machine, wanted)
    return replace(cron_entries(machine)[job.service], changed=changed)


def cron_entries(machine: Machine) -> dict[str, ScheduleStatus]:
    """toolkit's cron schedules by service: its cron.d files as root, its crontab blocks otherwise."""
    found: dict[str, tuple[str, str]] = {}  # service -> (its lines, where they are)
    if machine.root:
        directory = machine.cron_dir
        for path in sorted(directory.glob("toolkit-drift-*")) if directory.is_dir() else []:
            if is_ours(path):
                found[path.name.removeprefix("toolkit-drift-")] = (path.read_text(), str(path))
    else:
        for service, text in _crontab_blocks(_read_crontab(machine) or "").items():
            found[service] = (text, f"crontab of {machine.user}")
    entries: dict[str, ScheduleStatus] = {}
    for service, (text, where) in found.items():
        meta = read_meta(text)
        entry = next((line for line in text.splitlines() if line and not line.startswith("#")), "")
        if meta is None or not entry:
            continue
        log = entry.rpartition(" >>")[2].removesuffix(" 2>&1").replace("\\%", "%")
        entries[service] = ScheduleStatus(
            service=service,
            backend="cron",
            installed=True,
            every=meta.every,
            when=when_text(meta),
            calendar=" ".join(entry.split()[:5]),
            command=meta.command,
            files=(where,),
            log=" ".join(shlex.split(log)),
            notes=_cron_notes(machine),
        )
    return entries


def remove_cron(service: str, machine: Machine) -> bool:
    if machine.root:
        path = machine.cron_dir / f"toolkit-drift-{service}"
        if not is_ours(path):
            return False
        path.unlink()
        return True
    current = _read_crontab(machine)
    if not current:
        return False
    wanted = replace_crontab_block(current, service, None)
    if wanted == current:
        return False
    _write_crontab(machine, wanted)
    return True
