"""The machine: its directories and commands, injectable, and which backend (systemd or cron) it has.

Nothing else in the schedule touches the machine directly: the directories and the command runner come
from a ``Machine``, which tests point into tmp_path.
"""

import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from toolkit.errors import ToolkitError, UsageError
from toolkit.exit_codes import ExitCode

Backend = Literal["systemd", "cron"]
BackendChoice = Literal["auto", "systemd", "cron"]
BACKENDS: tuple[Backend, ...] = ("systemd", "cron")


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
                f"{' '.join(argv)} failed: {first_line(result.stderr) or f'exit {result.returncode}'}",
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


def first_line(text: str) -> str:
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
