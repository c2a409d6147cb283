"""The only module that writes to the terminal.

Human output goes to stderr (so ``--json`` on stdout stays parseable); stdout carries only
machine-readable documents. Colour follows the terminal: rich turns it off for non-TTY output and
when NO_COLOR is set.
"""

import datetime as dt
import json
import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.theme import Theme

from toolkit.bootstrap.flow import BootstrapResult, StepRecord
from toolkit.delivery.figures import DeliveryFigures, Restores
from toolkit.drift.report import DriftReport
from toolkit.drift.schedule import ScheduleStatus
from toolkit.drift.store import DriftRecord
from toolkit.environments.aws_down import EnvironmentListing, Teardown
from toolkit.environments.aws_state import Endpoint
from toolkit.environments.plan import Plan as EnvironmentPlan
from toolkit.environments.spec import EnvironmentSpec
from toolkit.heal.server import ServerState
from toolkit.lab.lab import HostStatus
from toolkit.runner.events import HostProgress, OutputText, PlayStarted, RunEvent, TaskResult, TaskStarted
from toolkit.runner.history import RunRecord
from toolkit.runner.result import RunResult
from toolkit.runner.testinfra import VerifyResult
from toolkit.slo.gate import GateDecision
from toolkit.slo.status import SLOStatus

THEME = Theme(
    {
        "info": "cyan",
        "ok": "green",
        "changed": "yellow",
        "failed": "bold red",
        "unreachable": "bold magenta",
        "skipped": "dim",
        "hint": "dim italic",
        "error": "bold red",
        "warning": "yellow",
        "note": "cyan",
    }
)

err = Console(stderr=True, theme=THEME, highlight=False, soft_wrap=True)
out = Console(theme=THEME, highlight=False, soft_wrap=True)


def error(message: str, hint: str | None = None) -> None:
    err.print(f"[error]error:[/error] {message}", markup=True)
    if hint:
        err.print(f"[hint]hint: {hint}[/hint]")


def warning(message: str) -> None:
    err.print(f"[warning]warning:[/warning] {message}")


def info(message: str) -> None:
    err.print(message)


