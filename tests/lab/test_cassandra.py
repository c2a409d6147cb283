"""End to end on the lab: `toolkit converge cassandra` builds a three-node cluster over two racks, changes
nothing the second time, reports a hand edit in check mode, refuses bad input before any change, and
restarts every node one at a time under a QUORUM writer that sees no failed write. Needs a profile with
cassandra-1..3 (minimal and full have them).
"""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.helpers import PROJECT, changed_on, converge_json, ensure_converged, on_host, parse_json, toolkit

pytestmark = pytest.mark.lab
NODES = ("cassandra-1", "cassandra-2", "cassandra-3")
START_TASK = "Start or restart Cassandra."
CONFIG_TASK = "Write Cassandra's configuration files."
NODETOOL = "/usr/local/bin/nodetool -h 127.0.0.1 -p 7199"


def converge(*args: str, extra: dict[str, Any] | None = None, tmp_path: Path | None = None) -> dict[str, Any]:
    return converge_json("cassandra", *args, extra=extra, tmp_path=tmp_path)


def status(host: str = NODES[0]) -> dict[str, tuple[str, str]]:
    """`nodetool status` from one node: {address: (state, rack)}."""
    output = on_host(host, f"{NODETOOL} status").stdout
    return {
        m.group(2): (m.group(1), m.group(3)) for m in re.finditer(r"(?m)^([UD][NJLM])\s+(\S+)\s.*\s(\S+)\s*$", output)
    }


@pytest.fixture(scope="module")
def cassandra_lab(lab: Any) -> Iterator[Any]:
    if not set(NODES) <= set(lab.hosts):
        pytest.fail(f"the {lab.profile} profile has no three Cassandra nodes")
    artifact = toolkit("artifact", "cassandra", "--json", timeout=900)
    assert artifact.returncode == 0, artifact.stderr
    ensure_converged("base")
    yield lab


def test_converge_builds_three_nodes_up_and_normal_over_two_racks(cassandra_lab: Any) -> None:
    document = converge()
    assert document["_returncode"] == 0, document["_stderr"]
    assert_no_password_leaked(document)
    assert status() == {
        "10.242.10.11": ("UN", "rack1"),
        "10.242.10.12": ("UN", "rack1"),
        "10.242.10.13": ("UN", "rack2"),
    }


def test_second_converge_changes_nothing_and_restarts_nothing(cassandra_lab: Any) -> None:
    document = converge()
    assert document["_returncode"] == 0, document["_stderr"]
    assert document["totals"]["changed"] == 0, document["changed_tasks"]


