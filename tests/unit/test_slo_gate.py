"""The budget gate and `toolkit slo`, in-process through main(), against an HTTP server on loopback that
answers Prometheus's query API (ansible-runner faked as in test_cli_converge).

The server answers ALERTS queries by applying the query's own service matcher to the alerts a test plants,
so a gate that asked about the wrong services lets the run through and fails its test. The lab test
(tests/lab/test_prometheus.py) drives the same gate against the lab's real Prometheus and a real outage.
"""

import base64
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit import fakes
from tests.unit.conftest import CliOutcome, Project
from tests.unit.fakes import FakeAnsibleRunner, FakePrometheus
from toolkit.runner.history import History

Cli = Callable[..., CliOutcome]
InstallFake = Callable[..., FakeAnsibleRunner]


def write_inventory(project: Project, all_vars: dict[str, Any], extra_groups: dict[str, Any] | None = None) -> Path:
    path = project.root / "inventories" / "gated.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    children = {"web": {"hosts": {"web-1": None, "web-2": None}}, **(extra_groups or {})}
    path.write_text(yaml.safe_dump({"all": {"vars": all_vars, "children": children}}))
    return path


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_run() -> list[fakes.Event]:
    return [
        fakes.play_start("Base"),
        fakes.task_ok("web-1", "Write config", changed=True),
        fakes.recap(ok={"web-1": 2, "web-2": 1}, changed={"web-1": 1}),
    ]


@pytest.fixture
def gated(project: Project, prometheus: FakePrometheus) -> Path:
    return write_inventory(project, {"toolkit_prometheus_url": prometheus.url})


def test_a_fast_burn_for_the_service_refuses_the_converge_and_nothing_runs(
    cli: Cli, fake_runner: InstallFake, gated: Path, prometheus: FakePrometheus
) -> None:
    fake = fake_runner(clean_run())
    prometheus.fire("SLOErrorBudgetFastBurn", "base-availability", "base")

    outcome = cli("converge", "base", "-i", str(gated), "--json")

    assert outcome.code == 6, outcome.err
    assert fake.calls == []
    document = json.loads(outcome.out)
    assert document["status"] == "refused" and document["exit_code"] == 6
    assert document["budget_gate"]["closing_alerts"] == [
        {"alert": "SLOErrorBudgetFastBurn", "slo": "base-availability", "service": "base"}
    ]
    assert "budget gate closed for base: SLOErrorBudgetFastBurn for SLO base-availability (base)" in outcome.err
    assert "--force-despite-budget" in outcome.err and "Traceback" not in outcome.err


def test_an_exhausted_budget_refuses_too_and_site_is_gated_by_every_service_it_imports(
    cli: Cli, fake_runner: InstallFake, project: Project, gated: Path, prometheus: FakePrometheus
) -> None:
    (project.playbooks / "site.yml").write_text("- ansible.builtin.import_playbook: base.yml\n")
    fake = fake_runner(clean_run())
    prometheus.fire("SLOErrorBudgetExhausted", "base-availability", "base")

    outcome = cli("converge", "site", "-i", str(gated))

    assert outcome.code == 6, outcome.err
    assert fake.calls == []
    assert "SLOErrorBudgetExhausted for SLO base-availability (base)" in outcome.err


def test_alerts_of_other_services_and_slow_burns_let_the_converge_through(
    cli: Cli, fake_runner: InstallFake, gated: Path, prometheus: FakePrometheus
) -> None:
    fake = fake_runner(clean_run())
    prometheus.fire("SLOErrorBudgetFastBurn", "cassandra-availability", "cassandra")
    prometheus.fire("SLOErrorBudgetFastBurn", "database-availability", "base-database")  # a prefix is not a match
    prometheus.fire("SLOErrorBudgetSlowBurn", "base-availability", "base")

    outcome = cli("converge", "base", "-i", str(gated))

    assert outcome.code == 0, outcome.err
    assert len(fake.calls) == 1
    assert "SLOErrorBudgetSlowBurn for SLO base-availability (base) (slow burn: the change goes on)" in outcome.err
    assert "cassandra" not in outcome.err


