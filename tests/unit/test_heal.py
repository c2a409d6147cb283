"""`toolkit heal serve`: the real ansible-rulebook (Java 17 under it) runs rulebooks/heal.yml on loopback, and
the Alertmanager notifications posted to it become `toolkit converge` runs of a scratch project whose hosts
are local connections. What is asserted is what reaches the run history: one converge per alert group,
however often Alertmanager repeats it, one at a time, never for a host outside the inventory.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.conftest import CliOutcome, Project
from tests.unit.fakes import FakePrometheus
from toolkit.runner.history import History, RunRecord

Cli = Callable[..., CliOutcome]
REPO = Path(__file__).resolve().parents[2]
TOOLKIT = Path(sys.executable).parent / "toolkit"
TOKEN = "unit-test-heal-token-0123456789"
# The JVM and the rule engine start in 2-4 s here; a loaded CI machine gets more.
START_DEADLINE_SECONDS = 60
RUN_DEADLINE_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def notification(alertname: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) notification of one alert group."""
    group = {"alertname": alertname, **labels}
    key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group.items())) + "}"
    alert = {"status": status, "labels": group, "annotations": {}, "startsAt": "2026-12-05T06:00:00Z"}
    return {
        "version": "4",
        "groupKey": key,
        "status": status,
        "receiver": "heal",
        "groupLabels": group,
        "commonLabels": group,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid:9093",
        "alerts": [alert],
    }


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    log: Path
    history: History

    def post(self, body: bytes | dict[str, Any], token: str = TOKEN) -> int:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/alerts",
            data=data,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def converges(self) -> list[RunRecord]:
        return sorted(self.history.list(limit=100, kind="converge"), key=lambda r: r.started_at)

    def wait_for_converges(self, count: int) -> list[RunRecord]:
        deadline = time.monotonic() + RUN_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            finished = [r for r in self.converges() if r.finished_at is not None]
            if len(finished) >= count:
                return finished
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.5)
        raise AssertionError(f"{count} converge(s) not finished in time:\n{self.log.read_text()[-3000:]}")


@pytest.fixture
def heal_project(project: Project) -> Path:
    """The scratch project gets the real rulebook and remediation playbook; its hosts are local."""
    shutil.copytree(REPO / "rulebooks", project.root / "rulebooks")
    shutil.copy(REPO / "playbooks" / "_heal.yml", project.playbooks / "_heal.yml")
    # Long enough that two remediations running at once would overlap in the history.
    (project.playbooks / "base.yml").write_text(
        "- name: Base\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Take a moment\n      ansible.builtin.pause:\n        seconds: 2\n"
    )
    inventory = project.root / "inventories" / "heal.yml"
    inventory.parent.mkdir(parents=True, exist_ok=True)
    hosts = {"web-1": None, "web-2": None}
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory.write_text(yaml.safe_dump({"all": {"vars": local, "children": {"web": {"hosts": hosts}}}}))
    return inventory


