"""End to end on the lab: after `toolkit converge site` (the whole fleet, hardened, on fresh hosts) Prometheus
scrapes every lab host from the inventory alone (node exporters everywhere, postgres_exporter on both
PostgreSQL hosts, the JMX agent on the three Cassandra nodes) and every target is up; broken rules or
configuration given as variables are refused by promtool while the running server keeps serving; a stopped
replica fires its alerts and the PostgreSQL SLO's fast burn, which `toolkit slo` shows and which closes the
budget gate to a converge of postgresql until it is forced (the history keeps why), and that converge resolves
the alerts. Needs the minimal (or full) profile.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.lab.helpers import (
    PROMETHEUS_ADDRESS,
    changed_on,
    converge_json,
    on_host,
    parse_json,
    prometheus_api,
    toolkit,
)
from toolkit.lab.profiles import GATEWAY

pytestmark = pytest.mark.lab
SERVER = "prometheus-1"
SERVER_ADDRESS = PROMETHEUS_ADDRESS
REPLICA = "postgresql-2"
# inventories/lab/group_vars/prometheus.yml points Alertmanager's webhook here.
WEBHOOK_PORT = 9095
# PostgreSQLDown's `for:` is 1m; then one evaluation (5 s in the lab), Alertmanager's group_wait (5 s) and
# slack for a loaded 2-core machine.
FIRE_DEADLINE_SECONDS = 150
# The fast burn's `for:` is 2m, once the 5m and 1h error ratios pass 14.4x the budget (seconds into the outage).
FAST_BURN_DEADLINE_SECONDS = 240
FAST_BURN = 'ALERTS{alertname="SLOErrorBudgetFastBurn", slo="postgresql-availability", alertstate="firing"}'
# The lab's budget gate only warns (its tests burn budgets on purpose); this test enforces it.
ENFORCED = {"TOOLKIT_BUDGET_GATE": "enforce"}
OVERRIDE = "lab test: restore the stopped replica"


def alertmanager_alerts(alertname: str) -> list[dict[str, Any]]:
    """Alertmanager's active alerts of one name, through its API from this controller."""
    query = urllib.parse.quote(f'alertname="{alertname}"')
    url = f"http://{SERVER_ADDRESS}:9093/api/v2/alerts?active=true&silenced=false&filter={query}"
    with urllib.request.urlopen(url, timeout=10) as response:
        alerts: list[dict[str, Any]] = json.loads(response.read())
    return alerts


