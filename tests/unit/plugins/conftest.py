"""The aws_fleet plugin's fixtures: the plugin module itself, moto's server, and one fleet seeded per session.

moto is slow (about 10 ms per instance launched and 4 ms per instance listed), so the big fleet is seeded once
and listed once through our plugin and once through amazon.aws.aws_ec2; the tests share those answers.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.unit.plugins.loader import load_plugin as load_plugin_module
from tests.unit.plugins.moto_fleet import Batch, ec2, env_for, launch, moto_server, scrubbed_environ

REPO = Path(__file__).resolve().parents[3]
PLUGIN = REPO / "plugins" / "inventory" / "aws_fleet.py"
BIN = Path(sys.executable).parent
BIG_REGION = "eu-west-1"
REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
# Long enough to be odd, short enough for AWS's 256-character limit on tag values.
LONG_VALUE = "long-" + "x" * 250


def load_plugin() -> ModuleType:
    """The plugin as a module of its own, as Ansible's loader would import it (it must not need toolkit)."""
    return load_plugin_module("inventory/aws_fleet.py", "aws_fleet_under_test")


@pytest.fixture(scope="session")
def aws_fleet() -> ModuleType:
    return load_plugin()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def aws_env(endpoint: str, **extra: str) -> dict[str, str]:
    """A clean environment for ansible-inventory: moto's endpoint, fake keys, none of the developer's AWS files."""
    return {
        **scrubbed_environ(),
        **env_for(endpoint),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        # The checkout's config for its inventory_plugins path, but not its fact cache (a lab's facts, which
        # ansible-inventory would show as host variables of hosts named like the lab's).
        "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
        **extra,
    }


def write_config(directory: Path, name: str, config: dict[str, Any]) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def ansible_inventory(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(config), *(args or ("--list",))],
        env=env,
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def listed(config: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    result = ansible_inventory(config, env, *args)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def plain(value: Any) -> Any:
    """A value of ``ansible-inventory --list`` without its ``__ansible_unsafe`` markers (untrusted strings)."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


@dataclass(frozen=True)
class Fleet:
    """What was seeded, so tests can state what the inventory must contain."""

    url: str
    running: frozenset[str]  # instance ids the default states [running] must list
    stopped: frozenset[str]
    terminated: frozenset[str]
    by_region: dict[str, frozenset[str]]  # running instance ids per region
    cassandra: dict[str, tuple[str, str, str]]  # instance id -> (region, zone, Name)
    postgresql: dict[str, str]  # instance id -> role tag
    odd: dict[str, dict[str, str]]  # instance id -> its odd tags


def _seed(url: str) -> Fleet:
    running: set[str] = set()
    cassandra: dict[str, tuple[str, str, str]] = {}
    postgresql: dict[str, str] = {}
    odd: dict[str, dict[str, str]] = {}
    by_region: dict[str, set[str]] = {region: set() for region in REGIONS}

    def add(batch: Batch) -> list[str]:
        ids = launch(ec2(url, batch.region), batch)
        running.update(ids)
        by_region[batch.region].update(ids)
        return ids

    big = ec2(url, BIG_REGION)
    # The bulk: 1,000 web hosts in reservations of 10 over three zones, so one region holds more than a page.
    for zone in ("eu-west-1a", "eu-west-1b", "eu-west-1c"):
        add(Batch(BIG_REGION, 4, {"service": "web", "env": "prod"}, zone=zone, per_reservation=2))
        add(Batch(BIG_REGION, 330, {"service": "web", "env": "prod"}, zone=zone))
    # A Cassandra ring over two regions: three racks in eu-west-1, two in us-east-1.
    for region, zone, count in (
        ("eu-west-1", "eu-west-1a", 2),
        ("eu-west-1", "eu-west-1b", 2),
        ("eu-west-1", "eu-west-1c", 1),
        ("us-east-1", "us-east-1a", 2),
        ("us-east-1", "us-east-1b", 1),
    ):
        for _ in range(count):
            index = len(cassandra) + 1
            name = f"cassandra-{index}"
            tags = {"Name": name, "service": "cassandra", "cluster": "ring", "env": "prod"}
            (instance,) = add(Batch(region, 1, tags, zone=zone))
            cassandra[instance] = (region, zone, name)
    # A PostgreSQL cluster: one primary, two replicas (one with an explicit tag, one without).
    for name, role in (("pg-1", "primary"), ("pg-2", "replica"), ("pg-3", "")):
        tags = {"Name": name, "service": "postgresql", "cluster": "orders", "env": "prod"}
        if role:
            tags["role"] = role
        (instance,) = add(Batch(BIG_REGION, 1, tags))
        postgresql[instance] = role or "replica"
    add(Batch("us-east-1", 1, {"Name": "prometheus-1", "service": "prometheus", "env": "prod"}))
    add(Batch("ap-southeast-2", 12, {"service": "web", "env": "staging"}))
    add(Batch("ap-southeast-2", 1, {"Name": "prometheus-2", "service": "prometheus", "env": "staging"}))
    # Odd tags: empty, spaces, unicode, the longest AWS allows, a Jinja expression, and a Name used twice.
    for tags in (
        {"service": "web", "env": "", "cluster": " "},
        {"service": "web", "env": "  spaced  out  ", "Name": "same-name"},
        {"service": "web", "env": "café ünïcode Ω", "Name": "same-name"},
        {"service": "web", "env": LONG_VALUE, "cluster": "a:b,c[d]"},
        {"service": "web", "env": "prod", "note": "{{ lookup('pipe', 'id') }}", "Name": "héllo wörld"},
    ):
        (instance,) = add(Batch(BIG_REGION, 1, tags))
        odd[instance] = tags
    # Stopped and terminated instances, which the default states leave out.
    stopped = launch(big, Batch(BIG_REGION, 5, {"service": "web", "env": "prod", "batch": "stopped"}))
    big.stop_instances(InstanceIds=stopped)
    terminated = launch(big, Batch(BIG_REGION, 2, {"service": "web", "env": "prod", "batch": "terminated"}))
    big.terminate_instances(InstanceIds=terminated)
    return Fleet(
        url=url,
        running=frozenset(running),
        stopped=frozenset(stopped),
        terminated=frozenset(terminated),
        by_region={region: frozenset(ids) for region, ids in by_region.items()},
        cassandra=cassandra,
        postgresql=postgresql,
        odd=odd,
    )


@pytest.fixture(scope="session")
def fleet(moto_url: str) -> Fleet:
    return _seed(moto_url)


@pytest.fixture(scope="session")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("aws-fleet")


def fleet_config(**overrides: Any) -> dict[str, Any]:
    """The plugin's configuration for the seeded fleet: small pages so the big region takes several."""
    return {
        "plugin": "aws_fleet",
        "regions": list(REGIONS),
        "hostnames": ["instance-id"],
        "page_size": 25,
        **overrides,
    }


@dataclass(frozen=True)
class Listing:
    config: Path
    cache: Path
    document: dict[str, Any]
    seconds: float


@pytest.fixture(scope="session")
def fleet_listing(fleet: Fleet, fleet_dir: Path) -> Listing:
    """The whole fleet through our plugin, cold, with the processed cache on: the answer most tests read."""
    import time

    cache = fleet_dir / "cache"
    config = write_config(
        fleet_dir,
        "fleet.aws.yml",
        fleet_config(cache=True, cache_plugin="jsonfile", cache_connection=str(cache), cache_timeout=3600),
    )
    started = time.perf_counter()
    document = listed(config, aws_env(fleet.url))
    return Listing(config=config, cache=cache, document=document, seconds=time.perf_counter() - started)
