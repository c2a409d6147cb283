"""The budget gate: no change to a service while its error budget burns fast or is spent.

A converge asks Prometheus, before it starts, which SLO alerts fire for the services it would change. A firing
fast burn (the page) or an exhausted budget closes the gate; a slow burn (the ticket) is reported and lets the
change through, as the SRE workbook's policy has it: slow burns are for planned work, fast ones stop releases.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolkit.slo.health import wait_until_healthy
from toolkit.slo.locate import GateSettings
from toolkit.slo.prometheus import PrometheusAPI, PrometheusUnavailable

HealthWait = Callable[[PrometheusAPI, Sequence[str], float, Sequence[str]], list[str]]

CLOSING_ALERTS = ("SLOErrorBudgetFastBurn", "SLOErrorBudgetExhausted")
REPORTED_ALERTS = ("SLOErrorBudgetSlowBurn",)


@dataclass(frozen=True)
class FiringAlert:
    alert: str
    slo: str
    service: str

    def __str__(self) -> str:
        return f"{self.alert} for SLO {self.slo} ({self.service})"


@dataclass
class GateDecision:
    """open: the run may start. reasons: why it may not (or would not, in warn mode); warnings: said either way."""

    open: bool
    mode: str
    services: list[str]
    prometheus_url: str | None
    closing: list[FiringAlert] = field(default_factory=list)
    reported: list[FiringAlert] = field(default_factory=list)
    unhealthy: list[str] = field(default_factory=list)  # between batches: what is wrong with the last batch
    unreachable: str | None = None
    forced: str | None = None  # the --force-despite-budget reason a closed gate was overridden with

    def override(self, reason: str | None) -> bool:
        """Whether the run may go on: the gate is open, or closed and overridden with a reason (kept here)."""
        if self.open:
            return True
        self.forced = reason
        return reason is not None

    @property
    def reason(self) -> str:
        if self.closing or self.unhealthy:
            return "; ".join([*map(str, self.closing), *self.unhealthy])
        return self.unreachable or ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "mode": self.mode,
            "services": self.services,
            "prometheus_url": self.prometheus_url,
            "closing_alerts": [a.__dict__ for a in self.closing],
            "reported_alerts": [a.__dict__ for a in self.reported],
            "unhealthy": self.unhealthy,
            "unreachable": self.unreachable,
            "forced": self.forced,
        }


def firing_slo_alerts(api: PrometheusAPI, services: list[str]) -> list[FiringAlert]:
    """The SLO alerts firing now for any of services (Prometheus's ALERTS series)."""
    names = "|".join(CLOSING_ALERTS + REPORTED_ALERTS)
    wanted = "|".join(services)
    samples = api.query(f'ALERTS{{alertstate="firing", alertname=~"{names}", service=~"{wanted}"}}')
    found = {
        FiringAlert(alert=s.labels["alertname"], slo=s.labels.get("slo", "?"), service=s.labels.get("service", "?"))
        for s in samples
    }
    return sorted(found, key=lambda a: (a.service, a.slo, a.alert))


def evaluate(settings: GateSettings, services: list[str], api: PrometheusAPI | None = None) -> GateDecision:
    """Whether a run that changes services may start now."""
    decision = GateDecision(open=True, mode=settings.mode, services=services, prometheus_url=settings.prometheus_url)
    if settings.mode == "off":
        return decision
    if settings.prometheus_url is None:
        decision.unreachable = "no Prometheus to ask (no host in group prometheus, no toolkit_prometheus_url)"
    else:
        try:
            alerts = firing_slo_alerts(api or PrometheusAPI.at(settings.prometheus_url), services)
        except PrometheusUnavailable as exc:
            decision.unreachable = str(exc)
        else:
            decision.closing = [a for a in alerts if a.alert in CLOSING_ALERTS]
            decision.reported = [a for a in alerts if a.alert in REPORTED_ALERTS]
    return _decide(decision, settings)


def evaluate_batch(
    settings: GateSettings,
    services: list[str],
    hosts: Sequence[str],
    *,
    budget_forced: bool = False,
    api: PrometheusAPI | None = None,
    wait: HealthWait = wait_until_healthy,
) -> GateDecision:
    """Whether a rolling run may go on to its next batch: the budget as before the run (unless the run was forced
    despite it), and the hosts of the batch just done healthy within the settle time."""
    if budget_forced:
        decision = GateDecision(
            open=True, mode=settings.mode, services=services, prometheus_url=settings.prometheus_url
        )
    else:
        decision = evaluate(settings, services, api)
    if settings.mode == "off" or settings.prometheus_url is None or decision.unreachable is not None or not hosts:
        return decision
    try:
        api = api or PrometheusAPI.at(settings.prometheus_url)
        # Only a gate that can stop the rollout waits for the batch to settle; warn reports what it sees now.
        settle = settings.health_settle_seconds if settings.mode == "enforce" else 0.0
        decision.unhealthy = wait(api, hosts, settle, settings.health_severities)
    except PrometheusUnavailable as exc:
        decision.unreachable = str(exc)
    return _decide(decision, settings)


def _decide(decision: GateDecision, settings: GateSettings) -> GateDecision:
    unanswered = decision.unreachable is not None and settings.unreachable == "closed"
    refuses = bool(decision.closing) or bool(decision.unhealthy) or unanswered
    decision.open = not (refuses and settings.mode == "enforce")
    return decision