def emit_json(document: Any) -> None:
    """One JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# Runs: the live view fed by runner events, and the summary.
# ---------------------------------------------------------------------------------------------


def _fmt_duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


class RunView:
    """Per-host progress while a playbook runs.

    On a terminal: a live table (host, current task, counts). Otherwise (cron, CI, pipes): one line
    per play and per changed, failed or unreachable result. ``verbose`` streams Ansible's own output.
    """

    def __init__(self, title: str, hosts: tuple[str, ...], *, verbose: int = 0) -> None:
        self.title = title
        self.verbose = verbose
        self.hosts: dict[str, HostProgress] = {host: HostProgress() for host in hosts}
        self.play = ""
        self.started = time.time()
        self._live: Live | None = None

    def __enter__(self) -> "RunView":
        if err.is_terminal and not self.verbose:
            self._live = Live(self._table(), console=err, refresh_per_second=4, transient=True)
            self._live.start()
        else:
            info(f"{self.title} on {len(self.hosts)} host(s)")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def handle(self, event: RunEvent) -> None:
        if isinstance(event, OutputText):
            if self.verbose:
                err.print(event.text.rstrip(), markup=False, highlight=False)
            return
        if isinstance(event, PlayStarted):
            self.play = event.name
            if self._live is None and not self.verbose:
                info(f"PLAY {event.name}")
        elif isinstance(event, TaskStarted):
            self.hosts.setdefault(event.host, HostProgress()).current_task = event.task
        elif isinstance(event, TaskResult):
            self._count(event)
            if self._live is None and not self.verbose and event.status in ("changed", "failed", "unreachable"):
                detail = f": {event.message}" if event.message else ""
                err.print(f"  [{event.status}]{event.status:<11}[/{event.status}] {event.host} | {event.task}{detail}")
        if self._live is not None:
            self._live.update(self._table())

    def _count(self, event: TaskResult) -> None:
        progress = self.hosts.setdefault(event.host, HostProgress())
        if event.status in ("ok", "changed", "ignored"):
            progress.ok += 1
        if event.status == "changed":
            progress.changed += 1
        elif event.status == "failed":
            progress.failed += 1
        elif event.status == "unreachable":
            progress.unreachable += 1
        elif event.status == "skipped":
            progress.skipped += 1

    def _table(self) -> Table:
        elapsed = _fmt_duration(time.time() - self.started)
        table = Table(title=f"{self.title} — {self.play or 'starting'} ({elapsed})", title_justify="left")
        for column in ("host", "current task"):
            table.add_column(column, overflow="ellipsis", no_wrap=True)
        for column in ("ok", "changed", "failed", "unreachable"):
            table.add_column(column, justify="right")
        for host, p in sorted(self.hosts.items()):
            table.add_row(
                host,
                p.current_task[:60],
                str(p.ok),
                f"[changed]{p.changed}[/changed]" if p.changed else "0",
                f"[failed]{p.failed}[/failed]" if p.failed else "0",
                f"[unreachable]{p.unreachable}[/unreachable]" if p.unreachable else "0",
            )
        return table


def print_run_summary(result: RunResult) -> None:
    """The recap table, what changed or failed, and where the run's artifacts are."""
    table = Table(
        title=f"{result.kind} {result.target}" + (" (check mode)" if result.check else ""),
        title_justify="left",
    )
    table.add_column("host")
    for column in ("ok", "changed", "failed", "unreachable", "skipped", "duration"):
        table.add_column(column, justify="right")
    for host, summary in sorted(result.hosts.items()):
        s = summary.stats
        table.add_row(
            host,
            str(s.ok),
            f"[changed]{s.changed}[/changed]" if s.changed else "0",
            f"[failed]{s.failed}[/failed]" if s.failed else "0",
            f"[unreachable]{s.unreachable}[/unreachable]" if s.unreachable else "0",
            str(s.skipped),
            _fmt_duration(summary.duration),
        )
    if result.hosts:
        err.print(table)
    for ref in result.notes:
        err.print(f"[note]note[/note]        {ref.host} | {escape(ref.message)}", markup=True)
    for ref in result.failed:
        err.print(f"[failed]failed[/failed]      {ref.host} | {ref.task}" + (f": {ref.message}" if ref.message else ""))
    for ref in result.unreachable:
        err.print(
            f"[unreachable]unreachable[/unreachable] {ref.host} | {ref.task}"
            + (f": {ref.message}" if ref.message else "")
        )
    if result.error:
        error(f"ansible-playbook failed before any host ran: {result.error}")
    totals = result.totals()
    verb = "would change" if result.check else "changed"
    if result.exit_code == 0 and totals.changed == 0:
        outcome = f"[ok]no changes on any of {len(result.hosts)} host(s)[/ok] (idempotent)"
    elif result.exit_code == 0:
        hosts_changed = sum(1 for h in result.hosts.values() if h.stats.changed)
        outcome = (
            f"[changed]{totals.changed} task(s) {verb}[/changed] on {hosts_changed} of {len(result.hosts)} host(s)"
        )
    elif result.exit_code == 4:
        outcome = f"[unreachable]unreachable: {', '.join(result.unreachable_hosts())}[/unreachable]"
    elif result.exit_code == 130:
        outcome = "[failed]interrupted[/failed]: the run was cancelled"
    else:
        failed_hosts = sorted({ref.host for ref in result.failed}) or ["(no host)"]
        outcome = f"[failed]failed on {', '.join(failed_hosts)}[/failed]"
    err.print(f"{outcome} in {_fmt_duration(result.duration)} — exit {int(result.exit_code)}")
    err.print(f"[hint]run {result.run_id}; artifacts: {result.artifacts}[/hint]")


def print_runs_table(records: list[RunRecord]) -> None:
    if not records:
        info("no runs recorded yet")
        return
    table = Table(title="runs (newest first)", title_justify="left")
    for column in (
        "run id",
        "kind",
        "target",
        "started (UTC)",
        "duration",
        "user",
        "status",
        "exit",
        "changed",
    ):
        table.add_column(column, justify="right" if column in ("duration", "exit", "changed") else "left")
    for r in records:
        status = r.effective_status
        style = {"successful": "ok", "running": "info"}.get(status, "failed")
        table.add_row(
            r.run_id,
            r.kind,
            r.target + (" (check)" if r.check_mode else ""),
            r.started_at.replace("T", " ")[:19],
            _fmt_duration(r.duration) if r.duration is not None else "-",
            r.user,
            f"[{style}]{status}[/{style}]",
            "-" if r.exit_code is None else str(r.exit_code),
            "-" if r.changed is None else str(r.changed),
        )
    out.print(table)


