"""slo_rules: SLO definitions (slos.yml) as Prometheus recording and multi-window burn-rate alerting rules.

The method is the SRE workbook's (chapter 5, "Alerting on SLOs"), as Sloth and Pyrra implement it: the SLI's
error ratio is recorded over a few windows, and an alert fires only when both a long and a short window burn
the error budget fast enough; the short window makes it stop soon after the problem does. It stays here (not
in toolkit/) because the prometheus role renders it, in plain ansible and in AWX.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

DOCUMENTATION = r"""
name: slo_rules
short_description: SLOs as Prometheus recording and burn-rate alerting rule groups
description:
  - One rule group per SLO, named C(slo:<name>). Recording rules C(slo:sli_error:ratio_rate<window>) for
    5m, 30m, 1h, 6h and the SLO's own window, C(slo:error_budget_remaining:ratio) and
    C(slo:burn_rate:ratio_rate1h); every series carries the labels C(slo) and C(service).
  - Alerts C(SLOErrorBudgetFastBurn) (severity page, 1h and 5m windows above 14.4 times the budget rate)
    and C(SLOErrorBudgetSlowBurn) (severity ticket, 6h and 30m windows above 6 times), as the issue and the
    SRE workbook define them, and C(SLOErrorBudgetExhausted) (severity ticket) once none is left.
options:
  _input:
    description:
      - The SLOs, each a mapping with C(name), C(service), C(objective) (percent, for example 99.9),
        C(window) (for example C(30d)), C(description) and C(sli) with C(good) and C(total) PromQL
        expressions that contain C($window) where the range goes.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Write the SLO rules.
  ansible.builtin.copy:
    content: "{{ {'groups': prometheus_slos | slo_rules} | to_nice_yaml(indent=2) }}"
    dest: /etc/prometheus/rules/slo.yml
    mode: "0644"
"""

RETURN = r"""
_value:
  description: Prometheus rule groups (the value of a rule file's C(groups) key).
  type: list
  elements: dict
"""

WINDOWS = ("5m", "30m", "1h", "6h")
# (severity, long window, short window, burn rate factor, for): the workbook's page and ticket pairs.
BURN_ALERTS = (
    ("SLOErrorBudgetFastBurn", "page", "1h", "5m", 14.4, "2m"),
    ("SLOErrorBudgetSlowBurn", "ticket", "6h", "30m", 6.0, "15m"),
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_WINDOW = re.compile(r"^[1-9][0-9]*[dw]$")
_KEYS = {"name", "service", "description", "objective", "window", "sli"}


class SLOError(ValueError):
    """A definition that cannot become rules; the message names the SLO and the field."""


def validate(slos: Any) -> list[dict[str, Any]]:
    """Check SLO definitions; returns them as a list of plain dicts. Raises SLOError."""
    if not isinstance(slos, Sequence) or isinstance(slos, str | bytes):
        raise SLOError("slos must be a list of SLO definitions")
    seen: set[str] = set()
    checked = []
    for index, slo in enumerate(slos, start=1):
        where = f"SLO {index}"
        if not isinstance(slo, Mapping):
            raise SLOError(f"{where}: expected a mapping")
        name = slo.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise SLOError(f"{where}: name must be lower-case letters, digits, '-' or '_' (got {name!r})")
        where = f"SLO {name}"
        if name in seen:
            raise SLOError(f"{where}: defined twice")
        seen.add(name)
        unknown = sorted(set(map(str, slo)) - _KEYS)
        if unknown:
            raise SLOError(f"{where}: unknown key(s) {', '.join(unknown)}")
        if not isinstance(slo.get("service"), str) or not slo["service"]:
            raise SLOError(f"{where}: service is required")
        objective = slo.get("objective")
        if isinstance(objective, bool) or not isinstance(objective, int | float) or not 0 < objective < 100:
            raise SLOError(f"{where}: objective must be a percentage between 0 and 100 exclusive (got {objective!r})")
        window = slo.get("window", "30d")
        if not isinstance(window, str) or not _WINDOW.match(window):
            raise SLOError(f"{where}: window must be days or weeks, like 30d or 4w (got {window!r})")
        sli = slo.get("sli")
        if not isinstance(sli, Mapping) or set(sli) != {"good", "total"}:
            raise SLOError(f"{where}: sli must have exactly 'good' and 'total' PromQL expressions")
        for key in ("good", "total"):
            if not isinstance(sli[key], str) or "$window" not in sli[key]:
                raise SLOError(f"{where}: sli.{key} must be PromQL with $window where the range goes")
        checked.append({**dict(slo), "window": window, "sli": dict(sli)})
    return checked


def _budget(objective: float) -> str:
    # Rounded so 99.9 gives 0.001, not 0.0010000000000000009.
    return repr(round(1 - objective / 100, 10))


def _error_ratio(sli: Mapping[str, str], window: str) -> str:
    good = sli["good"].replace("$window", window)
    total = sli["total"].replace("$window", window)
    return f"1 - (({good}) / ({total}))"


def rules_for(slo: Mapping[str, Any]) -> dict[str, Any]:
    name, service, window = slo["name"], slo["service"], slo["window"]
    labels = {"slo": name, "service": service}
    selector = f'{{slo="{name}"}}'
    budget = _budget(float(slo["objective"]))
    rules: list[dict[str, Any]] = [
        {"record": f"slo:sli_error:ratio_rate{w}", "expr": _error_ratio(slo["sli"], w), "labels": labels}
        for w in WINDOWS
    ]
    rules += [
        {
            # Over the SLO's window from the 5m ratio (the workbook's way: a 30d range over raw series is costly).
            "record": f"slo:sli_error:ratio_rate{window}",
            "expr": f"avg_over_time(slo:sli_error:ratio_rate5m{selector}[{window}])",
            "labels": labels,
        },
        {"record": "slo:objective:ratio", "expr": repr(float(slo["objective"]) / 100), "labels": labels},
        {"record": "slo:error_budget:ratio", "expr": budget, "labels": labels},
        {
            "record": "slo:error_budget_remaining:ratio",
            "expr": f"1 - slo:sli_error:ratio_rate{window}{selector} / {budget}",
            "labels": labels,
        },
        {
            "record": "slo:burn_rate:ratio_rate1h",
            "expr": f"slo:sli_error:ratio_rate1h{selector} / {budget}",
            "labels": labels,
        },
    ]
    description = slo.get("description") or name
    for alert, severity, long, short, factor, hold in BURN_ALERTS:
        rules.append(
            {
                "alert": alert,
                "expr": (
                    f"slo:sli_error:ratio_rate{long}{selector} > ({factor!r} * {budget})"
                    f" and slo:sli_error:ratio_rate{short}{selector} > ({factor!r} * {budget})"
                ),
                "for": hold,
                "labels": {**labels, "severity": severity},
                "annotations": {
                    "summary": f"{description}: burning the error budget {factor:g}x too fast ({long} and {short})",
                },
            }
        )
    rules.append(
        {
            "alert": "SLOErrorBudgetExhausted",
            "expr": f"slo:error_budget_remaining:ratio{selector} <= 0",
            "for": "15m",
            "labels": {**labels, "severity": "ticket"},
            "annotations": {"summary": f"{description}: no error budget left over {window}"},
        }
    )
    return {"name": f"slo:{name}", "rules": rules}


def slo_rules(slos: Any) -> list[dict[str, Any]]:
    try:
        checked = validate(slos)
    except SLOError as exc:
        from ansible.errors import AnsibleFilterError

        raise AnsibleFilterError(f"slo_rules: {exc}") from None
    return [rules_for(slo) for slo in checked]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"slo_rules": slo_rules}