def test_verify_cassandra_passes_by_real_cql(cassandra_lab: Any) -> None:
    result = toolkit("verify", "cassandra", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    document = parse_json(result.stdout)
    assert set(document["hosts"]) == set(NODES)
    assert all(v["passed"] >= 10 and v["failed"] == 0 for v in document["hosts"].values())


def test_check_diff_shows_a_hand_edit_and_the_fix_restarts_nothing(cassandra_lab: Any) -> None:
    node, config = "cassandra-2", "/etc/cassandra/cassandra.yaml"
    edit = on_host(
        node,
        f"sed -i 's/^concurrent_writes: 32$/concurrent_writes: 64/' {config} "
        f"&& grep -c '^concurrent_writes: 64$' {config}",
    )
    assert edit.stdout.strip() == "1", edit.stderr
    try:
        checked = converge("--check", "--diff")
        assert checked["_returncode"] == 0, checked["_stderr"]
        assert changed_on(checked, CONFIG_TASK) == [node]
        diffs = [
            diff
            for event in _job_events(Path(checked["artifacts"]))
            if event.get("event") == "runner_on_ok" and event["event_data"]["host"] == node
            for result in _item_results(event["event_data"]["res"])
            for diff in _as_list(result.get("diff"))
            if str(diff.get("before_header", "")).endswith(config)
        ]
        assert diffs, "check mode showed no diff of cassandra.yaml"
        assert "concurrent_writes: 64" in diffs[0]["before"] and "concurrent_writes: 32" in diffs[0]["after"]
        assert on_host(node, f"grep -c '^concurrent_writes: 64$' {config}").stdout.strip() == "1", "check mode wrote"
    finally:
        repaired = converge()
    assert repaired["_returncode"] == 0, repaired["_stderr"]
    assert changed_on(repaired, CONFIG_TASK) == [node]
    # The node never read the edit: putting the file back is no reason to restart it.
    assert changed_on(repaired, START_TASK) == []


def test_bad_input_fails_before_anything_changes(cassandra_lab: Any, tmp_path: Path) -> None:
    cases = {
        "seeds": ({"cassandra_seeds": ["cassandra-9"]}, "cassandra-9"),
        "heap": ({"cassandra_heap_mb": 4096}, "heap of 4096 MiB"),
        "rf": ({"cassandra_keyspaces": [{"name": "ledger", "replication": {"dc1": 4}}]}, "dc1=4"),
        "package source": (
            {"cassandra_install_method": "package"},
            "cassandra_install_method package needs cassandra_apt_repository",
        ),
    }
    for name, (extra, message) in cases.items():
        document = converge(extra=extra, tmp_path=tmp_path)
        assert document["_returncode"] != 0, name
        assert document["totals"]["changed"] == 0, name
        assert message in json.dumps(document["failed_tasks"]), (name, document["failed_tasks"])

    # A node without a rack, in an inventory otherwise the lab's.
    inventory = yaml.safe_load((PROJECT / "inventories" / "lab" / "hosts.yml").read_text())
    del inventory["all"]["children"]["cassandra"]["hosts"]["cassandra-3"]["cassandra_rack"]
    broken = tmp_path / "no-rack.yml"
    broken.write_text(yaml.safe_dump(inventory))
    result = toolkit("converge", "cassandra", "--json", "-i", str(broken))
    assert result.returncode != 0
    document = parse_json(result.stdout)
    assert document["totals"]["changed"] == 0
    assert "these have none or a malformed one: cassandra-3" in json.dumps(document["failed_tasks"])


def test_a_rolling_restart_under_quorum_writes_fails_no_write(cassandra_lab: Any, tmp_path: Path) -> None:
    """Last in this file: it leaves the cluster running with the changed setting (the next converge of the
    lab's own settings restarts it back, one node at a time again)."""
    extra = tmp_path / "change.yml"
    extra.write_text(yaml.safe_dump({"cassandra_concurrent_reads": 48}))
    run = subprocess.run(
        [
            sys.executable,
            str(PROJECT / "benchmarks" / "cassandra_rolling_restart.py"),
            "--hosts",
            "10.242.10.11,10.242.10.12,10.242.10.13",
            "--password-file",
            str(PROJECT / ".toolkit" / "lab" / "secrets" / "cassandra-superuser"),
            "--json",
            "--",
            str(Path(sys.executable).parent / "toolkit"),
            "converge",
            "cassandra",
            "--json",
            "-e",
            f"@{extra}",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    report = json.loads(run.stdout)
    print({k: v for k, v in report.items() if k != "command_stdout"})  # the figures, in the test log
    assert report["command_exit"] == 0, report["command_stdout"][-2000:]
    assert report["writes_attempted"] > 1000, "the writer barely wrote: the test proves nothing"
    assert report["writes_failed"] == 0, report["failures"]
    assert report["acknowledged_missing"] == 0
    converged = json.loads(report["command_stdout"])
    # Every node restarted once, seeds first, one at a time: each went down only after the previous was up.
    assert changed_on(converged, START_TASK) == list(NODES)
    events = [(e["node"], e["event"]) for e in report["timeline"] if e["event"] in ("down", "up")]
    assert events == [
        (address, what) for address in ("10.242.10.11", "10.242.10.12", "10.242.10.13") for what in ("down", "up")
    ]
    assert on_host(NODES[0], "grep -c '^concurrent_reads: 48$' /etc/cassandra/cassandra.yaml").stdout.strip() == "1"


def assert_no_password_leaked(document: dict[str, Any]) -> None:
    """Neither the managed superuser's nor the app role's password is in the run's output or artifacts."""
    secrets = [
        (PROJECT / ".toolkit" / "lab" / "secrets" / name).read_text().strip()
        for name in ("cassandra-superuser", "cassandra-app")
    ]
    texts = [json.dumps(document)] + [
        p.read_text(errors="replace") for p in Path(document["artifacts"]).rglob("*") if p.is_file()
    ]
    assert all(len(secret) >= 16 for secret in secrets)
    assert [secret for secret in secrets if any(secret in text for text in texts)] == []


def _job_events(artifacts: Path) -> Iterator[dict[str, Any]]:
    for path in sorted((artifacts / "job_events").glob("*.json")):
        yield json.loads(path.read_text())


def _item_results(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list(result.get("results") or [result])


def _as_list(value: Any) -> list[dict[str, Any]]:
    if not value:
        return []
    return value if isinstance(value, list) else [value]
