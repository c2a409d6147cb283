"""Running ansible-rulebook with the heal rulebook, and knowing whether it runs.

The rulebook engine is a long-running process of its own (a JVM under it): ``toolkit heal serve`` starts it in
the foreground (for systemd or a terminal), hands it its settings in a private vars file and the webhook token
through the environment only, and leaves a small state file for ``toolkit heal status``.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import yaml

from toolkit.errors import UsageError
from toolkit.paths import project_root
from toolkit.runner.history import process_alive
from toolkit.timestamps import utc_iso

TOKEN_VARIABLE = "TOOLKIT_HEAL_TOKEN"
MIN_TOKEN_LENGTH = 16
DEFAULT_LISTEN = "127.0.0.1:5000"


@dataclass(frozen=True)
class ServeSettings:
    listen_host: str
    listen_port: int
    inventory: Path

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"


@dataclass(frozen=True)
class ServerState:
    """What a running ``toolkit heal serve`` leaves for ``toolkit heal status``."""

    pid: int
    listen: str
    inventory: str
    started_at: str

    @property
    def alive(self) -> bool:
        return process_alive(self.pid)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``. Raises UsageError."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r} is not HOST:PORT")
    return host, int(port)


def webhook_token() -> str:
    """The shared token Alertmanager sends (Authorization: Bearer). Raises UsageError when missing or short."""
    token = os.environ.get(TOKEN_VARIABLE, "")
    if len(token) < MIN_TOKEN_LENGTH:
        raise UsageError(
            f"{TOKEN_VARIABLE} must hold the webhook's shared token (at least {MIN_TOKEN_LENGTH} characters)",
            hint=f"for example: export {TOKEN_VARIABLE}=$(openssl rand -hex 24); give Alertmanager the same one",
        )
    return token


def rulebook_command() -> Path:
    found = Path(sys.executable).parent / "ansible-rulebook"
    if not found.is_file():
        raise UsageError("ansible-rulebook is not installed beside toolkit", hint="run scripts/setup")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise UsageError("ansible-rulebook needs a Java 17 runtime: no java on PATH and no JAVA_HOME")
    return found


def state_file(home: Path) -> Path:
    return home / "heal" / "serve.json"


def read_state(home: Path) -> ServerState | None:
    try:
        return ServerState(**json.loads(state_file(home).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def serve(settings: ServeSettings, home: Path) -> int:
    """Run ansible-rulebook until it stops or this process is told to stop; its exit code."""
    webhook_token()
    command = rulebook_command()
    directory = home / "heal"
    directory.mkdir(parents=True, exist_ok=True)
    variables = directory / "vars.yml"
    variables.write_text(
        yaml.safe_dump(
            {
                "heal_listen_host": settings.listen_host,
                "heal_listen_port": settings.listen_port,
                "toolkit_bin": str(Path(sys.executable).parent / "toolkit"),
                "toolkit_inventory": str(settings.inventory),
            }
        )
    )
    root = project_root()
    argv = [
        str(command),
        "--rulebook",
        str(root / "rulebooks" / "heal.yml"),
        "--inventory",
        str(settings.inventory),
        "--vars",
        str(variables),
        "--env-vars",
        TOKEN_VARIABLE,
    ]
    # ansible-rulebook runs ansible-galaxy and ansible-playbook from PATH: make them the ones beside it.
    env = {**os.environ, "PATH": os.pathsep.join([str(command.parent), os.environ.get("PATH", "")])}
    child = subprocess.Popen(argv, cwd=root, env=env)
    started = utc_iso()
    state = ServerState(pid=os.getpid(), listen=settings.listen, inventory=str(settings.inventory), started_at=started)
    state_file(home).write_text(json.dumps(asdict(state)))

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        state_file(home).unlink(missing_ok=True)
