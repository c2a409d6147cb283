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
"""

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from toolkit.errors import ToolkitError, UsageError
from toolkit.exit_codes import ExitCode
from toolkit.paths import project_root, state_paths

Backend = Literal["systemd", "cron"]
BackendChoice = Literal["auto", "systemd", "cron"]
BACKENDS: tuple[Backend, ...] = ("systemd", "cron")

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
DAILY_HOUR = 3  # a daily run starts at 03:MM, MM from the service's name (calendar_for)

_UNITS = {"s": 1, "m": MINUTE, "min": MINUTE, "h": HOUR, "d": DAY}
_EVERY = re.compile(r"(?P<count>\d+)\s*(?P<unit>s|m|min|h|d)", re.IGNORECASE)
_ALLOWED = (
    "minutes dividing an hour (1m 2m 3m 4m 5m 6m 10m 12m 15m 20m 30m), hours dividing a day (1h 2h 3h 4h 6h 8h 12h), 1d"
)
# cron.d only reads files named like run-parts scripts, and systemd unit names allow little more.
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Set at install time, these change what a run does; the scheduler's environment would not have them.
CAPTURED_ENV = ("TOOLKIT_PLAYBOOK_DIR", "TOOLKIT_TEXTFILE_DIR", "TOOLKIT_KEEP_RUNS", "ANSIBLE_VAULT_PASSWORD_FILE")
_PATH_ENV = frozenset({"TOOLKIT_PLAYBOOK_DIR", "TOOLKIT_TEXTFILE_DIR", "ANSIBLE_VAULT_PASSWORD_FILE"})
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

HEADER = "# Managed by `toolkit drift schedule`: do not edit; `toolkit drift schedule install|remove` rewrites it."
_META = re.compile(r"^# toolkit-drift: service=(?P<service>\S+) every=(?P<every>\d+) command=(?P<command>.*)$", re.M)
_BEGIN = re.compile(r"^# >>> toolkit drift schedule: (?P<service>\S+) >>>")
_END = re.compile(r"^# <<< toolkit drift schedule: (?P<service>\S+) <<<$")


# ---------------------------------------------------------------------------------------------
# Intervals and the calendar both backends share.
# ---------------------------------------------------------------------------------------------


def parse_every(text: str) -> int:
    """``15m``, ``1h``, ``2h``, ``1d`` (also ``s`` and ``min``) as seconds; at least one minute, whole minutes."""
    match = _EVERY.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"--every {text!r} is not an interval", hint="a number and a unit: 15m, 1h, 2h, 1d (s, m, h, d)"
        )
    seconds = int(match["count"]) * _UNITS[match["unit"].lower()]
    if seconds < MINUTE:
        raise UsageError(f"--every {text.strip()} is too short: the minimum is 1m")
    if seconds % MINUTE:
        raise UsageError(f"--every {text.strip()} is not a whole number of minutes (cron and timers count minutes)")
    return seconds


def format_every(seconds: int) -> str:
    """The shortest exact spelling: 900 -> 15m, 7200 -> 2h, 86400 -> 1d, 5400 -> 90m."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Calendar:
    """When a service's drift runs, in both backends' syntax."""

    cron: str  # the five time fields of a crontab line
    systemd: str  # an OnCalendar= expression
    text: str  # for people: "every 15 minutes", "every 2 hours at minute 17", "daily at 03:17"


