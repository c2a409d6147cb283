"""systemd: a oneshot service and its timer, rendered, installed, read back and removed."""

import re
from pathlib import Path

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
from toolkit.drift.schedule.timing import MINUTE, Calendar, format_every
from toolkit.errors import UsageError


def systemd_quote(word: str, *, exec_line: bool = True) -> str:
    """One word as systemd's unit parser reads it back exactly.

    Specifiers are expanded everywhere (% -> %%) and $VAR in ExecStart (so $ -> $$ there); a word with
    anything but safe characters is double-quoted with C escapes for backslash and quote. A lone ";" would
    separate commands in ExecStart.
    """
    escaped = word.replace("%", "%%")
    if exec_line:
        escaped = escaped.replace("$", "$$")
        if word == ";":
            return "\\;"
    if escaped and re.fullmatch(r"[A-Za-z0-9_@+=:,./%$-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd_units(job: DriftJob, calendar: Calendar, *, user_mode: bool, user: str) -> dict[str, str]:
    """The service and timer unit files of a job, by file name (``user_mode``: for ``systemctl --user``)."""
    if re.search(r"[\\\"']", str(job.toolkit)):
        # systemd refuses such an executable path ("contains special characters"), however it is quoted.
        raise UsageError(f"systemd cannot run {job.toolkit}: its path holds a quote or a backslash")
    environment = " ".join(systemd_quote(f"{k}={v}", exec_line=False) for k, v in job.environment().items())
    # No $VAR expansion in the executable's path, so its $ stays single; the arguments get $$.
    executable, *arguments = job.argv()
    exec_start = " ".join([systemd_quote(executable, exec_line=False), *map(systemd_quote, arguments)])
    head = [HEADER, job.meta(), ""]
    # The user manager has no network-online.target, and its services run as that user.
    system_only = not user_mode
    service = [
        *head,
        "[Unit]",
        f"Description=toolkit drift check {job.service} (scheduled every {format_every(job.every)})",
        *(["Wants=network-online.target", "After=network-online.target"] if system_only else []),
        "",
        "[Service]",
        "Type=oneshot",
        *([f"User={user}"] if system_only else []),
        f"WorkingDirectory={job.project.as_posix().replace('%', '%%')}",
        f"Environment={environment}",
        f"ExecStart={exec_start}",
        '# Exit 3 is "drift found": the run worked and its finding is in the history and the metrics, so the',
        "# unit must not be marked failed for it. Every other code still fails it: 1 a check failed, 2 bad input,",
        "# 4 a host unreachable, 5 another run held the inventory's lock (this one was skipped), 130 stopped.",
        "SuccessExitStatus=3",
        "# A hung run is stopped (SIGTERM: toolkit cancels the run) after the interval, or an hour if longer.",
        f"TimeoutStartSec={job.timeout}",
        "# Drift is background work: it must not slow down the controller's interactive use.",
        "Nice=10",
        "CPUSchedulingPolicy=batch",
        "IOSchedulingClass=best-effort",
        "IOSchedulingPriority=7",
    ]
    timer = [
        *head,
        "[Unit]",
        f"Description=Run toolkit drift check {job.service} {calendar.text}",
        "",
        "[Timer]",
        f"OnCalendar={calendar.systemd}",
        "# The cron backend's slots. A slot missed while the controller was off runs once at boot (Persistent);",
        "# one that comes while the previous run is still going is skipped (a oneshot is never started twice).",
        "Persistent=true",
        "# Both at most a tenth of the interval, so a run never slips into the next slot.",
        f"AccuracySec={min(MINUTE, job.every // 10)}s",
        f"RandomizedDelaySec={min(5 * MINUTE, job.every // 10)}s",
        "FixedRandomDelay=true",
        f"Unit={job.unit}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    return {f"{job.unit}.service": "\n".join(service) + "\n", f"{job.unit}.timer": "\n".join(timer) + "\n"}


def install_systemd(job: DriftJob, calendar: Calendar, machine: Machine) -> ScheduleStatus:
    directory = machine.systemd_dir
    units = render_systemd_units(job, calendar, user_mode=not machine.root, user=machine.user)
    for name in units:
        refuse_foreign(directory / name)
    changed = [name for name, text in units.items() if write_if_changed(directory / name, text)]
    timer = f"{job.unit}.timer"
    if changed:
        machine.systemctl("daemon-reload")
        machine.systemctl("enable", timer)
        machine.systemctl("restart", timer)  # a running timer recomputes its next slot
    else:
        machine.systemctl("enable", "--now", timer)
    return systemd_status(directory / timer, machine, changed=bool(changed))


def systemd_status(timer: Path, machine: Machine, *, changed: bool = False) -> ScheduleStatus:
    service_file = timer.with_suffix(".service")
    meta = read_meta(service_file.read_text()) if service_file.is_file() else None
    service = meta.service if meta else timer.stem.removeprefix("toolkit-drift-")
    on_calendar = re.search(r"^OnCalendar=(.*)$", timer.read_text(), re.M)
    user_flag = "" if machine.root else " --user"
    times: dict[str, str] = {}
    notes: list[str] = []
    if machine.systemd_booted.is_dir():
        shown = machine.systemctl("show", "-p", "NextElapseUSecRealtime,LastTriggerUSec", timer.name, check=False)
        if shown.returncode == 0:
            pairs = (line.partition("=") for line in shown.stdout.splitlines())
            times = {key: value for key, _, value in pairs if value and value != "n/a"}
        else:
            notes.append(f"systemctl{user_flag} show failed: {first_line(shown.stderr)}")
    if not machine.root and not (machine.linger_dir / machine.user).exists():
        notes.append(f"user timers run only while {machine.user} is logged in: loginctl enable-linger {machine.user}")
    return ScheduleStatus(
        service=service,
        backend="systemd",
        installed=True,
        every=meta.every if meta else None,
        when=when_text(meta) if meta else None,
        calendar=on_calendar[1] if on_calendar else None,
        command=meta.command if meta else None,
        files=(str(service_file), str(timer)),
        log=f"journalctl{user_flag} -u {service_file.name}",
        next_run=times.get("NextElapseUSecRealtime"),
        last_run=times.get("LastTriggerUSec"),
        changed=changed,
        notes=tuple(notes),
    )


def remove_systemd(service: str, machine: Machine) -> bool:
    directory = machine.systemd_dir
    unit = f"toolkit-drift-{service}"
    ours = [path for path in (directory / f"{unit}.timer", directory / f"{unit}.service") if is_ours(path)]
    if not ours:
        return False
    booted = machine.systemd_booted.is_dir()
    if booted:
        machine.systemctl("disable", "--now", f"{unit}.timer", check=False)
        # Persistent='s last-run stamp: left behind, it would fire a reinstalled timer at once for old slots.
        machine.systemctl("clean", "--what=state", f"{unit}.timer", check=False)
    for path in ours:
        path.unlink()
    if booted:
        machine.systemctl("daemon-reload")
        machine.systemctl("reset-failed", f"{unit}.service", check=False)
    return True


def systemd_installed(machine: Machine) -> list[Path]:
    directory = machine.systemd_dir
    return sorted(p for p in directory.glob("toolkit-drift-*.timer") if is_ours(p)) if directory.is_dir() else []
