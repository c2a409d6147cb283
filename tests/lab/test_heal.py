"""End to end on the lab, nobody in the loop, through `toolkit heal serve` on this controller (the lab's
Alertmanager posts the heal route's alerts to it, one host per notification, with a bearer token):

- a stopped PostgreSQL replica fires PostgreSQLDown, and the rulebook's `toolkit converge postgresql --limit
  postgresql-2` starts it again; exactly one remediation, although Alertmanager keeps the group alive;
- a tampered postgresql.conf is found by the drift job cron runs every minute, whose metrics the controller's
  node_exporter serves to the lab's Prometheus; ToolkitDriftDetected fires, heal converges the host, the next
  scheduled drift run is clean and the alert resolves. Each step's time is printed.

Needs the minimal (or full) profile.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.helpers import (
    PROJECT,
    TOOLKIT,
    drift_runs,
    ensure_converged,
    ensure_installed,
    on_host,
    parse_json,
    prometheus_api,
    start_cron,
    toolkit,
    wait_until_no_drift_runs,
)
from toolkit.lab.profiles import GATEWAY

pytestmark = pytest.mark.lab
REPLICA = "postgresql-2"
SERVICE = "postgresql@15-main"
# inventories/lab/group_vars/prometheus.yml: the heal receiver's URL and token.
HEAL_PORT = 9096
# PostgreSQLDown's `for: 1m`, evaluation and group_wait (5 s each in the lab), the rulebook, the converge.
RESTORE_DEADLINE_SECONDS = 300
# The controller's node_exporter (textfile collector only) and where the lab's Prometheus learns its address
# (inventories/lab/group_vars/prometheus.yml: the `toolkit` job's file_sd drop-in directory).
EXPORTER_PORT = 9101
CONTROLLER_TARGETS = "/etc/prometheus/file_sd/controller/lab-controller.yml"
PG_CONF = "/etc/postgresql/15/main/postgresql.conf"
TAMPERED_WORK_MEM = "77MB"
# Drift every minute (up to 60 s to the first run, ~30 s of check), the alert's lab `for` (15 s), the
# remediation, the next scheduled run (up to 60 s + ~30 s), the alert resolving. Goal: under 5 minutes.
DRIFT_RESTORE_DEADLINE_SECONDS = 480


def wait_for_port(address: str, port: int, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"nothing listens on {address}:{port}:\n" + log.read_text()[-3000:]
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)


def stop(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def lab_heal_token() -> str:
    settings = yaml.safe_load((PROJECT / "inventories" / "lab" / "group_vars" / "prometheus.yml").read_text())
    [heal] = [r for r in settings["alertmanager_receivers"] if r["name"] == "heal"]
    return str(heal["webhook_configs"][0]["http_config"]["authorization"]["credentials"])


def remediations() -> list[dict[str, Any]]:
    result = toolkit("heal", "status", "--json", "--last", "50")
    assert result.returncode == 0, result.stderr
    return list(parse_json(result.stdout)["remediations"])


@pytest.fixture(scope="module")
def heal_server(lab: Any) -> Iterator[subprocess.Popen[str]]:
    if not {REPLICA, "prometheus-1"} <= set(lab.hosts):
        pytest.fail(f"the {lab.profile} profile has no PostgreSQL replica and Prometheus server")
    # What the alerts and remediations under test involve is as the code says (the prometheus converge gives the
    # lab's Alertmanager its heal route); the rest only has to be installed and running: a Cassandra never
    # converged would fire CassandraNodeDown, a remediation of its own. Re-converging all of `site` here cost
    # 348 s in CI, mostly a rolling restart of the Cassandra setting test_cassandra leaves changed.
    ensure_converged("base", "node_exporter", "postgresql", "prometheus")
    ensure_installed("hardening", "cassandra")
    log = PROJECT / ".toolkit" / "heal-lab-test.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(TOOLKIT), "heal", "serve", "--listen", f"{GATEWAY}:{HEAL_PORT}"],
            cwd=PROJECT,
            env={**os.environ, "TOOLKIT_HEAL_TOKEN": lab_heal_token()},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    wait_for_port(GATEWAY, HEAL_PORT, server, log)
    yield server
    stop(server)
    print(log.read_text()[-2000:])


def test_a_stopped_replica_is_restarted_by_its_own_alert(heal_server: subprocess.Popen[str]) -> None:
    before = {r["run_id"] for r in remediations()}
    stopped_at = time.monotonic()
    assert on_host(REPLICA, f"systemctl stop {SERVICE}").returncode == 0
    print(f"{time.strftime('%H:%M:%S')} stopped {SERVICE} on {REPLICA}")

    def new_remediations() -> list[dict[str, Any]]:
        return [r for r in remediations() if r["run_id"] not in before]

    while not [r for r in new_remediations() if r["finished_at"]]:
        assert heal_server.poll() is None, "toolkit heal serve stopped"
        assert time.monotonic() - stopped_at < RESTORE_DEADLINE_SECONDS, "no remediation finished in time"
        time.sleep(3)
    [remediation] = new_remediations()
    restored = time.monotonic() - stopped_at
    print(f"{time.strftime('%H:%M:%S')} remediation {remediation['run_id']} finished, {restored:.0f} s after the stop")
    assert remediation["note"].startswith(f"heal: PostgreSQLDown on {REPLICA}"), remediation["note"]
    assert (remediation["target"], remediation["limit_expr"], remediation["exit_code"]) == ("postgresql", REPLICA, 0)
    assert on_host(REPLICA, f"systemctl is-active {SERVICE}").stdout.strip() == "active"
    shown = toolkit("runs", "show", remediation["run_id"], "--json")
    assert json.loads(shown.stdout)["changed"] >= 1

    # Alertmanager keeps notifying the group until the alert resolves: still one remediation after that.
    time.sleep(40)
    assert len(new_remediations()) == 1, new_remediations()


@pytest.fixture
def textfile_dir(tmp_path: Path, heal_server: subprocess.Popen[str]) -> Iterator[Path]:
    """The controller's textfile directory, served by its node_exporter to the lab's Prometheus (job toolkit)."""
    directory = tmp_path / "textfile"
    directory.mkdir()
    log = tmp_path / "node_exporter.log"
    with log.open("w") as output:
        exporter = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "prometheus-node-exporter"),  # scripts/setup extracts it
                f"--web.listen-address={GATEWAY}:{EXPORTER_PORT}",
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={directory}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    wait_for_port(GATEWAY, EXPORTER_PORT, exporter, log)
    target = f"- targets: ['{GATEWAY}:{EXPORTER_PORT}']\n"
    dropped = on_host(
        "prometheus-1",
        f'mkdir -p {os.path.dirname(CONTROLLER_TARGETS)} && printf %s "{target}" > {CONTROLLER_TARGETS} '
        f"&& chmod 0644 {CONTROLLER_TARGETS}",
    )
    assert dropped.returncode == 0, dropped.stderr
    try:
        deadline = time.monotonic() + 90
        while [r["value"][1] for r in prometheus_api("/api/v1/query?query=up%7Bjob%3D%22toolkit%22%7D")["result"]] != [
            "1"
        ]:
            assert time.monotonic() < deadline, "the lab's Prometheus does not scrape the controller's exporter"
            time.sleep(2)
        yield directory
    finally:
        on_host("prometheus-1", f"rm -f {CONTROLLER_TARGETS}")
        stop(exporter)


def drift_alerts(host: str) -> list[dict[str, Any]]:
    alerts = prometheus_api("/api/v1/alerts")["alerts"]
    return [
        a for a in alerts if a["labels"].get("alertname") == "ToolkitDriftDetected" and a["labels"].get("host") == host
    ]


def scheduled_drift(after: str, exit_code: int) -> dict[str, Any] | None:
    """The first scheduled postgresql drift run started at or after `after` that finished with `exit_code`."""
    runs = [
        r
        for r in drift_runs()
        if r["note"] == "scheduled" and r["target"] == "postgresql" and r["started_at"] >= after
        and r["status"] != "running"
    ]  # fmt: skip
    found = [r for r in sorted(runs, key=lambda r: r["started_at"]) if r["exit_code"] == exit_code]
    return found[0] if found else None


def work_mem(host: str) -> str:
    return on_host(host, "su postgres -c \"psql -tAc 'SHOW work_mem'\"").stdout.strip()


def test_a_tampered_setting_is_found_by_the_drift_job_and_healed_by_its_alert(
    heal_server: subprocess.Popen[str], textfile_dir: Path
) -> None:
    before = {r["run_id"] for r in remediations()}
    installed = toolkit(
        "drift", "schedule", "install", "postgresql", "--every", "1m", "--backend", "cron",
        env={"TOOLKIT_TEXTFILE_DIR": str(textfile_dir)},
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    daemon = start_cron()
    started = time.monotonic()

    def now_iso() -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def step(what: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} +{time.monotonic() - started:5.0f} s  {what}")

    def wait_for(what: str, found: Any) -> Any:
        while not (value := found()):
            assert heal_server.poll() is None, "toolkit heal serve stopped"
            assert time.monotonic() - started < DRIFT_RESTORE_DEADLINE_SECONDS, f"not within the deadline: {what}"
            time.sleep(3)
        step(what)
        return value

    try:
        tampered_at = now_iso()
        tampered = on_host(
            REPLICA, f"echo \"work_mem = '{TAMPERED_WORK_MEM}'\" >> {PG_CONF} && systemctl reload {SERVICE}"
        )
        assert tampered.returncode == 0, tampered.stderr
        wait_for(
            f"{REPLICA} runs with work_mem {TAMPERED_WORK_MEM} (tampered)",
            lambda: work_mem(REPLICA) == TAMPERED_WORK_MEM,
        )

        found = wait_for("the drift job found it", lambda: scheduled_drift(tampered_at, 3))
        metrics = (textfile_dir / "toolkit_drift_postgresql.prom").read_text()
        drifted = re.search(
            rf'toolkit_drift_resources{{target="postgresql",host="{REPLICA}",service="postgresql"}} (\d+)', metrics
        )
        assert drifted and int(drifted.group(1)) >= 1, metrics  # postgresql.conf, and the reload it would cause
        assert 'toolkit_drift_resources{target="postgresql",host="postgresql-1",service="postgresql"} 0' in metrics
        wait_for(
            "ToolkitDriftDetected fires",
            lambda: [a for a in drift_alerts(REPLICA) if a["state"] == "firing"],
        )

        def new_remediations() -> list[dict[str, Any]]:
            return [r for r in remediations() if r["run_id"] not in before]

        [remediation] = wait_for(
            "heal's remediation finished", lambda: [r for r in new_remediations() if r["finished_at"]]
        )
        assert remediation["note"].startswith(f"heal: ToolkitDriftDetected on {REPLICA}"), remediation["note"]
        assert (remediation["target"], remediation["limit_expr"], remediation["exit_code"]) == (
            "postgresql", REPLICA, 0
        )  # fmt: skip
        assert work_mem(REPLICA) != TAMPERED_WORK_MEM
        assert TAMPERED_WORK_MEM not in on_host(REPLICA, f"cat {PG_CONF}").stdout

        wait_for("the next scheduled drift run is clean", lambda: scheduled_drift(remediation["finished_at"], 0))
        wait_for("ToolkitDriftDetected resolved", lambda: not drift_alerts(REPLICA))
        restored = time.monotonic() - started
        print(f"time to restore (tamper -> clean drift run and alert resolved): {restored:.0f} s; drift seen by "
              f"run {found['run_id']}, healed by {remediation['run_id']}")  # fmt: skip
        assert len(new_remediations()) == 1, new_remediations()
    finally:
        assert toolkit("drift", "schedule", "remove", "postgresql").returncode == 0
        wait_until_no_drift_runs(timeout=300)  # a job outlives cron: let it release the lock first
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)
