"""The aws_fleet inventory drives a real converge: moto instances whose private addresses are the lab's hosts.

The lab's twins in moto (tests/lab/aws_twins.py) are listed by a `*.aws.yml` config in a temporary directory.
`toolkit converge base --check -i <config>` must then reach every lab host over SSH and succeed. The file sorts
after test_converge.py on purpose: the hosts are converged by then, so the check run has nothing to fail on.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.aws_twins import inventory_folder, launch_twins
from tests.lab.conftest import Lab
from tests.lab.helpers import parse_json, toolkit
from tests.unit.plugins.moto_fleet import env_for, moto_server
from toolkit.lab.profiles import all_hosts

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


def test_converge_check_runs_on_every_lab_host_through_the_aws_inventory(lab: Lab, moto: str, tmp_path: Path) -> None:
    launch_twins(moto, lab.hosts)
    config = inventory_folder(tmp_path)
    env = {**env_for(moto), "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    shown = toolkit("inventory", "-i", str(config), "--list", env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    listing = parse_json(shown.stdout)
    assert set(listing["_meta"]["hostvars"]) == set(lab.hosts)
    for name in lab.hosts:
        address = next(h.address for h in all_hosts() if h.name == name)
        assert listing["_meta"]["hostvars"][name]["ansible_host"] == address

    result = toolkit("converge", "base", "--check", "-i", str(config), "--json", env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    document = parse_json(result.stdout)
    assert set(document["hosts"]) == set(lab.hosts)
    assert document["exit_code"] == 0 and document["status"] == "successful"
    assert all(stats["unreachable"] == 0 and stats["failed"] == 0 for stats in document["hosts"].values())
