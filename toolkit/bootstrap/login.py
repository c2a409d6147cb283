"""Proving a login works before the bootstrap changes anything.

The bootstrap writes the host into its inventory (a file, or EC2 tags) before the first playbook: a login
that was going to fail must stop it earlier, with the server's own answer, so wrong credentials change
nothing anywhere. One ``ssh ... true`` with the host key already pinned answers it in well under a second.
A password is handed to sshpass through its environment (``-e``), never on a command line.
"""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.exit_codes import ExitCode


class LoginRefused(ToolkitError):
    # Ansible counts a refused login as an unreachable host; so does the bootstrap (README, "Exit codes").
    exit_code = ExitCode.UNREACHABLE


@dataclass(frozen=True)
class SshLogin:
    address: str
    port: int
    user: str
    known_hosts: Path
    key: Path | None = None
    password: str | None = None

    def command(self, *remote: str) -> list[str]:
        options = [
            "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-p", str(self.port),
        ]  # fmt: skip
        if self.password is not None:
            options += ["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"]
        else:
            options += ["-o", "BatchMode=yes"]
        if self.key is not None:
            options += ["-o", "IdentitiesOnly=yes", "-i", str(self.key)]
        ssh = ["ssh", *options, f"{self.user}@{self.address}", *remote]
        return ["sshpass", "-e", *ssh] if self.password is not None else ssh

    def run(self, *remote: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SSHPASS": self.password} if self.password is not None else None
        try:
            return subprocess.run(
                self.command(*remote), capture_output=True, text=True, check=False, timeout=timeout, env=env
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess([], 255, "", f"no answer within {timeout:g}s")


def works(login: SshLogin, *remote: str) -> bool:
    """Whether the login succeeds and the remote command (default: none) exits 0."""
    return login.run(*(remote or ("true",))).returncode == 0


def prove(login: SshLogin) -> None:
    """Log in once and run ``true``.

    Raises:
        LoginRefused: the server refused the credentials (or the login failed another way): its last words.
    """
    outcome = login.run("true")
    if outcome.returncode == 0:
        return
    said = [line.strip() for line in outcome.stderr.splitlines() if line.strip() and not line.startswith("Warning:")]
    reason = said[-1] if said else f"ssh exited {outcome.returncode}"
    if outcome.returncode == 5 and login.password is not None:  # sshpass: the password was refused
        reason = "the password was refused"
    how = "password" if login.password is not None else (f"key {login.key}" if login.key else "ssh's default keys")
    raise LoginRefused(
        f"cannot log in to {login.address} as {login.user} with {how}: {reason}",
        hint="check --user and --key (or --password-prompt); nothing was changed",
    )
