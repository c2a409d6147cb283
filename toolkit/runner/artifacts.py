"""Run directories: one ansible-runner private data dir per run, rotated, scrubbed of secrets.

ansible-runner writes the whole process environment into ``artifacts/<id>/command`` (whatever
``suppress_env_files`` says), and events carry task output. After every run we rewrite the
environment to an allow-list and replace every known secret value in every file of the run.
"""

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from toolkit.runner.extravars import SECRET_NAME

REDACTED = "********"
# Environment variables worth keeping in the artifacts for debugging; secret-looking names never are.
_ENV_ALLOWED = re.compile(r"^(ANSIBLE_|AWX_|RUNNER_|TOOLKIT_|PATH$|HOME$|USER$|LANG$|LC_|PYTHON|VIRTUAL_ENV$)")
_MIN_SECRET_LENGTH = 4  # shorter values would redact unrelated text


@dataclass(frozen=True)
class RunDirectory:
    run_id: str
    private_data_dir: Path

    @property
    def artifacts(self) -> Path:
        return self.private_data_dir / "artifacts" / self.run_id


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def create(runs_dir: Path) -> RunDirectory:
    runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    run_id = new_run_id()
    private = runs_dir / run_id
    private.mkdir(mode=0o700)
    return RunDirectory(run_id=run_id, private_data_dir=private)


def rotate(runs_dir: Path, keep: int, current: str, active: Collection[str] = ()) -> list[str]:
    """Delete the oldest run directories beyond ``keep``. Returns deleted ids.

    Never the current run, nor ``active`` ones: a converge against another inventory may be going on.
    """
    if keep < 1 or not runs_dir.is_dir():
        return []
    spared = {current, *active}
    runs = sorted(p for p in runs_dir.iterdir() if p.is_dir() and p.name not in spared)
    excess = runs[: max(0, len(runs) - (keep - 1))]
    for path in excess:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in excess]


def secret_env_values(environ: dict[str, str]) -> list[str]:
    return [value for key, value in environ.items() if SECRET_NAME.search(key) and value]


def _redact_text(text: str, values: list[str]) -> str:
    for value in values:
        # The value as is, inside a JSON string, and inside a JSON string in a JSON string (an event's
        # "stdout" holds Ansible's JSON rendering of the result). Most escaped first: no fragment is left.
        forms = [value]
        while len(forms) < 3 and (escaped := json.dumps(forms[-1])[1:-1]) != forms[-1]:
            forms.append(escaped)
        for form in reversed(forms):
            text = text.replace(form, REDACTED)
    return text


def redact(text: str, values: Iterable[str]) -> str:
    """Replace every secret value in ``text`` (used for messages shown to the user, too)."""
    usable = sorted({v for v in values if len(v) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
    return _redact_text(text, usable) if usable else text


def _scrub_command_file(path: Path) -> None:
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    env = recorded.get("env") or {}
    recorded["env"] = {
        key: (REDACTED if SECRET_NAME.search(key) else value) for key, value in env.items() if _ENV_ALLOWED.match(key)
    }
    path.write_text(json.dumps(recorded))


def scrub(run_dir: RunDirectory, secret_values: Iterable[str]) -> None:
    """Make the run directory safe to keep: allow-listed env, and no known secret value anywhere."""
    command = run_dir.artifacts / "command"
    if command.exists():
        _scrub_command_file(command)
    usable = sorted({v for v in secret_values if len(v) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
    # env/ holds what runner was handed (we hand it nothing secret, but never keep it).
    shutil.rmtree(run_dir.private_data_dir / "env", ignore_errors=True)
    if not usable:
        return
    for root, _dirs, files in os.walk(run_dir.private_data_dir):
        for name in files:
            path = Path(root) / name
            try:
                original = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            cleaned = _redact_text(original, usable)
            if cleaned != original:
                path.write_text(cleaned, encoding="utf-8")
