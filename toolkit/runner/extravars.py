"""Parsing and safe hand-off of ``-e`` extra variables.

ansible-runner's own ``extravars`` are written to ``env/extravars`` inside the run directory, which
is kept; so inline variables go to a private temporary file outside it, passed as ``-e @file``
and deleted after the run.
"""

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import UsageError

# Variable names that mark a value as secret: their values are scrubbed from run artifacts.
# "key" only as the last word of a name (ssh_key, api_key, KEY): not keyspace, keys or HOST_KEY_CHECKING.
SECRET_NAME = re.compile(r"(pass|secret|token|credential|private|(^|_)(api_?|access_?)?key$)", re.IGNORECASE)
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VAULT_HEADER = b"$ANSIBLE_VAULT;"


@dataclass(frozen=True)
class ExtraVars:
    """Extra variables from the command line: inline ``key=value`` pairs and ``@file`` references."""

    inline: dict[str, Any] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def secret_values(self) -> list[str]:
        """Inline values whose variable names look secret, for scrubbing artifacts."""
        return [str(value) for key, value in self.inline.items() if SECRET_NAME.search(key) and str(value)]

    def is_empty(self) -> bool:
        return not self.inline and not self.files


def _parse_file(reference: str) -> Path:
    path = Path(reference[1:]).expanduser()
    if not reference[1:]:
        raise UsageError("-e @ needs a file name, e.g. -e @vars.yml")
    if not path.is_file():
        raise UsageError(f"-e {reference}: no such file")
    raw = path.read_bytes()
    if raw.startswith(_VAULT_HEADER):
        return path.resolve()  # ansible decrypts it with the vault password; we cannot look inside
    try:
        loaded = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"-e {reference}: not valid YAML{where}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise UsageError(f"-e {reference}: must hold a mapping of variable names to values")
    return path.resolve()


def _parse_inline(item: str) -> tuple[str, Any]:
    stripped = item.strip()
    if stripped.startswith("{"):
        raise UsageError("-e with inline JSON is not supported; use key=value or @file")
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"-e {item!r}: expected key=value or @file")
    if not _VAR_NAME.match(key):
        raise UsageError(f"-e {item!r}: {key!r} is not a valid variable name")
    return key, value


def parse_extra_vars(items: list[str]) -> ExtraVars:
    """Parse repeated ``-e`` options. Raises UsageError with a one-line message on bad input."""
    inline: dict[str, Any] = {}
    files: list[Path] = []
    for item in items:
        if item.startswith("@"):
            files.append(_parse_file(item))
        else:
            key, value = _parse_inline(item)
            inline[key] = value
    return ExtraVars(inline=inline, files=tuple(files))


def _private_tmpdir() -> str | None:
    # Prefer memory-backed storage so the values never touch a disk.
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return candidate
    return None


@contextmanager
def extra_vars_arguments(extra: ExtraVars) -> Iterator[list[str]]:
    """Yield ansible-playbook arguments for the extra vars; the temporary file is gone afterwards."""
    args: list[str] = []
    for path in extra.files:
        args += ["-e", f"@{path}"]
    if not extra.inline:
        yield args
        return
    fd, name = tempfile.mkstemp(prefix="toolkit-extravars-", suffix=".json", dir=_private_tmpdir())
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(extra.inline, handle)
        yield [*args, "-e", f"@{name}"]
    finally:
        Path(name).unlink(missing_ok=True)
