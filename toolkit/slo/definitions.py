"""The SLOs declared in slos.yml, as ``toolkit slo`` and the budget gate need them (names and services).

The full validation (PromQL, windows) is plugins/filter/slo_rules.py's, when the Prometheus role renders the
rules; here only what is read is checked, so a malformed file is one line and not a traceback.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import UsageError
from toolkit.paths import project_root


@dataclass(frozen=True)
class SLO:
    name: str
    service: str
    objective: float  # percent
    window: str
    description: str


def slos_file() -> Path:
    return project_root() / "slos.yml"


def load_slos(path: Path | None = None) -> list[SLO]:
    """Raises UsageError when the file is missing or an SLO lacks a field read here."""
    path = path or slos_file()
    try:
        document: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    entries = document.get("slos") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise UsageError(f"{path} has no list under 'slos'")
    found: list[SLO] = []
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise UsageError(f"{path}: SLO #{index} is not a mapping")
        missing = [key for key in ("name", "service", "objective", "window") if key not in entry]
        if missing:
            raise UsageError(f"{path}: SLO #{index} has no {', '.join(missing)}")
        try:
            objective = float(entry["objective"])
        except (TypeError, ValueError):
            raise UsageError(f"{path}: SLO {entry['name']!r}: objective is not a number") from None
        found.append(
            SLO(
                name=str(entry["name"]),
                service=str(entry["service"]),
                objective=objective,
                window=str(entry["window"]),
                description=str(entry.get("description") or entry["name"]),
            )
        )
    return found