def calendar_for(every: int, service: str) -> Calendar:
    """The fixed wall-clock slots of an interval; hourly and daily runs start at a minute taken from the name.

    crc32, not hash(): the minute must be the same in every process, or a second install would rewrite
    the schedule. Different services then rarely start together (they would contend for the inventory lock).
    """
    minute = zlib.crc32(service.encode()) % 60
    if every < HOUR and every % MINUTE == 0 and HOUR % every == 0:
        step = every // MINUTE
        text = "every minute" if step == 1 else f"every {step} minutes"
        return Calendar(f"*/{step} * * * *", f"*-*-* *:00/{step}:00", text)
    if every < DAY and every % HOUR == 0 and DAY % every == 0:
        step = every // HOUR
        text = f"every {'hour' if step == 1 else f'{step} hours'} at minute {minute}"
        return Calendar(f"{minute} */{step} * * *", f"*-*-* 00/{step}:{minute:02d}:00", text)
    if every == DAY:
        return Calendar(
            f"{minute} {DAILY_HOUR} * * *",
            f"*-*-* {DAILY_HOUR:02d}:{minute:02d}:00",
            f"daily at {DAILY_HOUR:02d}:{minute:02d}",
        )
    raise UsageError(f"--every {format_every(every)} cannot be scheduled; allowed: {_ALLOWED}")


# ---------------------------------------------------------------------------------------------
# The job: what runs, where, with which environment.
# ---------------------------------------------------------------------------------------------


def default_toolkit() -> Path:
    """The ``toolkit`` script installed beside this interpreter (the virtualenv's bin/)."""
    return Path(sys.executable).parent / "toolkit"


def captured_environment() -> dict[str, str]:
    """The settings of CAPTURED_ENV set now, paths made absolute (the job runs in the project directory)."""
    captured: dict[str, str] = {}
    for name in CAPTURED_ENV:
        value = os.environ.get(name)
        if value:
            captured[name] = str(Path(value).resolve()) if name in _PATH_ENV else value
    return captured


def _state_home() -> Path:
    return state_paths().home


@dataclass(frozen=True)
class DriftJob:
    """One service's scheduled drift run. Every path is absolute: the scheduler starts it from nowhere."""

    service: str
    every: int
    inventory: Path | None = None
    extra_args: tuple[str, ...] = ()  # e.g. ("--limit", "cassandra", "--remediate")
    toolkit: Path = field(default_factory=default_toolkit)
    project: Path = field(default_factory=project_root)
    state: Path = field(default_factory=_state_home)
    captured_env: dict[str, str] = field(default_factory=captured_environment)

    def __post_init__(self) -> None:
        if not _SERVICE_NAME.fullmatch(self.service):
            raise UsageError(
                f"service {self.service!r} cannot be scheduled: its name must be letters, digits, _ and -",
                hint="cron.d ignores other file names; rename the playbook",
            )
        if self.every < MINUTE:
            raise UsageError(f"every {self.every}s is too short: the minimum is 1m")
        paths = {"toolkit": self.toolkit, "project": self.project, "state": self.state}
        if self.inventory is not None:
            paths["inventory"] = self.inventory
        for what, path in paths.items():
            if not path.is_absolute():
                raise UsageError(f"the {what} path {path} must be absolute for a scheduled run")
        for word in [*map(str, paths.values()), *self.extra_args, *self.captured_env.values()]:
            if _CONTROL.search(word):
                raise UsageError(f"{word!r} cannot be scheduled: it holds a control character (a newline?)")

    @property
    def unit(self) -> str:
        """The name shared by the systemd units and the cron.d file."""
        return f"toolkit-drift-{self.service}"

    @property
    def timeout(self) -> int:
        """Seconds after which a run is stopped as hung: the interval, but never under an hour.

        A run slower than its interval is not killed for it: it skips the slots it overlaps (systemd does not
        start a running oneshot; under cron the next run finds the inventory locked), which the metrics show.
        """
        return max(self.every, HOUR)

    @property
    def log(self) -> Path:
        """Where cron appends the job's output (systemd keeps it in the journal)."""
        return self.state / "logs" / f"drift-{self.service}.log"

    def argv(self) -> list[str]:
        inventory = ["-i", str(self.inventory)] if self.inventory is not None else []
        # `check` named: `toolkit drift NAME` would read a service called history or schedule as that command.
        return [str(self.toolkit), "drift", "check", self.service, *inventory, *self.extra_args, "--scheduled"]

    def environment(self) -> dict[str, str]:
        return {
            "TOOLKIT_PROJECT": str(self.project),
            "TOOLKIT_HOME": str(self.state),
            **self.captured_env,
            # The virtualenv's bin/ first: ansible-playbook and friends come from there.
            "PATH": f"{self.toolkit.parent}:{SYSTEM_PATH}",
            "NO_COLOR": "1",
        }

    def meta(self) -> str:
        """The comment every managed file carries, read back by ``status``."""
        return f"# toolkit-drift: service={self.service} every={self.every} command={shlex.join(self.argv())}"