def print_run_record(record: RunRecord) -> None:
    out.print(
        f"[bold]{record.run_id}[/bold]  {record.kind} {record.target}" + ("  (check mode)" if record.check_mode else "")
    )
    facts = {
        "status": record.effective_status,
        "exit code": record.exit_code,
        "started": record.started_at,
        "finished": record.finished_at,
        "duration": _fmt_duration(record.duration) if record.duration is not None else None,
        "by": f"{record.user}@{record.controller} (pid {record.pid})",
        "inventory": record.inventory,
        "limit": record.limit_expr,
        "artifacts": record.artifacts,
        "note": record.note,
    }
    for key, value in facts.items():
        if value is not None:
            out.print(f"  {key:<10} {value}", markup=False)
    detail = record.detail or {}
    if detail.get("kind") == "drift":
        _print_drift_detail(detail)
        return
    hosts = detail.get("hosts") or {}
    if hosts:
        table = Table(title_justify="left")
        for column in ("host", "ok", "changed", "failed", "unreachable", "skipped", "duration"):
            table.add_column(column, justify="left" if column == "host" else "right")
        for host, s in sorted(hosts.items()):
            table.add_row(
                host,
                *(str(s.get(k, 0)) for k in ("ok", "changed", "failed", "unreachable", "skipped")),
                _fmt_duration(float(s.get("duration", 0))),
            )
        out.print(table)
    for label, key in (
        ("changed", "changed_tasks"),
        ("failed", "failed_tasks"),
        ("unreachable", "unreachable"),
    ):
        for ref in detail.get(key) or []:
            message = f": {ref.get('message')}" if ref.get("message") else ""
            out.print(f"  [{label}]{label:<11}[/{label}] {ref.get('host')} | {ref.get('task')}{message}")


def _print_drift_detail(detail: dict[str, Any]) -> None:
    """A drift run's report as recorded: per host what drifted, was ignored or could not be checked."""
    table = Table(title_justify="left")
    for column in ("host", "drifted", "ignored", "checked"):
        table.add_column(column, justify="left" if column == "host" else "right")
    for host, state in sorted((detail.get("hosts") or {}).items()):
        checked = "unreachable" if state.get("unreachable") else "failed" if state.get("failed") else "yes"
        drifted = int(state.get("drifted", 0))
        table.add_row(
            host,
            f"[changed]{drifted}[/changed]" if drifted else "0",
            str(state.get("ignored", 0)),
            checked if checked == "yes" else f"[failed]{checked}[/failed]",
        )
    out.print(table)
    for item in detail.get("drift") or []:
        label = f"{item.get('task')} [{item.get('item')}]" if item.get("item") else str(item.get("task"))
        out.print(f"  [changed]drift[/changed]       {item.get('host')} | {item.get('service')} | {escape(label)}")
    for ref in detail.get("failed") or []:
        out.print(f"  [failed]failed[/failed]      {ref.get('host')} | {ref.get('task')}: {ref.get('message')}")
    for ref in detail.get("unreachable") or []:
        out.print(f"  [unreachable]unreachable[/unreachable] {ref.get('host')}: {ref.get('message')}")


