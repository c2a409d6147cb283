"""The job: what a scheduled drift run executes, where, and with which environment.

Every path is absolute and the environment is captured at install time: the scheduler starts the run
from nowhere, without the settings of the shell that installed it.
"""

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.drift.schedule.timing import HOUR, MINUTE
from toolkit.errors import UsageError
from toolkit.paths import project_root, state_paths

# cron.d only reads files named like run-parts scripts, and systemd unit names allow little more.
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Set at install time, these change what a run does; the scheduler's environment would not have them.
CAPTURED_ENV = (
    "TOOLKIT_PLAYBOOK_DIR",
    "TOOLKIT_TEXTFILE_DIR",
    "TOOLKIT_KEEP_RUNS",
    "TOOLKIT_STRATEGY",
    "ANSIBLE_VAULT_PASSWORD_FILE",
)
_PATH_ENV = frozenset({"TOOLKIT_PLAYBOOK_DIR", "TOOLKIT_TEXTFILE_DIR", "ANSIBLE_VAULT_PASSWORD_FILE"})
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
        if not SERVICE_NAME.fullmatch(self.service):
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
