"""A thin wrapper around the podman command, always with the lab's own containers.conf."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from toolkit.errors import LabError

SETUP_HINT = "run scripts/setup (it installs podman, writes the lab's podman config and builds the image)"


class Podman:
    """Runs podman with CONTAINERS_CONF set: runc instead of crun, ulimits within this machine's limits."""

    def __init__(self, containers_conf: Path) -> None:
        if shutil.which("podman") is None:
            raise LabError("podman is not installed (not found on PATH)", hint=SETUP_HINT)
        if not containers_conf.is_file():
            raise LabError(f"the lab's podman config {containers_conf} is missing", hint=SETUP_HINT)
        self.env = {**os.environ, "CONTAINERS_CONF": str(containers_conf)}

    def run(
        self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            ["podman", *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and completed.returncode != 0:
            detail = (completed.stderr or completed.stdout).strip().splitlines()
            raise LabError(f"podman {args[0]} failed: {detail[-1] if detail else 'exit ' + str(completed.returncode)}")
        return completed

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout or "null")

    def exists(self, kind: str, name: str) -> bool:
        return self.run(kind, "exists", name, check=False).returncode == 0

    def exec(self, container: str, *command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        flags = ["-i"] if stdin is not None else []
        return self.run("exec", *flags, container, *command, check=False, stdin=stdin)
