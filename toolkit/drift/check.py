"""``toolkit drift``'s flow: check, triage, record, (remediate, re-check), write metrics.

The check is the service's own playbook in ``--check --diff`` mode through ``run_playbook``: check mode
exits 0 even when it would change things, so drift is read from the run's changed results, never from
its exit status.
"""

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from toolkit.drift.findings import DriftCollector
from toolkit.drift.ignore import IgnoreRule, Triage, load_rules, triage
from toolkit.drift.report import DriftReport, Remediation
from toolkit.drift.store import DriftStore
from toolkit.exit_codes import ExitCode
from toolkit.metrics import converge as converge_metrics
from toolkit.metrics import drift as drift_metrics
from toolkit.runner.events import RunEvent
from toolkit.runner.execute import PlaybookRun, RunSettings, run_playbook
from toolkit.runner.extravars import ExtraVars
from toolkit.runner.history import History
from toolkit.runner.inventory import ResolvedInventory, resolve
from toolkit.services import ServiceCoverage, play_services, playbook_for, services_in
from toolkit.slo import gate
from toolkit.slo.locate import GateSettings
from toolkit.timestamps import utc_iso

Observer = Callable[[RunEvent], None]
# Which phase an observer is being fed: "check", "remediate" (the converge) or "recheck".
ObserverFactory = Callable[[str, ResolvedInventory], Observer | None]


@dataclass(frozen=True)
class DriftRequest:
    target: str
    inventory: ResolvedInventory
    ignore_file: Path
    textfile_dir: Path | None = None
    remediate: bool = False
    scheduled: bool = False
    extra_vars: ExtraVars = field(default_factory=ExtraVars)
    forks: int | None = None
    verbosity: int = 0
    vault_password_file: Path | None = None
    color: bool = False
    # The budget gate asked before remediating (None: not asked), and the reason it is overridden, if it is.
    budget_gate: GateSettings | None = None
    forced_reason: str | None = None
    # Extra variables for the remediating converge alone: the gate its rolling plays ask between batches.
    remediation_vars: dict[str, Any] = field(default_factory=dict)


class DriftCheck:
    def __init__(
        self,
        request: DriftRequest,
        settings: RunSettings,
        *,
        observers: ObserverFactory | None = None,
        cancel: threading.Event | None = None,
        today: dt.date | None = None,
    ) -> None:
        self.request = request
        self.settings = settings
        self.observers = observers or (lambda phase, inventory: None)
        self.cancel = cancel or threading.Event()
        self.today = today or dt.datetime.now(dt.UTC).date()
        self.playbook = playbook_for(request.target)
        # Read before anything runs: a bad ignore file is a usage error that touches no host.
        self.rules: list[IgnoreRule] = load_rules(request.ignore_file)
        self.services = services_in(request.target)
        self.play_services = play_services(request.target)
        self.store = DriftStore(settings.state.history_db)
        self.history = History(settings.state.history_db)

    def run(self) -> DriftReport:
        request = self.request
        note = "scheduled" if request.scheduled else None
        report = self._check(request.inventory, "check", note)
        if request.remediate and report.drift and not self.cancel.is_set() and self._gate_allows(report):
            report.remediation = self._remediate(report)
            self.history.amend(report.run.run_id, exit_code=int(report.exit_code), detail=report.to_dict())
        final = self._final_view(report)
        if request.textfile_dir is not None:
            drift_metrics.write(request.textfile_dir, final, time.time())
        return report

    def _check(self, inventory: ResolvedInventory, phase: str, note: str | None) -> DriftReport:
        collector = DriftCollector(self.play_services, default_service=self.request.target)
        shown = self.observers(phase, inventory)

        def observe(event: RunEvent) -> None:
            collector.observe(event)
            if shown is not None:
                shown(event)

        result = run_playbook(
            self._run(inventory, check=True, note=note), self.settings, observer=observe, cancel=self.cancel
        )
        report = DriftReport.build(
            self.request.target, self.services, result, collector, triage(collector.resources, self.rules, self.today)
        )
        self.store.record(report, str(inventory.source), utc_iso(), remediated=phase == "recheck")
        # The run's own verdict at once (drift: 3, not the check's 0), so it holds even if a remediation fails.
        self.history.amend(result.run_id, exit_code=int(report.exit_code), detail=report.to_dict())
        return report

    def _gate_allows(self, report: DriftReport) -> bool:
        """Remediation is a converge: the budget gate is asked first, as `toolkit converge` asks it."""
        if self.request.budget_gate is None:
            return True
        report.budget_gate = gate.evaluate(self.request.budget_gate, self.services)
        if report.budget_gate.override(self.request.forced_reason):
            return True
        self.history.amend(report.run.run_id, exit_code=int(report.exit_code), detail=report.to_dict())
        return False

    def _remediation_note(self, report: DriftReport) -> str:
        note = f"drift --remediate (check run {report.run.run_id})"
        decision = report.budget_gate
        if decision is not None and decision.forced is not None:
            note += f"; forced despite budget: {decision.forced} (gate: {decision.reason})"
        return note

    def _remediate(self, report: DriftReport) -> Remediation:
        hosts = report.drifted_hosts
        limited = resolve(self.request.inventory.source, ",".join(hosts))
        shown = self.observers("remediate", limited)
        coverage = ServiceCoverage(self.play_services, default_service=self.request.target)

        def observe(event: RunEvent) -> None:
            coverage.observe(event)
            if shown is not None:
                shown(event)

        converge = run_playbook(
            self._run(limited, check=False, note=self._remediation_note(report)),
            self.settings,
            observer=observe,
            cancel=self.cancel,
        )
        if self.request.textfile_dir is not None:
            converge_metrics.write(self.request.textfile_dir, converge, coverage.pairs, time.time())
        recheck = None
        if converge.exit_code == ExitCode.OK and not self.cancel.is_set():
            recheck = self._check(limited, "recheck", f"re-check after remediation {converge.run_id}")
        return Remediation(hosts=hosts, converge=converge, recheck=recheck)

    def _final_view(self, report: DriftReport) -> DriftReport:
        """The fleet's state after this command: the check, with remediated hosts replaced by their re-check."""
        remediation = report.remediation
        if remediation is None or remediation.recheck is None:
            return report
        recheck = remediation.recheck
        fixed = set(remediation.hosts)
        merged = Triage(
            drift=[r for r in report.drift if r.host not in fixed] + recheck.drift,
            ignored=[(r, rule) for r, rule in report.triage.ignored if r.host not in fixed] + recheck.triage.ignored,
            expired=[(r, rule) for r, rule in report.triage.expired if r.host not in fixed] + recheck.triage.expired,
        )
        final = DriftReport(report.target, report.services, report.run, merged, recheck.handlers, report.coverage)
        final.remediation = remediation
        return final

    def _run(self, inventory: ResolvedInventory, *, check: bool, note: str | None) -> PlaybookRun:
        request = self.request
        extra = request.extra_vars
        if not check and request.remediation_vars:
            extra = replace(extra, inline={**extra.inline, **request.remediation_vars})
        return PlaybookRun(
            kind="drift" if check else "converge",
            target=request.target,
            playbook=self.playbook,
            inventory=inventory,
            check=check,
            diff=True,
            extra_vars=extra,
            forks=request.forks,
            verbosity=request.verbosity,
            vault_password_file=request.vault_password_file,
            color=request.color,
            note=note,
        )
