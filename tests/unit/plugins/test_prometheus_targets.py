"""prometheus_file_sd: inventory hosts as file_sd target groups, directly and through plain ansible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.plugins.loader import load_plugin

REPO = Path(__file__).resolve().parents[3]
PLUGIN = REPO / "plugins" / "filter" / "prometheus_targets.py"


targets = load_plugin("filter/prometheus_targets.py", "prometheus_targets_under_test")
LABELS = {"env": ["toolkit_env"], "cluster": ["toolkit_cluster", "cassandra_cluster_name"], "dc": ["cassandra_dc"]}
HOSTVARS: dict[str, dict[str, Any]] = {
    "cassandra-1": {
        "ansible_host": "10.0.1.11",
        "toolkit_env": "prod",
        "cassandra_cluster_name": "orders",
        "cassandra_dc": "eu-west-1",
        "group_names": ["cassandra"],
    },
    "cassandra-2": {
        "ansible_host": "2001:db8::12",
        "toolkit_env": "prod",
        "toolkit_cluster": "ledger",
        "cassandra_cluster_name": "ignored-when-toolkit_cluster-is-set",
        "cassandra_dc": "  ",
        "group_names": ["cassandra"],
    },
    "db.example.internal": {"group_names": ["postgresql", "postgresql_primary"]},
}


def test_one_group_per_host_with_address_port_and_labels() -> None:
    result = targets.file_sd(
        ["cassandra-1", "cassandra-2", "db.example.internal"], HOSTVARS, 9100, LABELS, {}, ["postgresql", "cassandra"]
    )
    assert result == [
        {
            "targets": ["10.0.1.11:9100"],
            "labels": {
                "cluster": "orders",
                "dc": "eu-west-1",
                "env": "prod",
                "instance": "cassandra-1",
                "service": "cassandra",
            },
        },
        # IPv6 in brackets; toolkit_cluster wins over the role variable; a blank dc is left out.
        {
            "targets": ["[2001:db8::12]:9100"],
            "labels": {"cluster": "ledger", "env": "prod", "instance": "cassandra-2", "service": "cassandra"},
        },
        # No ansible_host: the inventory name is the address.
        {
            "targets": ["db.example.internal:9100"],
            "labels": {"instance": "db.example.internal", "service": "postgresql"},
        },
    ]


def test_a_target_address_wins_over_the_address_the_controller_uses() -> None:
    """An EC2 host reached on its public address is scraped on its private one, inside the VPC."""
    hostvars = {"web-1": {"ansible_host": "203.0.113.7", "prometheus_target_address": "10.60.0.12"}}
    assert targets.file_sd(["web-1"], hostvars, 9100)[0]["targets"] == ["10.60.0.12:9100"]


def test_the_same_hosts_in_another_order_give_the_same_targets() -> None:
    hosts = ["db.example.internal", "cassandra-2", "cassandra-1"]
    assert targets.file_sd(hosts, HOSTVARS, 9100, LABELS) == targets.file_sd(sorted(hosts), HOSTVARS, 9100, LABELS)
    assert [group["labels"]["instance"] for group in targets.file_sd(hosts, HOSTVARS, 9100)] == sorted(hosts)


def test_static_labels_win_over_the_service_group() -> None:
    [group] = targets.file_sd(["cassandra-1"], HOSTVARS, 7070, {}, {"service": "jmx"}, ["cassandra"])
    assert group["labels"] == {"instance": "cassandra-1", "service": "jmx"}


def test_no_hosts_no_targets() -> None:
    assert targets.file_sd([], HOSTVARS, 9187) == []


@pytest.mark.parametrize(
    ("hosts", "port", "labels", "message"),
    [
        (["nope"], 9100, {}, "host 'nope' is not in the inventory"),
        (["cassandra-1"], 0, {}, "port 0 is out of range"),
        (["cassandra-1"], 9100, {"bad-label": ["x"]}, "'bad-label' is not a valid Prometheus label name"),
        (["cassandra-1"], 9100, {"__reserved": ["x"]}, "'__reserved' is not a valid Prometheus label name"),
        ("cassandra-1", 9100, {}, "expects a list of host names"),
    ],
)
def test_bad_input_is_refused_with_a_message(hosts: Any, port: int, labels: dict[str, Any], message: str) -> None:
    with pytest.raises(targets.TargetError, match=message):
        targets.file_sd(hosts, HOSTVARS, port, labels)


def test_loads_in_plain_ansible_through_the_project_config(tmp_path: Path) -> None:
    """The role calls it from a template; plain ansible (and AWX) find it through ansible.cfg, not toolkit."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"toolkit_env": "lab"},
                    "children": {"cassandra": {"hosts": {"c1": {"ansible_host": "10.1.0.1", "cassandra_dc": "dc1"}}}},
                }
            }
        )
    )
    labels = "{'env': ['toolkit_env'], 'dc': ['cassandra_dc']}"
    expression = f"{{{{ groups['cassandra'] | prometheus_file_sd(hostvars, 7070, {labels}) | to_json }}}}"
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_CACHE_PLUGIN": "memory",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "localhost",
            "-i",
            str(inventory),
            "-c",
            "local",
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={expression}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    message = json.loads(result.stdout.split("=>", 1)[1])["msg"]
    message = json.loads(message) if isinstance(message, str) else message
    assert message == [{"targets": ["10.1.0.1:7070"], "labels": {"dc": "dc1", "env": "lab", "instance": "c1"}}]