def start_server(inventory: Path, project: Project) -> Server:
    port = free_port()
    log = project.home / "heal.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TOOLKIT_HEAL_TOKEN": TOKEN}
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(TOOLKIT), "heal", "serve", "-i", str(inventory), "--listen", f"127.0.0.1:{port}"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            start_new_session=True,
        )
    ready = Server(f"http://127.0.0.1:{port}", process, log, History(project.home / "toolkit.db"))
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "ansible-rulebook did not listen in time:\n" + log.read_text()[-3000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    return ready


def stop_server(server: Server) -> None:
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


@pytest.fixture
def server(heal_project: Path, project: Project) -> Iterator[Server]:
    running = start_server(heal_project, project)
    yield running
    stop_server(running)


def test_an_alert_repeated_20_times_is_one_converge_and_groups_run_one_at_a_time(server: Server, cli: Cli) -> None:
    drift = notification("ToolkitDriftDetected", host="web-1", service="base", instance="controller:9100")
    for _ in range(20):
        assert server.post(drift) == 200
    assert server.post(notification("ToolkitDriftDetected", host="web-2", service="base")) == 200

    first, second = server.wait_for_converges(2)
    time.sleep(3)  # room for a duplicate to start, if throttling let one through
    assert len(server.converges()) == 2, server.log.read_text()[-3000:]
    assert (first.target, first.limit_expr, first.exit_code) == ("base", "web-1", 0)
    assert first.note == "heal: ToolkitDriftDetected on web-1"
    assert (second.limit_expr, second.note) == ("web-2", "heal: ToolkitDriftDetected on web-2")
    assert first.finished_at is not None and second.started_at >= first.finished_at, "remediations overlapped"

    status = cli("heal", "status", "--json")
    document = json.loads(status.out)
    assert document["running"] is True and document["server"]["listen"] == server.url.removeprefix("http://")
    assert [r["limit_expr"] for r in document["remediations"]] == ["web-2", "web-1"]


def test_alerts_it_must_not_act_on_change_nothing(server: Server) -> None:
    assert server.post(notification("ToolkitDriftDetected", host="db-9", service="base")) == 200  # not ours
    assert server.post(notification("ToolkitDriftDetected", service="base")) == 200  # no host at all
    assert server.post(notification("ToolkitDriftDetected", "resolved", host="web-1", service="base")) == 200
    assert server.post(notification("HostDiskSpaceLow", instance="web-1")) == 200  # not a healing alert
    assert server.post(notification("ToolkitDriftDetected", host="web-1", service="base"), token="wrong") == 401
    assert server.post(b'{"status": "firing", "commonLabels": ') == 400
    # Sent last and handled in order: once it has run, everything above has been handled.
    assert server.post(notification("ToolkitDriftDetected", host="web-2", service="base")) == 200

    [only] = server.wait_for_converges(1)
    time.sleep(2)
    assert len(server.converges()) == 1, server.log.read_text()[-3000:]
    assert only.limit_expr == "web-2"
    log = server.log.read_text()
    assert "heal: ignored ToolkitDriftDetected: host db-9 is not in the inventory" in log
    assert "heal: ignored ToolkitDriftDetected: the notification names no single host" in log
    assert TOKEN not in log


def test_a_closed_budget_gate_stops_drift_remediation_but_not_the_fix_of_an_outage(
    heal_project: Path, project: Project, prometheus: FakePrometheus
) -> None:
    """The gate is the converge's own: drift waits for the budget; an outage alert overrides it with a reason."""
    (project.playbooks / "postgresql.yml").write_text(
        "- name: Postgresql\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Nothing\n      ansible.builtin.meta: noop\n"
    )
    inventory = yaml.safe_load(heal_project.read_text())
    inventory["all"]["vars"]["toolkit_prometheus_url"] = prometheus.url
    heal_project.write_text(yaml.safe_dump(inventory))
    prometheus.fire("SLOErrorBudgetFastBurn", "base-availability", "base")
    prometheus.fire("SLOErrorBudgetFastBurn", "postgresql-availability", "postgresql")
    running = start_server(heal_project, project)
    try:
        assert running.post(notification("ToolkitDriftDetected", host="web-1", service="base")) == 200
        assert running.post(notification("PostgreSQLDown", instance="web-2", service="postgresql")) == 200
        [fix] = running.wait_for_converges(1)
        time.sleep(2)
        assert len(running.converges()) == 1, running.log.read_text()[-3000:]
    finally:
        stop_server(running)
    assert (fix.target, fix.limit_expr, fix.exit_code) == ("postgresql", "web-2", 0)
    assert fix.note is not None and fix.note.startswith("heal: PostgreSQLDown on web-2; forced despite budget:")
    assert "budget gate closed for base: SLOErrorBudgetFastBurn" in running.log.read_text()


def test_serve_refuses_bad_settings_in_one_line(cli: Cli, heal_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOOLKIT_HEAL_TOKEN", raising=False)
    missing = cli("heal", "serve", "-i", str(heal_project))
    assert missing.code == 2 and "TOOLKIT_HEAL_TOKEN must hold the webhook's shared token" in missing.err
    monkeypatch.setenv("TOOLKIT_HEAL_TOKEN", "short")
    assert cli("heal", "serve", "-i", str(heal_project)).code == 2
    monkeypatch.setenv("TOOLKIT_HEAL_TOKEN", TOKEN)
    listen = cli("heal", "serve", "-i", str(heal_project), "--listen", "127.0.0.1")
    assert listen.code == 2 and "--listen '127.0.0.1' is not HOST:PORT" in listen.err
    inventory = cli("heal", "serve", "-i", "/nonexistent.yml")
    assert inventory.code == 2 and "does not exist" in inventory.err
    status = cli("heal", "status", "--json")
    assert json.loads(status.out) == {"running": False, "server": None, "remediations": []}


def test_inside_another_runner_job_only_that_jobs_settings_are_dropped() -> None:
    from toolkit.runner.nested import leave_enclosing_runner

    inside = {
        "AWX_ISOLATED_DATA_DIR": "/tmp/eda/artifacts/1",
        "ANSIBLE_STDOUT_CALLBACK": "awx_display",
        "ANSIBLE_CALLBACK_PLUGINS": "/tmp/eda/artifacts/1/callback",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": "/tmp/eda/artifacts/1/fact_cache",
        "ANSIBLE_CONFIG": "/srv/toolkit/ansible.cfg",
        "TOOLKIT_HOME": "/var/lib/toolkit",
    }
    dropped = leave_enclosing_runner(inside)
    assert set(dropped) == {
        "AWX_ISOLATED_DATA_DIR",
        "ANSIBLE_STDOUT_CALLBACK",
        "ANSIBLE_CALLBACK_PLUGINS",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION",
    }
    assert inside == {"ANSIBLE_CONFIG": "/srv/toolkit/ansible.cfg", "TOOLKIT_HOME": "/var/lib/toolkit"}
    # Outside a job, a user's own callback settings are theirs.
    outside = {"ANSIBLE_STDOUT_CALLBACK": "yaml", "ANSIBLE_CACHE_PLUGIN_CONNECTION": "/var/cache/facts"}
    assert leave_enclosing_runner(outside) == [] and len(outside) == 2