def print_verify_summary(result: VerifyResult) -> None:
    table = Table(title=f"verify {result.target}", title_justify="left")
    for column in ("host", "passed", "failed", "skipped", "reachable"):
        table.add_column(column, justify="left" if column == "host" else "right")
    for host, verdict in sorted(result.hosts.items()):
        table.add_row(
            host,
            str(verdict.passed),
            f"[failed]{verdict.failed}[/failed]" if verdict.failed else "0",
            str(verdict.skipped),
            "[unreachable]no[/unreachable]" if verdict.unreachable else "yes",
        )
    err.print(table)
    for failure in result.failures:
        err.print(f"[failed]failed[/failed] {failure.host} | {failure.test}: {failure.message}", markup=True)
    if result.lynis:
        print_lynis_scores(result)
    if result.error:
        error(result.error)
    passed = sum(v.passed for v in result.hosts.values())
    if result.exit_code == 0:
        outcome = f"[ok]{passed} check(s) passed on {len(result.hosts)} host(s)[/ok]"
    elif result.exit_code == 4:
        down = [h for h, v in result.hosts.items() if v.unreachable]
        outcome = f"[unreachable]unreachable: {', '.join(down)}[/unreachable]"
    else:
        failed_hosts = sorted({f.host for f in result.failures}) or ["(no host)"]
        outcome = f"[failed]checks failed on {', '.join(failed_hosts)}[/failed]"
    err.print(f"{outcome} in {_fmt_duration(result.duration)} — exit {int(result.exit_code)}")
    err.print(f"[hint]run {result.run_id}; report: {result.artifacts}[/hint]")


def print_lynis_scores(result: VerifyResult) -> None:
    """The Lynis hardening index of each scanned host, with its warnings (suggestions: --json / artifacts)."""
    table = Table(title="Lynis", title_justify="left")
    for column in ("host", "hardening index", "warnings", "suggestions"):
        table.add_column(column, justify="left" if column == "host" else "right")
    for host, report in sorted(result.lynis.items()):
        index = "-" if report.hardening_index is None else str(report.hardening_index)
        warnings = f"[failed]{len(report.warnings)}[/failed]" if report.warnings else "0"
        table.add_row(host, index, warnings, str(len(report.suggestions)))
    err.print(table)
    for host, report in sorted(result.lynis.items()):
        for finding in report.warnings:
            err.print(f"[warning]lynis warning[/warning] {host} | {escape(str(finding))}", markup=True)


def print_drift_report(report: DriftReport) -> None:
    """Per host: what drifted (with the diff), what was excused, what could not be checked; then the verdict."""
    _print_drift_findings(report, heading=f"drift {report.target}")
    if report.budget_gate is not None:
        print_gate_decision(report.budget_gate)
    if report.remediation_refused and report.budget_gate is not None:
        error(
            f"budget gate closed: {report.budget_gate.reason}; not remediated",
            hint='wait for the budget to recover, or: --force-despite-budget "REASON" (kept in the run history)',
        )
    remediation = report.remediation
    if remediation is not None:
        converge = remediation.converge
        err.print(
            f"[info]remediate[/info]   converged {', '.join(remediation.hosts)}: {converge.changed_count} task(s)"
            f" changed, exit {int(converge.exit_code)} (run {converge.run_id})"
        )
        for ref in converge.failed:
            err.print(f"[failed]failed[/failed]      {ref.host} | {ref.task}: {ref.message}")
        if remediation.recheck is not None:
            _print_drift_findings(remediation.recheck, heading=f"re-check {report.target}")
    if report.run.error:
        error(f"ansible-playbook failed before any host ran: {report.run.error}")
    code = int(report.exit_code)
    hosts = len(report.run.hosts)
    drifted = report.remaining_drift
    if code == 0:
        fixed = " after remediation" if remediation is not None else ""
        outcome = f"[ok]no drift on any of {hosts} host(s){fixed}[/ok]"
    elif code == 3:
        on = sorted({r.host for r in drifted})
        outcome = f"[changed]{len(drifted)} drifted resource(s) on {', '.join(on)}[/changed]"
    elif code == 6:
        on = sorted({r.host for r in drifted})
        outcome = f"[changed]{len(drifted)} drifted resource(s) on {', '.join(on)}, left as they are[/changed]"
    elif code == 4:
        outcome = f"[unreachable]not checked (unreachable): {', '.join(report.unreachable_hosts)}[/unreachable]"
    elif code == 130:
        outcome = "[failed]interrupted[/failed]: the check was cancelled"
    else:
        failed = sorted({ref.host for ref in report.failed}) or ["(no host)"]
        outcome = f"[failed]check failed on {', '.join(failed)}[/failed]"
    err.print(f"{outcome} in {_fmt_duration(report.run.duration)} — exit {code}")
    err.print(
        f"[hint]run {report.run.run_id}; history: toolkit drift history; artifacts: {report.run.artifacts}[/hint]"
    )


