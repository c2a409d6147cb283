"""Shared setup of the testinfra suites in tests/infra/ (shared helpers live in toolkit_infra.py)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import testinfra.utils.ansible_runner

# testinfra's ansible backend runs `ansible-inventory` and `ansible` by name. When pytest runs from a
# virtualenv that is not activated (`.venv/bin/pytest`, `.venv/bin/toolkit verify`), they are next to the
# interpreter but not on PATH; put them there so the suites work however pytest was started.
if shutil.which("ansible-inventory") is None:
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

# The helper module sits next to the suites; make it importable whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from toolkit_infra import direct, read_inventory_plainly  # importable only once the path above is set

testinfra.utils.ansible_runner.get_ansible_inventory = read_inventory_plainly(
    testinfra.utils.ansible_runner.get_ansible_inventory
)


@pytest.fixture(scope="module")
def host(_testinfra_host: Any) -> Any:
    """testinfra's `host`, talking to podman containers directly (toolkit_infra.direct explains why)."""
    return direct(_testinfra_host)
