"""Services are the playbooks in playbooks/: ``toolkit converge NAME`` runs ``playbooks/NAME.yml``."""

from pathlib import Path

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