# ---------------------------------------------------------------------------------------------
# The machine: directories and commands, injectable.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


RunCommand = Callable[[Sequence[str], str | None], CommandResult]


def run_command(argv: Sequence[str], stdin: str | None = None) -> CommandResult:
    """Run a command to completion (bounded), capturing its output; a missing program is exit 127."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        return CommandResult(127, "", f"{argv[0]}: command not found")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def _which(name: str) -> str | None:
    # Daemons live in sbin/, which a non-root PATH often lacks.
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def _user_unit_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return os.environ.get("USER") or str(os.geteuid())


@dataclass(frozen=True)
class Machine:
    """What a schedule reads and writes on this machine. Tests point every path into tmp_path."""

    root: bool = field(default_factory=lambda: os.geteuid() == 0)
    user: str = field(default_factory=_user_name)
    systemd_booted: Path = Path("/run/systemd/system")  # sd_booted(): exists only when systemd is PID 1
    systemd_system_dir: Path = Path("/etc/systemd/system")
    systemd_user_dir: Path = field(default_factory=_user_unit_dir)
    linger_dir: Path = Path("/var/lib/systemd/linger")
    cron_dir: Path = Path("/etc/cron.d")
    proc: Path = Path("/proc")
    run: RunCommand = run_command
    which: Callable[[str], str | None] = _which

    @property
    def systemd_dir(self) -> Path:
        return self.systemd_system_dir if self.root else self.systemd_user_dir

    def systemctl(self, *args: str, check: bool = True) -> CommandResult:
        argv = ["systemctl", *([] if self.root else ["--user"]), *args]
        result = self.run(argv, None)
        if check and result.returncode != 0:
            raise ToolkitError(
                f"{' '.join(argv)} failed: {_first_line(result.stderr) or f'exit {result.returncode}'}",
                hint=None if self.root else f"a user timer needs a session of {self.user} (or: loginctl enable-linger)",
                exit_code=ExitCode.TASK_FAILED,
            )
        return result

    def cron_daemon_installed(self) -> bool:
        return any(self.which(name) for name in ("cron", "crond"))

    def cron_daemon_running(self) -> bool:
        for comm in self.proc.glob("[0-9]*/comm"):
            try:
                if comm.read_text().strip() in ("cron", "crond"):
                    return True
            except OSError:
                continue  # the process ended while we looked
        return False


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def detect_backend(choice: BackendChoice = "auto", machine: Machine | None = None) -> Backend:
    """systemd when it is PID 1, else cron when a cron daemon or /etc/cron.d exists; ``choice`` forces one."""
    machine = machine or Machine()
    systemd = machine.systemd_booted.is_dir()
    cron = machine.cron_dir.is_dir() or machine.cron_daemon_installed()
    if choice == "systemd" and not systemd:
        raise UsageError(f"systemd is not running on this machine (no {machine.systemd_booted})", hint="--backend cron")
    if choice == "cron" and not cron:
        raise UsageError(
            f"cron is not installed here (no cron or crond, no {machine.cron_dir})", hint="apt-get install cron"
        )
    if choice != "auto":
        return choice
    if systemd:
        return "systemd"
    if cron:
        return "cron"
    raise UsageError(
        f"neither systemd (no {machine.systemd_booted}) nor cron (no cron or crond, no {machine.cron_dir}) is here",
        hint="apt-get install cron, or run `toolkit drift` from your own scheduler",
    )


# ---------------------------------------------------------------------------------------------
# What is installed, as reported by status and install.
# ---------------------------------------------------------------------------------------------


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


def _read_meta(text: str) -> _Meta | None:
    match = _META.search(text)
    return _Meta(match["service"], int(match["every"]), match["command"]) if match else None


def _when(meta: _Meta) -> str | None:
    try:
        return calendar_for(meta.every, meta.service).text
    except UsageError:
        return None  # written by another version of toolkit, with intervals this one does not know


def _is_ours(path: Path) -> bool:
    try:
        return path.read_text().startswith(HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
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


def _refuse_foreign(path: Path) -> None:
    if path.exists() and not _is_ours(path):
        raise UsageError(f"{path} exists and was not written by toolkit: leaving it alone", hint=f"move {path} away")


# ---------------------------------------------------------------------------------------------
# systemd: a oneshot service and its timer.
# ---------------------------------------------------------------------------------------------


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


def _install_systemd(job: DriftJob, calendar: Calendar, machine: Machine) -> ScheduleStatus:
    directory = machine.systemd_dir
    units = render_systemd_units(job, calendar, user_mode=not machine.root, user=machine.user)
    for name in units:
        _refuse_foreign(directory / name)
    changed = [name for name, text in units.items() if _write_if_changed(directory / name, text)]
    timer = f"{job.unit}.timer"
    if changed:
        machine.systemctl("daemon-reload")
        machine.systemctl("enable", timer)
        machine.systemctl("restart", timer)  # a running timer recomputes its next slot
    else:
        machine.systemctl("enable", "--now", timer)
    return _systemd_status(directory / timer, machine, changed=bool(changed))


def _systemd_status(timer: Path, machine: Machine, *, changed: bool = False) -> ScheduleStatus:
    service_file = timer.with_suffix(".service")
    meta = _read_meta(service_file.read_text()) if service_file.is_file() else None
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
            notes.append(f"systemctl{user_flag} show failed: {_first_line(shown.stderr)}")
    if not machine.root and not (machine.linger_dir / machine.user).exists():
        notes.append(f"user timers run only while {machine.user} is logged in: loginctl enable-linger {machine.user}")
    return ScheduleStatus(
        service=service,
        backend="systemd",
        installed=True,
        every=meta.every if meta else None,
        when=_when(meta) if meta else None,
        calendar=on_calendar[1] if on_calendar else None,
        command=meta.command if meta else None,
        files=(str(service_file), str(timer)),
        log=f"journalctl{user_flag} -u {service_file.name}",
        next_run=times.get("NextElapseUSecRealtime"),
        last_run=times.get("LastTriggerUSec"),
        changed=changed,
        notes=tuple(notes),
    )


def _remove_systemd(service: str, machine: Machine) -> bool:
    directory = machine.systemd_dir
    unit = f"toolkit-drift-{service}"
    ours = [path for path in (directory / f"{unit}.timer", directory / f"{unit}.service") if _is_ours(path)]
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


def _systemd_installed(machine: Machine) -> list[Path]:
    directory = machine.systemd_dir
    return sorted(p for p in directory.glob("toolkit-drift-*.timer") if _is_ours(p)) if directory.is_dir() else []


# ---------------------------------------------------------------------------------------------
# cron: /etc/cron.d as root, the user's crontab otherwise.
# ---------------------------------------------------------------------------------------------


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
    raise ToolkitError(f"crontab -l failed: {_first_line(listed.stderr)}", exit_code=ExitCode.TASK_FAILED)


def _write_crontab(machine: Machine, text: str) -> None:
    written = machine.run(["crontab", "-"], text)
    if written.returncode != 0:
        raise ToolkitError(f"crontab - failed: {_first_line(written.stderr)}", exit_code=ExitCode.TASK_FAILED)


def _cron_notes(machine: Machine) -> tuple[str, ...]:
    if not machine.cron_daemon_installed():
        return ("no cron daemon is installed (cron or crond): nothing runs the entry until one is",)
    if not machine.cron_daemon_running():
        return ("no cron daemon is running: nothing runs the entry until one starts",)
    return ()


def _install_cron(job: DriftJob, calendar: Calendar, machine: Machine) -> ScheduleStatus:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    if machine.root:
        path = machine.cron_dir / job.unit
        _refuse_foreign(path)
        changed = _write_if_changed(path, render_cron_file(job, calendar, machine.user))
    else:
        current = _read_crontab(machine)
        if current is None:
            raise UsageError("there is no crontab command here", hint="apt-get install cron")
        wanted = replace_crontab_block(current, job.service, crontab_block(job, calendar))
        changed = wanted != current
        if changed:
            _write_crontab(machine, wanted)
    return replace(_cron_entries(machine)[job.service], changed=changed)


def _cron_entries(machine: Machine) -> dict[str, ScheduleStatus]:
    """toolkit's cron schedules by service: its cron.d files as root, its crontab blocks otherwise."""
    found: dict[str, tuple[str, str]] = {}  # service -> (its lines, where they are)
    if machine.root:
        directory = machine.cron_dir
        for path in sorted(directory.glob("toolkit-drift-*")) if directory.is_dir() else []:
            if _is_ours(path):
                found[path.name.removeprefix("toolkit-drift-")] = (path.read_text(), str(path))
    else:
        for service, text in _crontab_blocks(_read_crontab(machine) or "").items():
            found[service] = (text, f"crontab of {machine.user}")
    entries: dict[str, ScheduleStatus] = {}
    for service, (text, where) in found.items():
        meta = _read_meta(text)
        entry = next((line for line in text.splitlines() if line and not line.startswith("#")), "")
        if meta is None or not entry:
            continue
        log = entry.rpartition(" >>")[2].removesuffix(" 2>&1").replace("\\%", "%")
        entries[service] = ScheduleStatus(
            service=service,
            backend="cron",
            installed=True,
            every=meta.every,
            when=_when(meta),
            calendar=" ".join(entry.split()[:5]),
            command=meta.command,
            files=(where,),
            log=" ".join(shlex.split(log)),
            notes=_cron_notes(machine),
        )
    return entries


