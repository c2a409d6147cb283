"""End to end on the lab, nobody in the loop: a stopped PostgreSQL replica fires PostgreSQLDown, the lab's
Alertmanager posts it (heal route, one host per notification, bearer token) to `toolkit heal serve` on this
controller, and the heal rulebook's `toolkit converge postgresql --limit postgresql-2` starts it again. Exactly
one remediation, although Alertmanager keeps the group alive until the alert resolves. Needs the minimal (or
full) profile.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.lab.helpers import PROJECT, SITE, TOOLKIT, ensure_converged, on_host, parse_json, toolkit
from toolkit.lab.profiles import GATEWAY

pytestmark = pytest.mark.lab
REPLICA = "postgresql-2"
SERVICE = "postgresql@15-main"
# inventories/lab/group_vars/prometheus.yml: the heal receiver's URL and token.
HEAL_PORT = 9096
# PostgreSQLDown's `for: 1m`, evaluation and group_wait (5 s each in the lab), the rulebook, the converge.
RESTORE_DEADLINE_SECONDS = 300


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
    ensure_converged(*SITE)  # the site converge gives the lab's Alertmanager its heal route
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
    deadline = time.monotonic() + 90
    while True:
        assert server.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "toolkit heal serve did not listen:\n" + log.read_text()[-3000:]
        try:
            with socket.create_connection((GATEWAY, HEAL_PORT), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    yield server
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
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
