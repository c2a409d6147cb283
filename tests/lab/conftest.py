"""The lab every end-to-end test shares: brought up once per session with the real `toolkit lab up`.

TOOLKIT_LAB_PROFILE picks the profile (minimal by default: what CI runs). A lab this session brought up is
taken down at the end, unless TOOLKIT_LAB_KEEP=1; a lab that was already up is left as it was found.
"""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.lab.helpers import PROJECT, toolkit


@dataclass(frozen=True)
class Lab:
    profile: str
    hosts: tuple[str, ...]


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    profile = os.environ.get("TOOLKIT_LAB_PROFILE", "minimal")
    was_up = (PROJECT / "inventories" / "lab" / "hosts.yml").exists()
    started = toolkit("lab", "up", "--profile", profile, "--json", timeout=600)
    assert started.returncode == 0, f"toolkit lab up failed:\n{started.stderr}"
    hosts = tuple(sorted(entry["name"] for entry in json.loads(started.stdout)["hosts"]))
    yield Lab(profile=profile, hosts=hosts)
    if not was_up and os.environ.get("TOOLKIT_LAB_KEEP") != "1":
        toolkit("lab", "down", timeout=300)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_lab.py runs first: its down/up cycle then costs nothing, where later it would wipe every host the
    modules before it converged. test_prometheus.py comes next: its `toolkit converge site` builds the whole
    fleet, hardened, on the fresh hosts, so the modules after it find their services up (their first converge
    is a check that nothing is left to do) and run against hosts hardened as production's are.
    test_bootstrap.py runs last: it joins a host to the fleet the other modules converged (and counted), and
    takes it out again."""
    order = {"test_lab.py": 0, "test_prometheus.py": 1, "test_bootstrap.py": 3}
    items.sort(key=lambda item: order.get(item.path.name, 2))