def _print_drift_findings(report: DriftReport, heading: str) -> None:
    err.print(f"[bold]{heading}[/bold] — {len(report.run.hosts)} host(s), services: {', '.join(report.services)}")
    for resource in sorted(report.drift, key=lambda r: (r.host, r.service)):
        since = report.first_seen.get(resource.key)
        err.print(
            f"[changed]drift[/changed]       {resource.host} | {resource.service} | {escape(resource.label)}"
            f" ({resource.action})" + (f" [hint]since {since}[/hint]" if since else "")
        )
        for line in resource.diff.splitlines()[:_DIFF_LINES]:
            err.print(f"              {line}", markup=False, highlight=False)
        if len(resource.diff.splitlines()) > _DIFF_LINES:
            err.print("              … (the whole diff is in --json and the history)", markup=False)
    for resource, rule in report.triage.ignored:
        err.print(
            f"[skipped]ignored[/skipped]     {resource.host} | {escape(resource.label)}: {escape(rule.reason)}"
            f" (until {rule.expires.isoformat()})"
        )
    for resource, rule in report.triage.expired:
        err.print(
            f"[warning]expired[/warning]     {resource.host} | {escape(resource.label)}: ignore entry {rule.index}"
            f" expired on {rule.expires.isoformat()} ({escape(rule.reason)})"
        )
    for ref in report.failed:
        err.print(f"[failed]failed[/failed]      {ref.host} | {ref.task}" + (f": {ref.message}" if ref.message else ""))
    for ref in report.run.unreachable:
        err.print(f"[unreachable]unreachable[/unreachable] {ref.host}" + (f": {ref.message}" if ref.message else ""))


_DIFF_LINES = 20


def print_drift_history(records: list[DriftRecord]) -> None:
    if not records:
        info("no drift recorded")
        return
    table = Table(title="drifted resources (newest first)", title_justify="left")
    for column in ("host", "service", "resource", "first seen", "last seen", "resolved", "how"):
        table.add_column(column, overflow="fold")
    for r in records:
        resolved = r.resolved_at.replace("T", " ")[:19] if r.resolved_at else "[changed]open[/changed]"
        table.add_row(
            r.host,
            r.service,
            escape(r.label),
            r.first_seen.replace("T", " ")[:19],
            r.last_seen.replace("T", " ")[:19],
            resolved,
            r.resolution or "",
        )
    out.print(table)


def print_lab_status(statuses: list[HostStatus]) -> None:
    table = Table(title="lab", title_justify="left")
    for column in ("host", "address", "groups", "container", "systemd", "ssh"):
        table.add_column(column)
    for s in statuses:
        container = f"[ok]{s.container}[/ok]" if s.container == "running" else f"[failed]{s.container}[/failed]"
        systemd = f"[ok]{s.systemd}[/ok]" if s.systemd in ("running", "degraded") else f"[failed]{s.systemd}[/failed]"
        reach = "[ok]reachable[/ok]" if s.reachable else "[unreachable]unreachable[/unreachable]"
        table.add_row(s.name, s.address, ", ".join(s.groups), container, systemd, reach)
    err.print(table)


# ---------------------------------------------------------------------------------------------
# Drift schedules (toolkit drift schedule).
# ---------------------------------------------------------------------------------------------


def print_schedules(schedules: list[ScheduleStatus]) -> None:
    """One row per schedule (installed or not), then each one's command, log and notes."""
    if not schedules:
        info("no drift schedule is installed")
        return
    table = Table(title="drift schedules", title_justify="left")
    for column in ("service", "backend", "installed", "when", "next run", "last run"):
        table.add_column(column)
    for s in schedules:
        table.add_row(
            s.service,
            s.backend,
            "[ok]yes[/ok]" if s.installed else "no",
            f"{s.when} ({s.calendar})" if s.when and s.calendar else s.calendar or s.when or "-",
            s.next_run or "-",
            s.last_run or "-",
        )
    out.print(table)
    for s in schedules:
        if s.command:
            out.print(f"  {s.service}: {s.command}", markup=False)
        if s.log:
            out.print(f"  {s.service} log: {s.log}", markup=False)
        for note in s.notes:
            err.print(f"[note]note[/note] {s.service}: {escape(note)}")


