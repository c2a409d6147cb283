"""slos.yml through the slo_rules filter: valid rules for promtool, and burn-rate alerts that fire when they must.

promtool's unit tests run on rules generated here from a test SLO: a healthy service fires nothing, a full
outage fires the fast burn (page) within minutes and the slow burn (ticket) later, and the budget empties.
"""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.plugins.loader import load_plugin

REPO = Path(__file__).resolve().parents[2]
slo_rules = load_plugin("filter/slo_rules.py", "slo_rules_under_test")

PROBE = {
    "name": "probe-availability",
    "service": "probe",
    "description": "The probe answers",
    "objective": 99.9,
    "window": "30d",
    "sli": {
        "good": 'sum(sum_over_time(probe_success{job="probe"}[$window]))',
        "total": 'sum(count_over_time(probe_success{job="probe"}[$window]))',
    },
}


def promtool() -> str:
    found = shutil.which("promtool", path=str(Path(sys.executable).parent)) or shutil.which("promtool")
    if not found:
        pytest.fail("promtool is missing: run scripts/setup")
    return found


def write_rules(path: Path, slos: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"groups": slo_rules.slo_rules(slos)}, sort_keys=False))
    return path


def test_the_shipped_slos_become_rules_promtool_accepts(tmp_path: Path) -> None:
    slos = yaml.safe_load((REPO / "slos.yml").read_text())["slos"]
    rules = write_rules(tmp_path / "slo.yml", slos)
    checked = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    groups = yaml.safe_load(rules.read_text())["groups"]
    assert [g["name"] for g in groups] == [f"slo:{s['name']}" for s in slos]


def test_every_series_and_alert_carries_the_slo_and_service_labels() -> None:
    (group,) = slo_rules.slo_rules([PROBE])
    for rule in group["rules"]:
        assert rule["labels"]["slo"] == "probe-availability" and rule["labels"]["service"] == "probe"
    alerts = {r["alert"]: r for r in group["rules"] if "alert" in r}
    assert set(alerts) == {"SLOErrorBudgetFastBurn", "SLOErrorBudgetSlowBurn", "SLOErrorBudgetExhausted"}
    assert alerts["SLOErrorBudgetFastBurn"]["labels"]["severity"] == "page"
    assert (
        "ratio_rate1h" in alerts["SLOErrorBudgetFastBurn"]["expr"]
        and "(14.4 * 0.001)" in (alerts["SLOErrorBudgetFastBurn"]["expr"])
    )
    assert (
        "ratio_rate6h" in alerts["SLOErrorBudgetSlowBurn"]["expr"]
        and "ratio_rate30m" in (alerts["SLOErrorBudgetSlowBurn"]["expr"])
    )


UNIT_TESTS = """
rule_files: [slo.yml]
evaluation_interval: 1m
tests:
  # Healthy for 8 hours: no alert, the whole budget left.
  - interval: 1m
    input_series:
      - series: 'probe_success{job="probe", instance="a"}'
        values: '1x480'
    alert_rule_test:
      - {eval_time: 8h, alertname: SLOErrorBudgetFastBurn, exp_alerts: []}
      - {eval_time: 8h, alertname: SLOErrorBudgetSlowBurn, exp_alerts: []}
      - {eval_time: 8h, alertname: SLOErrorBudgetExhausted, exp_alerts: []}
    promql_expr_test:
      - expr: slo:error_budget_remaining:ratio
        eval_time: 8h
        exp_samples:
          - labels: 'slo:error_budget_remaining:ratio{slo="probe-availability", service="probe"}'
            value: 1
  # Healthy for an hour, then down: the fast burn pages within minutes; the slow burn follows.
  - interval: 1m
    input_series:
      - series: 'probe_success{job="probe", instance="a"}'
        values: '1x60 0x120'
    alert_rule_test:
      - {eval_time: 60m, alertname: SLOErrorBudgetFastBurn, exp_alerts: []}
      - eval_time: 70m
        alertname: SLOErrorBudgetFastBurn
        exp_alerts:
          - exp_labels: {slo: probe-availability, service: probe, severity: page}
            exp_annotations: {summary: "The probe answers: burning the error budget 14.4x too fast (1h and 5m)"}
      - eval_time: 2h
        alertname: SLOErrorBudgetSlowBurn
        exp_alerts:
          - exp_labels: {slo: probe-availability, service: probe, severity: ticket}
            exp_annotations: {summary: "The probe answers: burning the error budget 6x too fast (6h and 30m)"}
      - eval_time: 2h
        alertname: SLOErrorBudgetExhausted
        exp_alerts:
          - exp_labels: {slo: probe-availability, service: probe, severity: ticket}
            exp_annotations: {summary: "The probe answers: no error budget left over 30d"}
  # Down for 10 minutes, then healthy again: the page fires, and the 5m window ends it soon after recovery
  # although the 1h window still holds the outage.
  - interval: 1m
    input_series:
      - series: 'probe_success{job="probe", instance="a"}'
        values: '1x60 0x9 1x120'
    alert_rule_test:
      - eval_time: 68m
        alertname: SLOErrorBudgetFastBurn
        exp_alerts:
          - exp_labels: {slo: probe-availability, service: probe, severity: page}
            exp_annotations: {summary: "The probe answers: burning the error budget 14.4x too fast (1h and 5m)"}
      - {eval_time: 80m, alertname: SLOErrorBudgetFastBurn, exp_alerts: []}
    promql_expr_test:
      # 10 failed probes among the 61 samples of the 1h range.
      - expr: slo:sli_error:ratio_rate1h > (14.4 * 0.001)
        eval_time: 80m
        exp_samples:
          - labels: 'slo:sli_error:ratio_rate1h{slo="probe-availability", service="probe"}'
            value: 0.16393442622950816
"""


def test_burn_rate_alerts_fire_on_an_outage_and_never_on_a_healthy_series(tmp_path: Path) -> None:
    write_rules(tmp_path / "slo.yml", [PROBE])
    (tmp_path / "slo.test.yml").write_text(UNIT_TESTS)
    tested = subprocess.run([promtool(), "test", "rules", "slo.test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"objective": 100}, "objective must be a percentage"),
        ({"objective": "99.9"}, "objective must be a percentage"),
        ({"window": "30x"}, "window must be days or weeks"),
        ({"name": "Bad Name"}, "name must be lower-case"),
        ({"sli": {"good": "up", "total": "up[$window]"}}, "sli.good must be PromQL with $window"),
        ({"sli": {"good": "x[$window]"}}, "exactly 'good' and 'total'"),
        ({"owner": "sre"}, "unknown key(s) owner"),
        ({"service": ""}, "service is required"),
    ],
)
def test_a_bad_definition_names_the_slo_and_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(slo_rules.SLOError) as refused:
        slo_rules.validate([{**PROBE, **change}])
    assert message in str(refused.value)


def test_a_duplicate_name_is_refused() -> None:
    with pytest.raises(slo_rules.SLOError, match="defined twice"):
        slo_rules.validate([PROBE, PROBE])