def wait_until(condition: Any, deadline_seconds: float, what: str) -> float:
    """Seconds until condition() held; fails with `what` after the deadline."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < deadline_seconds, f"{what}: not within {deadline_seconds} s"
        time.sleep(2)
    return time.monotonic() - start


class Webhook:
    """Alertmanager's webhook receiver, on this controller's lab address: every notification it posts."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer((GATEWAY, WEBHOOK_PORT), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notified(self, status: str, alertname: str, instance: str) -> bool:
        return any(
            alert["status"] == status
            and alert["labels"].get("alertname") == alertname
            and alert["labels"].get("instance") == instance
            for message in self.received
            for alert in message["alerts"]
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def prometheus_lab(lab: Any) -> Iterator[Any]:
    if SERVER not in lab.hosts or not {"postgresql-1", "cassandra-1"} <= set(lab.hosts):
        pytest.fail(f"the {lab.profile} profile has no Prometheus server with PostgreSQL and Cassandra to scrape")
    # The site converge installs Cassandra from the artifact the controller builds (cached once built).
    artifact = toolkit("artifact", "cassandra", "--json", timeout=900)
    assert artifact.returncode == 0, artifact.stderr
    yield lab


def test_converge_site_builds_the_fleet_and_prometheus_scrapes_all_of_it(prometheus_lab: Any) -> None:
    """One `toolkit converge site`: baseline, hardening (firewall on), node_exporter, PostgreSQL, Cassandra and
    Prometheus last, so every exporter is a target when the server's targets are written."""
    document = converge_json("site", timeout=3600)
    assert document["_returncode"] == 0, document["_stderr"]
    assert set(document["hosts"]) == set(prometheus_lab.hosts)
    assert document["totals"]["failed"] == 0
    ruleset = on_host(SERVER, "nft list chain inet filter input")
    assert ruleset.returncode == 0 and "policy drop" in ruleset.stdout, "the hardening firewall is not on"
    verify = toolkit("verify", "prometheus", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert parse_json(verify.stdout)["hosts"][SERVER]["failed"] == 0
    # Counted from this side too: the lab's six hosts, both PostgreSQL servers, the three Cassandra nodes, and
    # blackbox_exporter's probes of their client ports (5432, 9042), every one of which got a connection.
    targets = prometheus_api("/api/v1/targets?state=active")["activeTargets"]
    per_job = Counter(target["labels"]["job"] for target in targets)
    expected = {"node": len(prometheus_lab.hosts), "postgres": 2, "cassandra": 3, "prometheus": 1, "alertmanager": 1}
    assert per_job == {**expected, "probe_postgresql": 2, "probe_cassandra": 3}
    probes = prometheus_api("/api/v1/query?query=probe_success")["result"]
    assert sorted((p["metric"]["job"], p["metric"]["instance"], p["value"][1]) for p in probes) == [
        ("probe_cassandra", "cassandra-1", "1"), ("probe_cassandra", "cassandra-2", "1"),
        ("probe_cassandra", "cassandra-3", "1"), ("probe_postgresql", "postgresql-1", "1"),
        ("probe_postgresql", "postgresql-2", "1"),
    ]  # fmt: skip
    assert [t["scrapeUrl"] for t in targets if t["health"] != "up"] == []
    racks = {t["labels"]["instance"]: t["labels"].get("rack") for t in targets if t["labels"]["job"] == "cassandra"}
    assert racks == {"cassandra-1": "rack1", "cassandra-2": "rack1", "cassandra-3": "rack2"}


def test_a_broken_rule_is_refused_by_promtool_and_the_server_keeps_serving(prometheus_lab: Any, tmp_path: Path) -> None:
    """Through toolkit: promtool's words reach the operator. (Every kind of broken input, promtool's and
    amtool's, is molecule/prometheus's side effect.)"""
    before = prometheus_api("/api/v1/status/runtimeinfo")["lastConfigTime"]
    groups_before = sorted(group["name"] for group in prometheus_api("/api/v1/rules")["groups"])
    broken = {
        "prometheus_rule_files": {"broken": {"groups": [{"name": "b", "rules": [{"alert": "B", "expr": "up =="}]}]}}
    }
    document = converge_json("prometheus", extra=broken, tmp_path=tmp_path)
    assert document["_returncode"] != 0
    # promtool's own words reach the operator, in --json as in the summary.
    assert "could not parse expression" in json.dumps(document["failed_tasks"]), document["failed_tasks"]
    assert prometheus_api("/api/v1/status/runtimeinfo")["lastConfigTime"] == before
    assert sorted(group["name"] for group in prometheus_api("/api/v1/rules")["groups"]) == groups_before


def test_second_converge_changes_nothing(prometheus_lab: Any) -> None:
    """After the first converge and the refused one above: nothing to change, so nothing was left half-written."""
    document = converge_json("prometheus")
    assert document["_returncode"] == 0, document["_stderr"]
    assert document["changed_tasks"] == []


def test_postgresql_stopping_on_the_replica_fires_alerts_that_a_converge_resolves(
    prometheus_lab: Any, webhook: Webhook
) -> None:
    """The whole path: exporter, scrape, rule, Alertmanager, receiver; and back once the service is restored."""
    assert alertmanager_alerts("PostgreSQLDown") == []
    stopped = on_host(REPLICA, "systemctl stop postgresql@15-main")
    assert stopped.returncode == 0, stopped.stderr
    try:
        fired = wait_until(
            lambda: any(a["labels"]["instance"] == REPLICA for a in alertmanager_alerts("PostgreSQLDown")),
            FIRE_DEADLINE_SECONDS,
            "PostgreSQLDown in Alertmanager",
        )
        print(f"PostgreSQLDown reached Alertmanager {fired:.0f} s after the stop")
        [alert] = [a for a in alertmanager_alerts("PostgreSQLDown") if a["labels"]["instance"] == REPLICA]
        assert alert["labels"]["service"] == "postgresql"
        assert alert["labels"]["severity"] == "critical"
        # The primary sees its slot go idle: the replication alert fires for the primary's instance.
        wait_until(
            lambda: (
                [a["labels"]["slot_name"] for a in alertmanager_alerts("PostgreSQLReplicaNotStreaming")]
                == ["postgresql_2"]
            ),
            60,
            "PostgreSQLReplicaNotStreaming in Alertmanager",
        )
        wait_until(lambda: webhook.notified("firing", "PostgreSQLDown", REPLICA), 60, "the firing webhook")
        # Half the PostgreSQL SLI's events fail: its budget burns far faster than 14.4x; after the alert's
        # `for: 2m` the fast burn fires, and `toolkit slo` and the budget gate see it.
        burning = wait_until(
            lambda: bool(prometheus_api(f"/api/v1/query?query={urllib.parse.quote(FAST_BURN)}")["result"]),
            FAST_BURN_DEADLINE_SECONDS,
            "SLOErrorBudgetFastBurn for postgresql-availability",
        )
        print(f"SLOErrorBudgetFastBurn fired {fired + burning:.0f} s after the stop")
        slo = toolkit("slo", "status", "--json")
        assert slo.returncode == 0, slo.stderr
        figures = {s["name"]: s for s in parse_json(slo.stdout)["slos"]}
        assert figures["postgresql-availability"]["state"] == "burning"
        assert figures["postgresql-availability"]["burn_rate_1h"] > 14.4
        assert figures["postgresql-availability"]["sli"] < 0.999
        assert figures["node-availability"]["state"] == "ok" and figures["node-availability"]["sli"] > 0.999
        refused = toolkit("converge", "postgresql", "--json", env=ENFORCED)
        assert refused.returncode == 6, refused.stderr
        gate = parse_json(refused.stdout)["budget_gate"]
        # The port probe's SLO (postgresql-connect) burns too, and may have fired by now: only PostgreSQL's close it.
        closing = {(a["alert"], a["slo"]) for a in gate["closing_alerts"]}
        assert ("SLOErrorBudgetFastBurn", "postgresql-availability") in closing
        assert closing <= {
            ("SLOErrorBudgetFastBurn", "postgresql-availability"),
            ("SLOErrorBudgetFastBurn", "postgresql-connect"),
        }
        assert on_host(REPLICA, "systemctl is-active postgresql@15-main").stdout.strip() != "active"
    finally:
        forced = toolkit("converge", "postgresql", "--json", "--force-despite-budget", OVERRIDE, env=ENFORCED)
        shown = parse_json(forced.stdout) if forced.stdout.strip() else {}
        document = {**shown, "_returncode": forced.returncode, "_stderr": forced.stderr}
    assert document["_returncode"] == 0, document["_stderr"]
    history = toolkit("runs", "show", document["run_id"], "--json")
    note = parse_json(history.stdout)["note"]
    assert note.startswith(f"forced despite budget: {OVERRIDE} (gate: SLOErrorBudgetFastBurn"), note
    assert changed_on(document, "Start the server (and keep it running).") == [REPLICA]
    resolved = wait_until(
        lambda: not alertmanager_alerts("PostgreSQLDown") and not alertmanager_alerts("PostgreSQLReplicaNotStreaming"),
        90,
        "the alerts resolved",
    )
    print(f"resolved {resolved:.0f} s after the converge")
    wait_until(lambda: webhook.notified("resolved", "PostgreSQLDown", REPLICA), 60, "the resolved webhook")


def test_report_counts_this_modules_converges_the_failed_one_and_its_restore(prometheus_lab: Any) -> None:
    """`toolkit report` over this module's own history: the site converge, the refused rule (a failed deployment)
    and the converge after it that restored the service, the forced PostgreSQL converge."""
    result = toolkit("report", "--since", "3h", "--json")
    assert result.returncode == 0, result.stderr
    figures = parse_json(result.stdout)
    print(f"toolkit report: {json.dumps({k: figures[k] for k in ('deployments', 'failed', 'time_to_restore')})}")
    assert figures["deployments"] >= 4
    assert figures["failed"] >= 1 and 0 < figures["change_failure_rate"] < 1
    assert figures["services"]["prometheus"]["failed"] >= 1
    assert figures["time_to_restore"]["failed_change"]["count"] >= 1
    assert figures["time_to_restore"]["failed_change"]["median_seconds"] > 0
