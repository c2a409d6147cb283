"""Expected differences: ``drift-ignore.yml`` entries that silence matching drift until they expire.

Every entry needs a reason and an expiry date: an exception nobody re-reads is drift by another name.
Once expired, an entry no longer silences anything; its matches are reported as drift again and the
entry is listed as expired.

    ignores:
      - host: "postgresql-*"          # Ansible host name, glob (default "*")
        service: postgresql           # service (playbook) name, glob (default "*")
        task: "postgresql : Configure the server*"   # "role : task [item]", glob (required)
        reason: "CHG-1234: work_mem raised by hand during the incident"
        expires: 2026-12-31           # last day it applies (UTC)
"""

import datetime as dt
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from toolkit.drift.findings import Resource
from toolkit.errors import UsageError

IGNORE_FILE_NAME = "drift-ignore.yml"
_KEYS = {"host", "service", "task", "reason", "expires"}


@dataclass(frozen=True)
class IgnoreRule:
    host: str
    service: str
    task: str
    reason: str
    expires: dt.date
    index: int  # 1-based position in the file, for messages

    def matches(self, resource: Resource) -> bool:
        return (
            fnmatchcase(resource.host, self.host)
            and fnmatchcase(resource.service, self.service)
            and (fnmatchcase(resource.label, self.task) or fnmatchcase(resource.task, self.task))
        )

    def expired(self, today: dt.date) -> bool:
        return today > self.expires

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "service": self.service,
            "task": self.task,
            "reason": self.reason,
            "expires": self.expires.isoformat(),
        }


def default_ignore_file(inventory_source: Path) -> Path:
    """``drift-ignore.yml`` beside the inventory: exceptions belong to the fleet they excuse."""
    directory = inventory_source if inventory_source.is_dir() else inventory_source.parent
    return directory / IGNORE_FILE_NAME


def load_rules(path: Path) -> list[IgnoreRule]:
    """The rules of an ignore file ([] when it does not exist). Bad entries are usage errors."""
    if not path.exists():
        return []
    try:
        document: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read it: {' '.join(str(exc).split())[:200]}") from None
    if document is None:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("ignores"), list):
        raise UsageError(f"{path}: expected a mapping with an 'ignores' list")
    return [_rule(path, index, entry) for index, entry in enumerate(document["ignores"], start=1)]


def _rule(path: Path, index: int, entry: Any) -> IgnoreRule:
    where = f"{path}: entry {index}"
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected a mapping with task, reason and expires")
    unknown = sorted(set(map(str, entry)) - _KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_KEYS))}")
    for key in ("task", "reason", "expires"):
        if entry.get(key) in (None, ""):
            raise UsageError(f"{where}: '{key}' is required")
    reason = str(entry["reason"]).strip()
    if not reason:
        raise UsageError(f"{where}: 'reason' must say why the difference is expected")
    return IgnoreRule(
        host=_pattern(where, entry, "host"),
        service=_pattern(where, entry, "service"),
        task=_pattern(where, entry, "task"),
        reason=reason,
        expires=_date(where, entry["expires"]),
        index=index,
    )


def _pattern(where: str, entry: dict[str, Any], key: str) -> str:
    value = entry.get(key, "*")
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: '{key}' must be a non-empty string (a glob)")
    return value.strip()


def _date(where: str, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise UsageError(f"{where}: 'expires' must be a date (YYYY-MM-DD), not {value!r}") from None


@dataclass(frozen=True)
class Triage:
    """Drifted resources split by the ignore rules."""

    drift: list[Resource]
    ignored: list[tuple[Resource, IgnoreRule]]
    expired: list[tuple[Resource, IgnoreRule]]  # also in ``drift``: an expired rule silences nothing


def triage(resources: list[Resource], rules: list[IgnoreRule], today: dt.date) -> Triage:
    drift: list[Resource] = []
    ignored: list[tuple[Resource, IgnoreRule]] = []
    expired: list[tuple[Resource, IgnoreRule]] = []
    for resource in resources:
        matching = [rule for rule in rules if rule.matches(resource)]
        active = next((rule for rule in matching if not rule.expired(today)), None)
        if active is not None:
            ignored.append((resource, active))
            continue
        drift.append(resource)
        if matching:
            expired.append((resource, matching[0]))
    return Triage(drift=drift, ignored=ignored, expired=expired)