def test_the_override_runs_and_the_history_keeps_its_reason_and_what_it_overrode(
    cli: Cli, fake_runner: InstallFake, project: Project, gated: Path, prometheus: FakePrometheus
) -> None:
    fake = fake_runner(clean_run())
    prometheus.fire("SLOErrorBudgetFastBurn", "base-availability", "base")

    outcome = cli(
        "converge", "base", "-i", str(gated), "--force-despite-budget", "INC-42 restores the replica", "--json"
    )

    assert outcome.code == 0, outcome.err
    assert len(fake.calls) == 1
    run_id = json.loads(outcome.out)["run_id"]
    [record] = History(project.home / "toolkit.db").list()
    assert record.run_id == run_id
    assert record.note == (
        "forced despite budget: INC-42 restores the replica"
        " (gate: SLOErrorBudgetFastBurn for SLO base-availability (base))"
    )
    shown = cli("runs", "show", run_id)
    assert "INC-42 restores the replica" in shown.out


def test_an_override_without_a_reason_is_a_usage_error(cli: Cli, fake_runner: InstallFake, gated: Path) -> None:
    fake = fake_runner(clean_run())
    outcome = cli("converge", "base", "-i", str(gated), "--force-despite-budget", "  ")
    assert outcome.code == 2 and "--force-despite-budget needs a reason" in outcome.err
    assert fake.calls == []


def test_check_mode_changes_nothing_so_the_gate_is_not_asked(
    cli: Cli, fake_runner: InstallFake, gated: Path, prometheus: FakePrometheus
) -> None:
    fake_runner(clean_run())
    prometheus.fire("SLOErrorBudgetFastBurn", "base-availability", "base")
    outcome = cli("converge", "base", "-i", str(gated), "--check")
    assert outcome.code == 0, outcome.err
    assert prometheus.requests == []


