"""The AWX execution environment definition: ansible-builder accepts it, and it carries what the roles use.

Building the image needs a container engine and a registry (not here); `ansible-builder create` generates the
whole build context from the definition and fails on anything it cannot read, which is what this checks.
"""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BUILDER = Path(sys.executable).parent / "ansible-builder"
# A filter or test after "|" or "is", a lookup's first argument (modules are read from the tasks themselves).
_EXPRESSIONS = (
    re.compile(r"(?:\||\bis)\s*([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+"),
    re.compile(r"lookup\(\s*['\"]([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+"),
)
_FQCN = re.compile(r"^([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+$")
_CORE = {"ansible.builtin", "ansible.legacy"}
_NESTED = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")


def _task_collections(node: Any) -> set[str]:
    """Collections of the modules named as task keys, through blocks and plays."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= _task_collections(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in _NESTED:
                found |= _task_collections(value)
            elif isinstance(key, str) and (match := _FQCN.match(key)):
                found.add(match[1])
    return found


def collections_used() -> set[str]:
    found: set[str] = set()
    task_files = [
        *REPO.glob("roles/*/tasks/*.yml"),
        *REPO.glob("roles/*/handlers/*.yml"),
        *REPO.glob("playbooks/*.yml"),
    ]
    for path in task_files:
        found |= _task_collections(yaml.safe_load(path.read_text()))
    for path in [*REPO.glob("roles/*/**/*.yml"), *REPO.glob("playbooks/*.yml")]:
        text = path.read_text()
        for pattern in _EXPRESSIONS:
            found.update(pattern.findall(text))
    return found - _CORE


def test_ansible_builder_creates_the_build_context(tmp_path: Path) -> None:
    context = tmp_path / "context"
    created = subprocess.run(
        [str(BUILDER), "create", "-f", "execution-environment.yml", "-c", str(context)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    containerfile = (context / "Containerfile").read_text()
    definition = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert f'ARG EE_BASE_IMAGE="{definition["images"]["base_image"]["name"]}"' in containerfile
    assert "ansible-galaxy collection install" in containerfile
    build = context / "_build"
    assert "boto3" in (build / "requirements.txt").read_text()
    assert "openssh-clients" in (build / "bindep.txt").read_text()
    assert yaml.safe_load((build / "requirements.yml").read_text()) == yaml.safe_load(
        (REPO / "ee" / "requirements.yml").read_text()
    )


def test_every_collection_the_roles_use_is_in_the_execution_environment() -> None:
    listed = {entry["name"] for entry in yaml.safe_load((REPO / "ee" / "requirements.yml").read_text())["collections"]}
    used = collections_used()
    assert {"community.postgresql", "ansible.posix", "community.crypto"} <= used, "the scan finds real uses"
    assert used <= listed, f"missing from ee/requirements.yml: {sorted(used - listed)}"
