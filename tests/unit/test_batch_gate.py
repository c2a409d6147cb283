"""The budget and health gate between rolling batches (playbooks/tasks/batch_gate.yml -> `toolkit slo gate`).

A scratch project's `postgresql` playbook rolls over three local hosts one at a time, each batch marking its
host, and ends each batch with the real gate task. Prometheus is the loopback fake: what it says decides
whether the rollout goes on, and the markers show which hosts the run touched.
"""

import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.unit.conftest import CliOutcome, Project
from tests.unit.fakes import FakePrometheus
from toolkit.exit_codes import ExitCode
from toolkit.runner.result import BATCH_GATE_TASK
from toolkit.slo.health import batch_problems, wait_until_healthy
from toolkit.slo.prometheus import PrometheusAPI

Cli = Callable[..., CliOutcome]
REPO = Path(__file__).resolve().parents[2]
HOSTS = ["db-1", "db-2", "db-3"]
ROLLING_PLAY = """\
- name: Rolling | one host at a time
  hosts: postgresql
  gather_facts: false
  serial: 1
  any_errors_fatal: true
  tasks:
    - name: Change the host
      ansible.builtin.file:
        path: "{{ marker_dir }}/{{ inventory_hostname }}"
        state: touch
        mode: "0644"
  post_tasks:
    - name: Gate
      ansible.builtin.import_tasks: tasks/batch_gate.yml
"""


@pytest.fixture
def rolling(project: Project, prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project's rolling playbook and inventory; returns the directory the batches mark their hosts in."""
    (project.playbooks / "tasks").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "playbooks" / "tasks" / "batch_gate.yml", project.playbooks / "tasks" / "batch_gate.yml")
    (project.playbooks / "postgresql.yml").write_text(ROLLING_PLAY)
    markers = project.root / "markers"
    markers.mkdir()
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "marker_dir": str(markers),
        "toolkit_health_gate_settle": "1s",
    }
    inventory = {"all": {"vars": local, "children": {"postgresql": {"hosts": dict.fromkeys(HOSTS)}}}}
    path = project.root / "inventories" / "rolling.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(inventory))
    monkeypatch.setenv("TOOLKIT_INVENTORY", str(path))
    monkeypatch.setenv("TOOLKIT_PROMETHEUS_URL", prometheus.url)
    monkeypatch.setenv("TOOLKIT_BUDGET_GATE", "enforce")
    return markers


def touched(markers: Path) -> list[str]:
    return sorted(path.name for path in markers.iterdir())


def gate_requests(prometheus: FakePrometheus) -> list[str]:
    return [query for query, _ in prometheus.requests if query.startswith("up{")]


def test_a_healthy_rollout_asks_the_gate_after_every_batch_but_the_last(
    cli: Cli, rolling: Path, prometheus: FakePrometheus
) -> None:
    outcome = cli("converge", "postgresql", "--json")
    assert outcome.code == 0, outcome.err
    assert touched(rolling) == HOSTS
    assert gate_requests(prometheus) == ['up{instance=~"db\\\\-1"} == 0', 'up{instance=~"db\\\\-2"} == 0']


def test_an_unhealthy_batch_stops_the_rollout_before_the_next_host_with_exit_6(
    cli: Cli, rolling: Path, prometheus: FakePrometheus
) -> None:
    prometheus.down("postgres", "db-1")
    outcome = cli("converge", "postgresql", "--json")
    assert outcome.code == int(ExitCode.BUDGET_GATE) == 6, outcome.err
    assert touched(rolling) == ["db-1"]  # db-2 and db-3 were never changed
    document = json.loads(outcome.out)
    assert document["exit_code"] == 6
    assert [t["task"] for t in document["failed_tasks"]] == [BATCH_GATE_TASK]
    assert "postgres target on db-1 is down" in outcome.err