def test_warn_mode_reports_the_closed_gate_and_goes_on(
    cli: Cli, fake_runner: InstallFake, gated: Path, prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLKIT_BUDGET_GATE", "warn")
    fake = fake_runner(clean_run())
    prometheus.fire("SLOErrorBudgetFastBurn", "base-availability", "base")
    outcome = cli("converge", "base", "-i", str(gated))
    assert outcome.code == 0, outcome.err
    assert len(fake.calls) == 1
    assert "budget gate (warn): SLOErrorBudgetFastBurn for SLO base-availability (base); going on" in outcome.err


@pytest.mark.parametrize(
    ("policy", "code"),
    [("closed", 6), ("open", 0)],
)
def test_an_unreachable_prometheus_follows_the_inventorys_policy(
    cli: Cli, fake_runner: InstallFake, project: Project, policy: str, code: int
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    inventory = write_inventory(project, {"toolkit_prometheus_url": url, "toolkit_budget_gate_unreachable": policy})
    fake = fake_runner(clean_run())
    outcome = cli("converge", "base", "-i", str(inventory))
    assert outcome.code == code, outcome.err
    assert len(fake.calls) == (1 if code == 0 else 0)
    assert f"Prometheus at {url} did not answer" in outcome.err
    assert "Traceback" not in outcome.err


def test_an_http_error_from_prometheus_counts_as_no_answer(
    cli: Cli, fake_runner: InstallFake, gated: Path, prometheus: FakePrometheus
) -> None:
    prometheus.status = 503
    fake_runner(clean_run())
    outcome = cli("converge", "base", "-i", str(gated))
    assert outcome.code == 6
    assert "answered HTTP 503: bad_data" in outcome.err


def test_without_a_prometheus_the_gate_is_off_unless_the_inventory_enforces_it(
    cli: Cli, fake_runner: InstallFake, project: Project
) -> None:
    fake_runner(clean_run())
    silent = write_inventory(project, {})
    assert cli("converge", "base", "-i", str(silent)).code == 0

    enforced = write_inventory(project, {"toolkit_budget_gate": "enforce"})
    outcome = cli("converge", "base", "-i", str(enforced))
    assert outcome.code == 6
    assert "no Prometheus to ask" in outcome.err


def test_a_mode_that_does_not_exist_is_one_line_and_exit_2(
    cli: Cli, fake_runner: InstallFake, gated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLKIT_BUDGET_GATE", "strict")
    fake = fake_runner(clean_run())
    outcome = cli("converge", "base", "-i", str(gated))
    assert outcome.code == 2
    assert "budget gate mode 'strict' is not one of auto, enforce, warn, off" in outcome.err
    assert fake.calls == []


def test_the_prometheus_group_locates_the_server_and_credentials_go_only_in_the_header(
    cli: Cli, fake_runner: InstallFake, project: Project, prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = prometheus.url.rsplit(":", 1)[1]
    server = {"hosts": {"prom-1": {"ansible_host": "127.0.0.1", "prometheus_web_listen_address": f"0.0.0.0:{port}"}}}
    inventory = write_inventory(project, {}, {"prometheus": server})
    monkeypatch.setenv("TOOLKIT_PROMETHEUS_USERNAME", "toolkit")
    monkeypatch.setenv("TOOLKIT_PROMETHEUS_PASSWORD", "s3cret-gate-pw")
    fake_runner(clean_run())
    prometheus.fire("SLOErrorBudgetFastBurn", "base-availability", "base")

    outcome = cli("converge", "base", "-i", str(inventory), "--json")

    assert outcome.code == 6
    [(query, headers)] = prometheus.requests
    assert 'service=~"base"' in query
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"toolkit:s3cret-gate-pw").decode()
    assert "s3cret-gate-pw" not in outcome.out + outcome.err


def test_slo_status_shows_each_slos_figures_from_the_recorded_series(
    cli: Cli, project: Project, gated: Path, prometheus: FakePrometheus
) -> None:
    (project.root / "slos.yml").write_text(
        yaml.safe_dump(
            {
                "slos": [
                    {"name": "pg", "service": "postgresql", "objective": 99.9, "window": "30d"},
                    {"name": "node", "service": "node_exporter", "objective": 99.5, "window": "7d"},
                    {"name": "new", "service": "cassandra", "objective": 99.9, "window": "30d"},
                ]
            }
        )
    )
    prometheus.series = {
        "slo:sli_error:ratio_rate30d": [({"slo": "pg"}, "0.0004"), ({"slo": "new"}, "NaN")],
        "slo:sli_error:ratio_rate7d": [({"slo": "node"}, "0.001")],
        "slo:error_budget_remaining:ratio": [({"slo": "pg"}, "0.6"), ({"slo": "node"}, "0.8")],
        "slo:burn_rate:ratio_rate1h": [({"slo": "pg"}, "20"), ({"slo": "node"}, "0")],
    }
    prometheus.fire("SLOErrorBudgetFastBurn", "pg", "postgresql")

    outcome = cli("slo", "status", "-i", str(gated), "--json")

    assert outcome.code == 0, outcome.err
    document = json.loads(outcome.out)
    assert document["prometheus_url"] == prometheus.url
    by_name = {s["name"]: s for s in document["slos"]}
    assert by_name["pg"]["sli"] == pytest.approx(0.9996)
    assert (by_name["pg"]["budget_remaining"], by_name["pg"]["burn_rate_1h"]) == (0.6, 20.0)
    assert (by_name["pg"]["firing"], by_name["pg"]["state"]) == (["SLOErrorBudgetFastBurn"], "burning")
    assert by_name["node"]["sli"] == pytest.approx(0.999) and by_name["node"]["state"] == "ok"
    assert (by_name["new"]["sli"], by_name["new"]["state"]) == (None, "no data")

    table = cli("slo", "-i", str(gated))
    assert table.code == 0, table.err
    assert "99.960%" in table.out and "burning (SLOErrorBudgetFastBurn)" in table.out and "no data" in table.out


def test_slo_status_without_an_answer_is_one_line_and_exit_4(cli: Cli, project: Project) -> None:
    slo = {"name": "pg", "service": "postgresql", "objective": 99.9, "window": "30d"}
    (project.root / "slos.yml").write_text(yaml.safe_dump({"slos": [slo]}))
    url = f"http://127.0.0.1:{closed_port()}"
    outcome = cli("slo", "status", "--prometheus-url", url)
    assert outcome.code == 4
    assert f"Prometheus at {url} did not answer" in outcome.err and "Traceback" not in outcome.err


def test_every_shipped_slo_gates_a_service_that_exists() -> None:
    repo = Path(__file__).resolve().parents[2]
    services = {p.stem for p in (repo / "playbooks").glob("*.yml")}
    slos = yaml.safe_load((repo / "slos.yml").read_text())["slos"]
    assert {s["service"] for s in slos} <= services


def drifted_check() -> list[fakes.Event]:
    return [
        fakes.play_start("Base"),
        fakes.task_ok("web-1", "Write config", changed=True),
        fakes.recap(ok={"web-1": 2, "web-2": 2}, changed={"web-1": 1}),
    ]


def quiet_check() -> list[fakes.Event]:
    return [fakes.play_start("Base"), fakes.task_ok("web-1", "Write config"), fakes.recap(ok={"web-1": 2})]


def test_drift_remediate_checks_but_does_not_converge_while_the_gate_is_closed(
    cli: Cli, fake_runner: InstallFake, project: Project, gated: Path, prometheus: FakePrometheus
) -> None:
    fake = fake_runner([])
    fake.script = [drifted_check(), clean_run(), quiet_check()]
    prometheus.fire("SLOErrorBudgetFastBurn", "base-availability", "base")

    outcome = cli("drift", "base", "-i", str(gated), "--remediate", "--json")

    assert outcome.code == 6, outcome.err
    assert len(fake.calls) == 1 and "--check" in fake.calls[0]["cmdline"]  # the check only
    document = json.loads(outcome.out)
    assert document["remediation"] is None and document["exit_code"] == 6
    assert document["budget_gate"]["closing_alerts"][0]["alert"] == "SLOErrorBudgetFastBurn"
    assert document["drift"][0]["host"] == "web-1"
    assert "budget gate closed: SLOErrorBudgetFastBurn for SLO base-availability (base); not remediated" in outcome.err
    [record] = History(project.home / "toolkit.db").list()
    assert record.exit_code == 6


def test_drift_remediate_forced_converges_and_the_history_keeps_the_reason(
    cli: Cli, fake_runner: InstallFake, project: Project, gated: Path, prometheus: FakePrometheus
) -> None:
    fake = fake_runner([])
    fake.script = [drifted_check(), clean_run(), quiet_check()]
    prometheus.fire("SLOErrorBudgetExhausted", "base-availability", "base")

    reason = "CHG-7 put back the audited sshd config"
    outcome = cli("drift", "base", "-i", str(gated), "--remediate", "--force-despite-budget", reason, "--json")

    assert outcome.code == 0, outcome.err
    assert len(fake.calls) == 3
    document = json.loads(outcome.out)
    assert document["budget_gate"]["forced"] == reason
    converge = History(project.home / "toolkit.db").get(document["remediation"]["converge_run_id"])
    assert converge is not None and converge.note is not None
    assert f"forced despite budget: {reason} (gate: SLOErrorBudgetExhausted" in converge.note


def test_drift_without_remediate_never_asks_the_gate(
    cli: Cli, fake_runner: InstallFake, gated: Path, prometheus: FakePrometheus
) -> None:
    fake_runner(drifted_check())
    prometheus.fire("SLOErrorBudgetFastBurn", "base-availability", "base")
    outcome = cli("drift", "base", "-i", str(gated))
    assert outcome.code == 3, outcome.err
    assert prometheus.requests == []
