"""Shared setup of the testinfra suites in tests/infra/ (shared helpers live in toolkit_infra.py)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import testinfra

# testinfra's ansible backend runs `ansible-inventory` and `ansible` by name. When pytest runs from a
# virtualenv that is not activated (`.venv/bin/pytest`, `.venv/bin/toolkit verify`), they are next to the
# interpreter but not on PATH; put them there so the suites work however pytest was started.
if shutil.which("ansible-inventory") is None:
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

# The helper module sits next to the suites; make it importable whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

PODMAN_CONNECTIONS = ("podman", "containers.podman.podman")


def _podman_container(inventory_host: Any) -> str | None:
    """The container behind an inventory host that Ansible reaches with its podman connection, if any."""
    backend = inventory_host.backend
    if backend.NAME != "ansible" or backend.force_ansible:
        return None
    hostvars = backend.ansible_runner.inventory["_meta"].get("hostvars", {}).get(backend.host, {})
    if hostvars.get("ansible_connection") not in PODMAN_CONNECTIONS:
        return None
    container = str(hostvars.get("ansible_host", backend.host))
    user = hostvars.get("ansible_user")
    return f"{user}@{container}" if user else container


@pytest.fixture(scope="module")
def host(_testinfra_host: Any) -> Any:
    """testinfra's `host`, talking to podman containers directly.

    testinfra has no backend for Ansible's podman connection (molecule's containers use it), so it would
    run one `ansible` process per command, about 1.5 s each. The same container is reached here with
    testinfra's podman backend (`podman exec`, the same user), about 0.1 s per command. Every other host
    is left as testinfra made it. The inventory host stays reachable for its variables
    (toolkit_infra.inventory_variables).
    """
    container = _podman_container(_testinfra_host)
    if container is None:
        return _testinfra_host
    direct = testinfra.get_host(f"podman://{container}")
    direct.inventory_host = _testinfra_host
    return direct
