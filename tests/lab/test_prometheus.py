"""End to end on the lab: `toolkit converge prometheus` scrapes every lab host from the inventory alone (node
exporters everywhere, postgres_exporter on both PostgreSQL hosts, the JMX agent on the three Cassandra nodes),
every target is up, and broken rules or configuration given as variables are refused by promtool while the
running server keeps serving. Needs the minimal (or full) profile.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.helpers import converge_json, parse_json, toolkit

pytestmark = pytest.mark.lab
SERVER = "prometheus-1"
SERVER_ADDRESS = "10.242.10.31"


def api(path: str) -> Any:
    """Prometheus's HTTP API from this controller, through the lab network (as an operator reaches it)."""
    with urllib.request.urlopen(f"http://{SERVER_ADDRESS}:9090{path}", timeout=10) as response:
        return json.loads(response.read())["data"]


@pytest.fixture(scope="module")
def prometheus_lab(lab: Any) -> Iterator[Any]:
    if SERVER not in lab.hosts or not {"postgresql-1", "cassandra-1"} <= set(lab.hosts):
        pytest.fail(f"the {lab.profile} profile has no Prometheus server with PostgreSQL and Cassandra to scrape")
    # What the server scrapes must run first: the baseline and node_exporter everywhere, and the services
    # whose exporters it scrapes (no-change runs when earlier tests converged them).
    artifact = toolkit("artifact", "cassandra", "--json", timeout=900)
    assert artifact.returncode == 0, artifact.stderr
    for service in ("base", "node_exporter", "postgresql", "cassandra"):
        result = toolkit("converge", service)
        assert result.returncode == 0, f"converge {service}: {result.stderr}"
    yield lab


def test_converge_scrapes_every_host_and_exporter_of_the_inventory(prometheus_lab: Any) -> None:
    document = converge_json("prometheus")
    assert document["_returncode"] == 0, document["_stderr"]
    assert set(document["hosts"]) == {SERVER}
    verify = toolkit("verify", "prometheus", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert parse_json(verify.stdout)["hosts"][SERVER]["failed"] == 0
    # Counted from this side too: the lab's six hosts, both PostgreSQL servers, the three Cassandra nodes.
    targets = api("/api/v1/targets?state=active")["activeTargets"]
    per_job = Counter(target["labels"]["job"] for target in targets)
    assert per_job == {"node": len(prometheus_lab.hosts), "postgres": 2, "cassandra": 3, "prometheus": 1}
    assert [t["scrapeUrl"] for t in targets if t["health"] != "up"] == []
    racks = {t["labels"]["instance"]: t["labels"].get("rack") for t in targets if t["labels"]["job"] == "cassandra"}
    assert racks == {"cassandra-1": "rack1", "cassandra-2": "rack1", "cassandra-3": "rack2"}


def test_second_converge_changes_nothing(prometheus_lab: Any) -> None:
    document = converge_json("prometheus")
    assert document["_returncode"] == 0, document["_stderr"]
    assert document["changed_tasks"] == []


def test_broken_rules_or_config_are_refused_by_promtool_and_the_server_keeps_serving(
    prometheus_lab: Any, tmp_path: Path
) -> None:
    before = api("/api/v1/status/runtimeinfo")["lastConfigTime"]
    groups_before = sorted(group["name"] for group in api("/api/v1/rules")["groups"])
    cases = {
        "rule": (
            {
                "prometheus_rule_files": {
                    "broken": {"groups": [{"name": "b", "rules": [{"alert": "B", "expr": "up =="}]}]}
                }
            },
            "could not parse expression",
        ),
        "config": (
            {
                "prometheus_scrape_configs_extra": [
                    {"job_name": "broken", "scrape_interval": "5s", "scrape_timeout": "30s", "static_configs": []}
                ]
            },
            "scrape timeout greater than scrape interval",
        ),
    }
    for name, (extra, message) in cases.items():
        document = converge_json("prometheus", extra=extra, tmp_path=tmp_path)
        assert document["_returncode"] != 0, name
        # promtool's own words reach the operator, in the summary and in --json.
        assert message in json.dumps(document["failed_tasks"]), (name, document["failed_tasks"])
    assert api("/api/v1/status/runtimeinfo")["lastConfigTime"] == before
    assert sorted(group["name"] for group in api("/api/v1/rules")["groups"]) == groups_before
    assert "broken" not in {t["labels"]["job"] for t in api("/api/v1/targets")["activeTargets"]}
    # And the next ordinary converge has nothing to repair: nothing was written.
    document = converge_json("prometheus")
    assert document["_returncode"] == 0, document["_stderr"]
    assert document["changed_tasks"] == []