def test_a_critical_alert_on_the_batch_stops_it_but_a_warning_or_another_host_does_not(
    cli: Cli, rolling: Path, prometheus: FakePrometheus
) -> None:
    prometheus.fire("HostClockNotSynchronising", severity="warning", instance="db-1")
    prometheus.fire("PostgreSQLDown", severity="critical", instance="db-9")
    prometheus.fire("PostgreSQLReplicationLag", severity="critical", host="db-2")
    outcome = cli("converge", "postgresql")
    assert outcome.code == 6, outcome.err
    assert touched(rolling) == ["db-1", "db-2"]
    assert "PostgreSQLReplicationLag firing on db-2" in outcome.err


def test_a_budget_that_starts_burning_during_the_rollout_stops_it(
    cli: Cli, rolling: Path, prometheus: FakePrometheus
) -> None:
    def burn_once_the_first_host_changed() -> None:
        deadline = time.monotonic() + 60
        while not (rolling / "db-1").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        prometheus.fire("SLOErrorBudgetFastBurn", "postgresql-availability", "postgresql")

    watcher = threading.Thread(target=burn_once_the_first_host_changed, daemon=True)
    watcher.start()
    outcome = cli("converge", "postgresql")
    watcher.join()
    assert outcome.code == 6, outcome.err
    assert touched(rolling) == ["db-1"]
    assert "SLOErrorBudgetFastBurn for SLO postgresql-availability" in outcome.err


def test_a_run_forced_despite_the_budget_is_still_stopped_by_an_unhealthy_batch(
    cli: Cli, rolling: Path, prometheus: FakePrometheus
) -> None:
    prometheus.fire("SLOErrorBudgetFastBurn", "postgresql-availability", "postgresql")
    forced = cli("converge", "postgresql", "--force-despite-budget", "restoring the primary")
    assert forced.code == 0, forced.err
    assert touched(rolling) == HOSTS
    for marker in rolling.iterdir():
        marker.unlink()
    prometheus.down("postgres", "db-2")
    stopped = cli("converge", "postgresql", "--force-despite-budget", "restoring the primary")
    assert stopped.code == 6, stopped.err
    assert touched(rolling) == ["db-1", "db-2"]


def test_in_warn_mode_an_unhealthy_batch_is_reported_and_the_rollout_goes_on(
    cli: Cli, rolling: Path, prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLKIT_BUDGET_GATE", "warn")
    prometheus.down("postgres", "db-1")
    outcome = cli("converge", "postgresql")
    assert outcome.code == 0, outcome.err
    assert touched(rolling) == HOSTS


def test_with_the_gate_off_nothing_is_asked(
    cli: Cli, rolling: Path, prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLKIT_BUDGET_GATE", "off")
    prometheus.down("postgres", "db-1")
    assert cli("converge", "postgresql").code == 0
    assert touched(rolling) == HOSTS
    assert prometheus.requests == []


def test_drift_remediation_rolls_through_the_same_gate_and_stops_at_an_unhealthy_batch(
    cli: Cli, rolling: Path, prometheus: FakePrometheus
) -> None:
    # Every host drifts (the check-mode touch reports a change); the remediating converge rolls one at a time.
    prometheus.down("postgres", "db-1")
    outcome = cli("drift", "postgresql", "--remediate", "--json")
    assert outcome.code == 6, outcome.err
    assert touched(rolling) == ["db-1"]  # remediated, found unhealthy; db-2 and db-3 left drifted
    assert "postgres target on db-1 is down" in outcome.err
    assert gate_requests(prometheus)[0] == 'up{instance=~"db\\\\-1"} == 0'


def test_slo_gate_refuses_hosts_outside_the_inventory(cli: Cli, rolling: Path) -> None:
    outcome = cli("slo", "gate", "postgresql", "--hosts", "db-1,db-7")
    assert outcome.code == 2
    assert "--hosts: not in the inventory: db-7" in outcome.err


def test_a_batch_that_recovers_within_the_settle_time_passes(prometheus: FakePrometheus) -> None:
    prometheus.down("postgres", "db-1")
    api = PrometheusAPI.at(prometheus.url)
    assert batch_problems(api, ["db-1"]) == ["postgres target on db-1 is down"]
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        prometheus.down_targets.clear()  # the restarted exporter answers the next scrape

    assert wait_until_healthy(api, ["db-1"], 30, clock=lambda: now[0], sleep=sleep) == []
    assert now[0] == 5.0
