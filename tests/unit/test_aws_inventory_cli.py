"""`toolkit inventory` in-process through main(): the tree, the JSON shapes, and one-line usage errors."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import CliOutcome, Project
from tests.unit.test_cli_app import assert_usage_error, toolkit

Cli = Callable[..., CliOutcome]
GROUPS = {"cassandra": ["cassandra-1", "cassandra-2"], "postgresql_primary": ["postgresql-1"], "web": ["web-1"]}


@pytest.fixture
def inventory(project: Project) -> Path:
    source = project.inventory(GROUPS)
    (source.parent / "group_vars").mkdir()
    (source.parent / "group_vars" / "cassandra.yml").write_text("cassandra_dc: dc1\n")
    return source


def test_the_default_is_the_group_tree_on_stdout(cli: Cli, inventory: Path) -> None:
    outcome = cli("inventory", "-i", str(inventory))
    assert outcome.code == 0, outcome.err
    lines = outcome.out.splitlines()
    assert lines[0] == "@all (4 hosts)"
    assert "@cassandra (2 hosts)" in outcome.out and "@web (1 host)" in outcome.out
    assert "ungrouped" not in outcome.out  # empty groups are left out
    cassandra = next(i for i, line in enumerate(lines) if "@cassandra" in line)
    assert [line.strip("│├└─ ") for line in lines[cassandra + 1 : cassandra + 3]] == ["cassandra-1", "cassandra-2"]
    assert outcome.err.startswith(f"4 host(s) from {inventory} (parsed in ")


def test_list_is_ansible_inventorys_json_with_every_variable(cli: Cli, inventory: Path) -> None:
    outcome = cli("inventory", "-i", str(inventory), "--list")
    assert outcome.code == 0, outcome.err
    document: dict[str, Any] = json.loads(outcome.out)
    assert document["cassandra"] == {"hosts": ["cassandra-1", "cassandra-2"]}
    assert sorted(document["all"]["children"]) == ["cassandra", "postgresql_primary", "web"]
    assert document["_meta"]["hostvars"]["cassandra-1"] == {"cassandra_dc": "dc1"}  # group_vars/ included
    assert document["_meta"]["hostvars"]["web-1"] == {}


def test_a_limit_narrows_the_hosts_and_groups(cli: Cli, inventory: Path) -> None:
    document = json.loads(cli("inventory", "-i", str(inventory), "--list", "-l", "cassandra-2,web").out)
    assert sorted(document["_meta"]["hostvars"]) == ["cassandra-2", "web-1"]
    assert "postgresql_primary" not in document
    assert document["cassandra"] == {"hosts": ["cassandra-2"]}


def test_host_shows_one_hosts_variables(cli: Cli, inventory: Path) -> None:
    outcome = cli("inventory", "-i", str(inventory), "--host", "cassandra-1")
    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out) == {"cassandra_dc": "dc1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "nope"], "error: no host 'nope' in "),
        (["--list", "--graph"], "error: --graph, --list and --host are alternatives: give one"),
    ],
)
def test_bad_requests_are_one_line_usage_errors(cli: Cli, inventory: Path, args: list[str], message: str) -> None:
    outcome = cli("inventory", "-i", str(inventory), *args)
    assert outcome.code == 2
    assert outcome.err.startswith(message) and outcome.out == ""


def test_a_limit_matching_nothing_is_one_line_and_a_hint(project: Project, inventory: Path) -> None:
    # A real process: Ansible's warnings go to fd 2, which pytest's capture would not fold away.
    completed = toolkit(project, "inventory", "-i", str(inventory), "-l", "nothing")
    assert_usage_error(completed, "--limit 'nothing' matches no host in ", "hosts: cassandra-1, cassandra-2")


def test_a_malformed_inventory_is_one_line(project: Project) -> None:
    source = project.root / "bad.yml"
    source.write_text("all:\n  hosts:\n    a:\n   b: [\n")
    assert_usage_error(toolkit(project, "inventory", "-i", str(source)), "YAML parsing failed")


def test_without_a_lab_the_default_inventory_is_a_usage_error(cli: Cli) -> None:
    outcome = cli("inventory")
    assert outcome.code == 2
    assert "the lab is not up" in outcome.err and "toolkit lab up" in outcome.err


def test_refresh_parses_with_the_cache_off(cli: Cli, inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible.inventory import manager

    seen: list[bool] = []
    real = manager.InventoryManager

    def recording(*args: Any, cache: bool = True, **kwargs: Any) -> Any:
        seen.append(cache)
        return real(*args, cache=cache, **kwargs)

    monkeypatch.setattr(manager, "InventoryManager", recording)
    assert cli("inventory", "-i", str(inventory)).code == 0
    outcome = cli("inventory", "-i", str(inventory), "--refresh")
    assert outcome.code == 0
    assert seen == [True, False]
    assert "(queried again in " in outcome.err


def test_cached_facts_are_not_inventory_variables(project: Project, inventory: Path) -> None:
    # The project caches facts as the checkout's ansible.cfg does, and a run has left cassandra-1's behind.
    facts = project.home / "facts"
    assert os.environ["ANSIBLE_CACHE_PLUGIN_CONNECTION"] == str(facts)  # the fixture's: never the checkout's
    (project.root / "ansible.cfg").write_text(
        f"[defaults]\nfact_caching = jsonfile\nfact_caching_connection = {facts}\nfact_caching_timeout = 7200\n"
    )
    from ansible.plugins.loader import cache_loader, init_plugin_loader
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    if AnsibleCollectionConfig.collection_finder is None:
        init_plugin_loader()
    # Written by Ansible's own cache plugin, exactly as a run's fact gathering stores them.
    cache_loader.get("ansible.builtin.jsonfile").set(
        "cassandra-1", {"ansible_distribution": "Debian", "ansible_local": {}, "discovered_interpreter_python": "py"}
    )
    assert list(facts.iterdir()), "the fact cache was not written where the project's config points"
    # The plant is live: Ansible's own VariableManager merges it, and so does ansible-inventory --host.
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--host", "cassandra-1"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["ansible_distribution"] == "Debian"

    host = toolkit(project, "inventory", "-i", str(inventory), "--host", "cassandra-1")
    assert host.returncode == 0, host.stderr
    assert json.loads(host.stdout) == {"cassandra_dc": "dc1"}
    listing = toolkit(project, "inventory", "-i", str(inventory), "--list")
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)["_meta"]["hostvars"] == {
        "cassandra-1": {"cassandra_dc": "dc1"},
        "cassandra-2": {"cassandra_dc": "dc1"},
        "postgresql-1": {},
        "web-1": {},
    }
