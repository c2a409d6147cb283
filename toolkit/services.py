"""Services are the playbooks in playbooks/: ``toolkit converge NAME`` runs ``playbooks/NAME.yml``."""

from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import UsageError
from toolkit.paths import playbooks_dir, project_root


def available_services() -> list[str]:
    """Every playbook that can be named on the command line (``site`` runs them all)."""
    directory = playbooks_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.yml") if not p.name.startswith("_"))


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