def _remove_cron(service: str, machine: Machine) -> bool:
    if machine.root:
        path = machine.cron_dir / f"toolkit-drift-{service}"
        if not _is_ours(path):
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


# ---------------------------------------------------------------------------------------------
# The three operations.
# ---------------------------------------------------------------------------------------------


def install(job: DriftJob, backend: BackendChoice = "auto", machine: Machine | None = None) -> ScheduleStatus:
    """Install (or update) a service's schedule; the same job twice writes nothing the second time.

    A schedule of the same service in the other backend is removed: one service, one schedule.
    """
    machine = machine or Machine()
    chosen = detect_backend(backend, machine)
    calendar = calendar_for(job.every, job.service)  # before anything is written
    if not (job.toolkit.is_file() and os.access(job.toolkit, os.X_OK)):
        raise UsageError(f"{job.toolkit} is not an executable toolkit", hint="run scripts/setup")
    install_in = _install_systemd if chosen == "systemd" else _install_cron
    status = install_in(job, calendar, machine)
    moved = [
        f"removed its {other} schedule"
        for other in BACKENDS
        if other != chosen and _remove(other, job.service, machine)
    ]
    return replace(status, notes=(*moved, *status.notes))


def _remove(backend: Backend, service: str, machine: Machine) -> bool:
    if backend == "systemd":
        return _remove_systemd(service, machine)
    if machine.root or machine.which("crontab"):
        return _remove_cron(service, machine)
    return False


def _backends(backend: BackendChoice) -> tuple[Backend, ...]:
    return BACKENDS if backend == "auto" else (backend,)


def _check_name(service: str) -> None:
    if not _SERVICE_NAME.fullmatch(service):
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
            timers = _systemd_installed(machine)
            found += [_systemd_status(timer, machine) for timer in timers]
        elif machine.root or machine.which("crontab"):
            found += _cron_entries(machine).values()
    if service is None:
        return sorted(found, key=lambda s: (s.service, s.backend))
    _check_name(service)
    mine = [s for s in found if s.service == service]
    return mine or [ScheduleStatus(service=service, backend=detect_backend(backend, machine), installed=False)]
