"""Where toolkit finds the project (playbooks, roles, inventories) and keeps its own state.

State lives in one git-ignored directory, ``.toolkit/`` at the project root, or ``$TOOLKIT_HOME``:
runs (one private data dir per run), the history database, inventory locks and the lab's
keys and generated config.
"""

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from toolkit.errors import UsageError


def _looks_like_project(path: Path) -> bool:
    return (path / "playbooks").is_dir() and (path / "ansible.cfg").is_file()


@cache
def project_root() -> Path:
    """The project checkout: $TOOLKIT_PROJECT, else the nearest parent of cwd or of this package."""
    override = os.environ.get("TOOLKIT_PROJECT")
    if override:
        root = Path(override).resolve()
        if not _looks_like_project(root):
            raise UsageError(f"TOOLKIT_PROJECT={override} has no playbooks/ and ansible.cfg")
        return root
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        for candidate in (start, *start.parents):
            if _looks_like_project(candidate):
                return candidate
    raise UsageError(
        "cannot find the toolkit project (a directory with playbooks/ and ansible.cfg)",
        hint="run toolkit from the project checkout or set TOOLKIT_PROJECT",
    )


@dataclass(frozen=True)
class StatePaths:
    """The layout of toolkit's own state directory."""

    home: Path

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def history_db(self) -> Path:
        return self.home / "toolkit.db"

    @property
    def locks(self) -> Path:
        return self.home / "locks"

    @property
    def lab(self) -> Path:
        return self.home / "lab"

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"


def state_paths() -> StatePaths:
    override = os.environ.get("TOOLKIT_HOME")
    home = Path(override).resolve() if override else project_root() / ".toolkit"
    return StatePaths(home=home)


def playbooks_dir() -> Path:
    """Playbooks live in playbooks/; $TOOLKIT_PLAYBOOK_DIR points elsewhere (site-specific or test playbooks)."""
    override = os.environ.get("TOOLKIT_PLAYBOOK_DIR")
    return Path(override).resolve() if override else project_root() / "playbooks"


def lab_inventory() -> Path:
    return project_root() / "inventories" / "lab"
