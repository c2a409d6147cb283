"""Services are the playbooks in playbooks/: ``toolkit converge NAME`` runs ``playbooks/NAME.yml``."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import UsageError
from toolkit.paths import playbooks_dir, project_root
from toolkit.runner.events import RunEvent, TaskResult

# Playbooks that are not services: `toolkit bootstrap` drives bootstrap.yml one play at a time.
NOT_SERVICES = frozenset({"bootstrap"})


def available_services() -> list[str]:
    """Every playbook that can be named on the command line (``site`` runs them all)."""
    directory = playbooks_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.yml") if not p.name.startswith("_") and p.stem not in NOT_SERVICES)


def playbook_for(service: str) -> Path:
    valid = available_services()
    if service not in valid:
        raise UsageError(f"unknown service {service!r}; valid: {', '.join(valid) or '(no playbooks found)'}")
    return playbooks_dir() / f"{service}.yml"


def infra_suite_for(service: str) -> list[Path]:
    """The testinfra files that verify a service (``site``: all of them)."""
    directory = project_root() / "tests" / "infra"
    if service == "site":
        return sorted(directory.glob("test_*.py"))
    suite = directory / f"test_{service}.py"
    return [suite] if suite.is_file() else []


def hosts_pattern_for(service: str) -> str:
    """The hosts a service's playbook runs on, as one Ansible pattern (the union of its plays' ``hosts``).

    ``toolkit verify`` checks those hosts only: a PostgreSQL suite has nothing to say about a Cassandra host.
    Imported playbooks (``site``) are followed.
    """
    patterns = _play_hosts(playbook_for(service), seen=set())
    if not patterns or "all" in patterns:
        return "all"
    return ":".join(dict.fromkeys(patterns))


def _play_hosts(playbook: Path, seen: set[Path]) -> list[str]:
    if playbook in seen or not playbook.is_file():
        return []
    seen.add(playbook)
    try:
        plays: Any = yaml.safe_load(playbook.read_text()) or []
    except yaml.YAMLError as exc:
        raise UsageError(f"cannot read {playbook}: {str(exc).splitlines()[0]}") from None
    patterns: list[str] = []
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if isinstance(imported, str):
            patterns += _play_hosts((playbook.parent / imported).resolve(), seen)
        hosts = play.get("hosts")
        if isinstance(hosts, str):
            patterns += [part.strip() for part in hosts.replace(",", ":").split(":") if part.strip()]
        elif isinstance(hosts, list):
            patterns += [str(part) for part in hosts]
    return patterns


def play_services(service: str) -> dict[str, str]:
    """Each play's name in SERVICE's playbook tree -> the service (playbook) it belongs to.

    Drift names resources by service: a ``site`` run imports every playbook, and the play a task ran
    in tells which service's resource it checked.
    """
    mapping: dict[str, str] = {}
    _collect_plays(playbook_for(service), mapping, seen=set())
    return mapping


def services_in(service: str) -> list[str]:
    """The services SERVICE's playbook covers: itself, and every playbook it imports."""
    found: list[str] = []
    _collect_plays(playbook_for(service), {}, seen=set(), found=found)
    return found


def _collect_plays(playbook: Path, mapping: dict[str, str], seen: set[Path], found: list[str] | None = None) -> None:
    if playbook in seen or not playbook.is_file():
        return
    seen.add(playbook)
    if found is not None:
        found.append(playbook.stem)
    try:
        plays: Any = yaml.safe_load(playbook.read_text()) or []
    except yaml.YAMLError as exc:
        raise UsageError(f"cannot read {playbook}: {str(exc).splitlines()[0]}") from None
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if isinstance(imported, str):
            _collect_plays((playbook.parent / imported).resolve(), mapping, seen, found)
        elif isinstance(play.get("name"), str):
            mapping.setdefault(play["name"].strip(), playbook.stem)


@dataclass
class ServiceCoverage:
    """Which (host, service) pairs ran tasks in a run: an observer of its events."""

    play_services: dict[str, str]
    default_service: str
    pairs: set[tuple[str, str]] = field(default_factory=set)

    def observe(self, event: RunEvent) -> None:
        if isinstance(event, TaskResult) and event.host and event.status in ("ok", "changed", "skipped"):
            self.pairs.add((event.host, self.play_services.get(event.play.strip(), self.default_service)))