# ---------------------------------------------------------------------------------------------
# Bootstrap: one line per step as it starts and ends, then the steps with their timings.
# ---------------------------------------------------------------------------------------------

_STEP_STYLE = {"ok": "ok", "changed": "changed", "failed": "failed", "skipped": "skipped"}


def print_step_started(name: str, description: str) -> None:
    err.print(f"[info]→ {escape(name)}[/info] [hint]{escape(description)}[/hint]")


def print_step_finished(record: StepRecord) -> None:
    style = _STEP_STYLE.get(record.status, "info")
    changed = f", {record.changed} changed" if record.changed else ""
    detail = f" — {escape(record.detail)}" if record.detail else ""
    took = _fmt_duration(record.seconds)
    err.print(f"  [{style}]{record.status}[/{style}] {escape(record.name)} in {took}{changed}{detail}")


def print_bootstrap_summary(result: BootstrapResult) -> None:
    placement = result.placement
    who = f"{placement.name} ({placement.address})" if placement else result.target
    table = Table(title=f"bootstrap {who} for {result.service}", title_justify="left")
    for column, justify in (("step", "left"), ("status", "left"), ("changed", "right"), ("time", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("detail", overflow="fold")
    for step in result.steps:
        style = _STEP_STYLE.get(step.status, "info")
        table.add_row(
            step.name,
            f"[{style}]{step.status}[/{style}]",
            str(step.changed),
            _fmt_duration(step.seconds),
            escape(step.detail),
        )
    err.print(table)
    took = _fmt_duration(result.seconds)
    if result.error:
        error(f"bootstrap of {who} stopped: {result.error}", "fix the cause and run the same command again: it resumes")
    elif result.changed == 0:
        err.print(f"[ok]{who} is bootstrapped already: nothing changed[/ok] ({took})")
    else:
        group = placement.group if placement and placement.group else "the baseline"
        err.print(f"[ok]{who} bootstrapped into {group}[/ok]: {result.changed} changes in {took}")


# ---------------------------------------------------------------------------------------------
# SLOs and the budget gate.
# ---------------------------------------------------------------------------------------------


def _percent(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def print_slo_status(statuses: list[SLOStatus], prometheus_url: str) -> None:
    table = Table(title=f"SLOs (Prometheus at {prometheus_url})", title_justify="left")
    figures = ("objective", "sli", "budget left", "burn 1h")
    for column in ("slo", "service", "objective", "window", "sli", "budget left", "burn 1h", "state"):
        table.add_column(column, justify="right" if column in figures else "left")
    for s in statuses:
        style = {"ok": "ok", "at risk": "changed", "burning": "failed"}.get(s.state, "skipped")
        state = s.state + (f" ({', '.join(s.firing)})" if s.firing else "")
        table.add_row(
            s.slo.name,
            s.slo.service,
            f"{s.slo.objective:g}%",
            s.slo.window,
            _percent(s.sli),
            _percent(s.budget_remaining, 1),
            "-" if s.burn_rate_1h is None else f"{s.burn_rate_1h:.2f}x",
            f"[{style}]{escape(state)}[/{style}]",
        )
    out.print(table)


def print_gate_decision(decision: GateDecision) -> None:
    """What the budget gate found, when it has something to say (a quiet open gate prints nothing)."""
    for alert in decision.reported:
        warning(f"budget gate: {alert} (slow burn: the change goes on)")
    if decision.open and not decision.closing and decision.unreachable:
        warning(f"budget gate: {decision.unreachable}; going on (mode {decision.mode}, unreachable: open)")
    elif decision.open and decision.closing:
        warning(f"budget gate ({decision.mode}): {decision.reason}; going on")
    elif not decision.open and decision.forced is not None:
        warning(f"budget gate closed ({decision.reason}); forced: {decision.forced}")


# ---------------------------------------------------------------------------------------------
# Delivery figures (toolkit report).
# ---------------------------------------------------------------------------------------------


def _restores(restores: Restores) -> str:
    summary = restores.to_dict()
    if not restores.durations:
        return f"none ended; {restores.still_open} open"
    median, longest = summary["median_seconds"], summary["max_seconds"]
    return (
        f"median {_fmt_duration(median)}, max {_fmt_duration(longest)} over {len(restores.durations)};"
        f" {restores.still_open} open"
    )


def print_delivery_report(figures: DeliveryFigures) -> None:
    rate = figures.change_failure_rate
    out.print(f"[bold]delivery[/bold] {figures.since:%Y-%m-%d %H:%M} .. {figures.until:%Y-%m-%d %H:%M} UTC")
    out.print(
        f"deployments          {figures.deployments} ({figures.deployments_per_day:.1f}/day),"
        f" {figures.changed} changed something"
    )
    out.print("change failure rate  " + ("-" if rate is None else f"{rate * 100:.1f}% ({figures.failed} failed)"))
    out.print(f"restore: failed run  {_restores(figures.failed_change_restores)}")
    out.print(f"restore: drift       {_restores(figures.drift_restores)}")
    out.print(f"remediations         {figures.remediations}")
    if figures.per_service:
        table = Table(title="per service", title_justify="left")
        for column in ("service", "deployments", "changed", "failed"):
            table.add_column(column, justify="left" if column == "service" else "right")
        for name, service in sorted(figures.per_service.items()):
            table.add_row(name, str(service.deployments), str(service.changed), str(service.failed))
        out.print(table)


# ---------------------------------------------------------------------------------------------
# toolkit heal.
# ---------------------------------------------------------------------------------------------


def print_heal_status(server: ServerState | None, remediations: list[RunRecord]) -> None:
    if server is None:
        out.print("heal: [failed]not running[/failed] on this controller (toolkit heal serve)")
    else:
        out.print(
            f"heal: [ok]running[/ok] (pid {server.pid}) on {server.listen} since {server.started_at},"
            f" inventory {server.inventory}"
        )
    if not remediations:
        out.print("no remediations recorded")
        return
    print_runs_table(remediations)


# ---------------------------------------------------------------------------------------------
# Environments.
# ---------------------------------------------------------------------------------------------


def print_environment(spec: EnvironmentSpec) -> None:
    lifetime = (
        "protected, no expiry"
        if spec.ttl is None and spec.expires_at is None
        else (f"ttl {spec.ttl}" if spec.ttl is not None else f"expires {spec.expires_at:%Y-%m-%d %H:%M} UTC")
    )
    out.print(f"[bold]{spec.name}[/bold]  owner {spec.owner}, {lifetime}" + (", protected" if spec.protected else ""))
    if spec.aws is not None:
        aws = spec.aws
        out.print(
            f"aws {aws.region} ({', '.join(aws.azs)}), VPC {aws.vpc_cidr}, image {aws.image_owner}/{aws.image_name},"
            f" SSH from {', '.join(map(str, aws.admin_cidrs))}" + (", NAT gateway" if aws.nat_gateway else "")
        )
    table = Table(title=f"{len(spec.hosts)} host(s)", title_justify="left")
    for column in ("host", "service", "groups", "topology", "zone", "type"):
        table.add_column(column, no_wrap=True)
    for host in spec.hosts:
        topology = " ".join(f"{k.removeprefix('cassandra_')}={v}" for k, v in host.hostvars.items())
        table.add_row(host.name, host.service, ", ".join(host.groups), topology, host.az or "-", host.instance_type)
    out.print(table)


_PLAN_MARKS = {
    "create": "[changed]+[/changed]",
    "change": "[changed]~[/changed]",
    "keep": " ",
    "delete": "[failed]-[/failed]",
}


def print_environment_plan(plan: EnvironmentPlan, region: str) -> None:
    """Terraform's shape: one line per resource, + create, ~ change (with each difference), - delete."""
    out.print(f"[bold]plan[/bold] {plan.environment} " + ("in the lab" if region == "lab" else f"on aws {region}"))
    for step in plan.steps:
        where = f" ({step.resource_id})" if step.resource_id else ""
        out.print(f"  {_PLAN_MARKS[step.action]} {step.action:<6} {step.kind} {escape(step.name)}{where}")
        for difference in step.differences:
            out.print(f"             {escape(difference)}")
    counts = ", ".join(f"{plan.count(action)} to {action}" for action in ("create", "change", "delete"))
    out.print(f"{counts}; {plan.count('keep')} unchanged" + ("" if plan.changes_anything else " (nothing to do)"))


def print_environment_up(before: EnvironmentPlan, after: EnvironmentPlan, hosts: list[Endpoint]) -> None:
    """What `env up` did, as the plans before and after it tell (what is still to do is a failure to look at),
    and where its hosts are."""
    if hosts:
        table = Table(title=f"{len(hosts)} host(s)", title_justify="left")
        for column in ("name", "service", "zone", "state", "private", "public"):
            table.add_column(column, no_wrap=True)
        for host in hosts:
            table.add_row(host.name, host.service, host.zone, host.state, host.private_ip, host.public_ip or "-")
        out.print(table)
    left = [step for step in after.steps if step.action in ("create", "change")]
    out.print(
        f"[bold]up[/bold] {after.environment}: {before.count('create')} to create and {before.count('change')} to"
        f" change before, {len(left)} after; {after.count('keep')} in place"
    )
    for step in left:
        err.print(f"[failed]still to {step.action}[/failed] {step.kind} {escape(step.name)}")
    if after.count("delete"):
        out.print(f"{after.count('delete')} resource(s) no longer in the spec are left for `toolkit env down`")


def print_environment_ready(
    environment: str, endpoints: list[dict[str, Any]], steps: dict[str, float], exit_code: int, *, verified: bool
) -> None:
    """Where the environment's services answer, how long each step took, and the time to verified."""
    if endpoints:
        table = Table(title=f"{environment}: endpoints", title_justify="left")
        for column in ("host", "service", "address"):
            table.add_column(column, no_wrap=True)
        for endpoint in endpoints:
            table.add_row(endpoint["host"], endpoint["service"], endpoint["address"])
        out.print(table)
    out.print("  ".join(f"{step} {seconds:.0f}s" for step, seconds in steps.items()))
    total = sum(steps.values())
    if exit_code != 0:
        err.print(f"[failed]{environment}: not verified (exit {exit_code}) after {total:.0f}s[/failed]")
    elif verified:
        out.print(f"[ok]{environment}: from nothing to verified in {total:.0f}s[/ok]")
    else:
        out.print(f"[ok]{environment}: converged in {total:.0f}s[/ok] (not verified: toolkit verify SERVICE -i ...)")


def _fmt_age(seconds: float) -> str:
    """A lifetime to the minute: 2d 3h, 5h 12m, 7m."""
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


def print_environment_list(environments: list[EnvironmentListing], now: dt.datetime) -> None:
    if not environments:
        out.print("no environments")
        return
    table = Table(title=f"{len(environments)} environment(s)", title_justify="left")
    for column in ("name", "region", "owner", "age", "expires", "hosts"):
        table.add_column(column, no_wrap=True)
    for env in environments:
        age = _fmt_age((now - env.created_at).total_seconds()) if env.created_at else "?"
        if env.protected:
            expires = "protected"
        elif env.expires_at is None:
            expires = "never"
        else:
            left = (env.expires_at - now).total_seconds()
            expires = f"in {_fmt_age(left)}" if left > 0 else f"[failed]expired {_fmt_age(-left)} ago[/failed]"
        table.add_row(env.name, env.region, env.owner, age, expires, str(env.hosts))
    out.print(table)


def print_teardowns(results: list[Teardown], *, dry_run: bool) -> None:
    if not results:
        out.print("nothing to take down")
    for result in results:
        if dry_run:
            out.print(f"would take down {result.environment}")
            continue
        out.print(f"[bold]down[/bold] {result.environment}: {len(result.deleted)} resource(s) deleted")
        for step in result.deleted:
            out.print(f"  [failed]-[/failed] {step.kind} {escape(step.name)} ({step.resource_id})")
        for failure in result.failed:
            err.print(f"[failed]left[/failed]  {escape(failure)}")
