"""Each SLO's current figures, from the series the Prometheus role records for it (plugins/filter/slo_rules.py)."""

import math
from dataclasses import dataclass, field
from typing import Any

from toolkit.slo.definitions import SLO
from toolkit.slo.gate import CLOSING_ALERTS, firing_slo_alerts
from toolkit.slo.prometheus import PrometheusAPI


@dataclass
class SLOStatus:
    slo: SLO
    sli: float | None = None  # good / total over the SLO's window (1 - the recorded error ratio)
    budget_remaining: float | None = None  # of the window's error budget; negative once overspent
    burn_rate_1h: float | None = None  # 1 = spending the budget exactly over the window
    firing: list[str] = field(default_factory=list)

    @property
    def recorded(self) -> bool:
        """False when Prometheus has no series for the SLO (rules not deployed, or no data yet)."""
        return self.sli is not None

    @property
    def state(self) -> str:
        if not self.recorded:
            return "no data"
        if any(a in CLOSING_ALERTS for a in self.firing):
            return "burning"
        if self.firing:
            return "at risk"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.slo.name,
            "service": self.slo.service,
            "objective": self.slo.objective,
            "window": self.slo.window,
            "sli": self.sli,
            "budget_remaining": self.budget_remaining,
            "burn_rate_1h": self.burn_rate_1h,
            "firing": self.firing,
            "state": self.state,
        }


def _by_slo(api: PrometheusAPI, promql: str) -> dict[str, float]:
    """Values by their slo label; NaN (a ratio over no events yet) counts as no data."""
    return {s.labels["slo"]: s.value for s in api.query(promql) if "slo" in s.labels and not math.isnan(s.value)}


def slo_status(api: PrometheusAPI, slos: list[SLO]) -> list[SLOStatus]:
    """One query per figure for every SLO at once. Raises PrometheusUnavailable."""
    statuses = [SLOStatus(slo=slo) for slo in slos]
    errors: dict[str, float] = {}
    for window in sorted({slo.window for slo in slos}):
        in_window = {slo.name for slo in slos if slo.window == window}
        recorded = _by_slo(api, f"slo:sli_error:ratio_rate{window}")
        errors.update({name: value for name, value in recorded.items() if name in in_window})
    remaining = _by_slo(api, "slo:error_budget_remaining:ratio")
    burn = _by_slo(api, "slo:burn_rate:ratio_rate1h")
    alerts: dict[str, list[str]] = {}
    for alert in firing_slo_alerts(api, sorted({slo.service for slo in slos})):
        alerts.setdefault(alert.slo, []).append(alert.alert)
    for status in statuses:
        name = status.slo.name
        status.sli = 1 - errors[name] if name in errors else None
        status.budget_remaining = remaining.get(name)
        status.burn_rate_1h = burn.get(name)
        status.firing = sorted(set(alerts.get(name, [])))
    return statuses
