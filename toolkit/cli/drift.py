"""``toolkit drift``: find what no longer matches the code, record it, alert on it, and fix it on request.

``toolkit drift [SERVICE]`` is short for ``toolkit drift check [SERVICE]``; ``history`` and ``schedule``
are the other commands of the group.
"""

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer

from toolkit import console
from toolkit.cli import drift_schedule
from toolkit.cli.converge import batch_gate_vars, cancel_on_signals
from toolkit.cli.options import (
    ForceDespiteBudgetOption,
    InventoryOption,
    JsonOption,
    LimitOption,
    LockTimeoutOption,
    VerboseOption,
    forced_reason,
    load_inventory,
    lock_wait_seconds,
)
from toolkit.drift.check import DriftCheck, DriftRequest, Observer
from toolkit.drift.ignore import default_ignore_file
from toolkit.drift.store import DriftStore
from toolkit.errors import UsageError
from toolkit.paths import state_paths
from toolkit.runner.execute import RunSettings
from toolkit.runner.extravars import parse_extra_vars
from toolkit.runner.inventory import ResolvedInventory, resolved_from
from toolkit.services import hosts_pattern_for, playbook_for
from toolkit.slo.locate import gate_settings


class _DefaultToCheck(typer.core.TyperGroup):
    """Anything that is not a subcommand (a service name, an option) goes to ``check``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        help_asked = bool(args) and args[0] in ("-h", "--help")
        if not help_asked and (not args or args[0] not in self.commands):
            args = ["check", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultToCheck,
    help="Find drift (hosts that no longer match the code), keep its history, fix it with --remediate.",
)
app.add_typer(drift_schedule.app, name="schedule")


class _PhaseViews:
    """One live view per phase of a drift command (check, remediate, recheck), closed before the next opens."""

    def __init__(self, target: str, verbose: int) -> None:
        self.target = target
        self.verbose = verbose
        self._stack = ExitStack()

    def __call__(self, phase: str, inventory: ResolvedInventory) -> Observer:
        self._stack.close()
        title = {"check": "drift", "remediate": "remediate", "recheck": "re-check"}[phase] + f" {self.target}"
        view = self._stack.enter_context(console.RunView(title, inventory.hosts, verbose=self.verbose))
        return view.handle

    def close(self) -> None:
        self._stack.close()


@app.command("check")
def check(
    service: Annotated[
        str, typer.Argument(help="The service to check: a playbook in playbooks/ (site = all).")
    ] = "site",
    inventory: InventoryOption = None,
    limit: LimitOption = None,
    json_output: JsonOption = False,
    remediate: Annotated[
        bool, typer.Option("--remediate", help="Converge the drifted hosts (only those), then check them again.")
    ] = False,
    ignore_file: Annotated[
        Path | None,
        typer.Option("--ignore-file", help="Expected differences. Default: drift-ignore.yml beside the inventory."),
    ] = None,
    textfile_dir: Annotated[
        Path | None,
        typer.Option(
            "--textfile-dir",
            envvar="TOOLKIT_TEXTFILE_DIR",
            help="Where to write the Prometheus metrics (node_exporter's textfile directory). Default: state dir.",
        ),
    ] = None,
    extra_vars: Annotated[
        list[str] | None, typer.Option("--extra-vars", "-e", help="key=value or @file (YAML); repeatable.")
    ] = None,
    forks: Annotated[int | None, typer.Option("--forks", "-f", min=1, max=1000, help="Parallel hosts.")] = None,
    verbose: VerboseOption = 0,
    vault_password_file: Annotated[
        Path | None,
        typer.Option("--vault-password-file", envvar="ANSIBLE_VAULT_PASSWORD_FILE", help="ansible-vault password."),
    ] = None,
    force_despite_budget: ForceDespiteBudgetOption = None,
    lock_timeout: LockTimeoutOption = "0s",
    scheduled: Annotated[bool, typer.Option("--scheduled", hidden=True)] = False,
) -> None:
    """Check SERVICE's hosts in check + diff mode and report what drifted, per host.

    Exit codes: 0 no drift, 3 drift found, 1 a check failed, 4 a host unreachable, 5 another run holds the lock,
    6 drift found and --remediate refused by the budget gate, or its converge stopped between rolling batches.
    """
    playbook_for(service)
    if vault_password_file is not None and not vault_password_file.is_file():
        raise UsageError(f"vault password file {vault_password_file} does not exist")
    if ignore_file is not None and not ignore_file.is_file():
        raise UsageError(f"ignore file {ignore_file} does not exist")
    reason = forced_reason(force_despite_budget)
    lock_wait = lock_wait_seconds(lock_timeout)
    loaded = load_inventory(inventory, limit, hosts_pattern_for(service))
    resolved = resolved_from(loaded, limit)
    # Read now, so a bad gate setting is a usage error before the check runs.
    budget_gate = gate_settings(loaded) if remediate else None
    state = state_paths()
    request = DriftRequest(
        target=service,
        inventory=resolved,
        ignore_file=ignore_file or default_ignore_file(resolved.source),
        textfile_dir=textfile_dir or state.home / "metrics",
        remediate=remediate,
        scheduled=scheduled,
        extra_vars=parse_extra_vars(extra_vars or []),
        forks=forks,
        verbosity=verbose,
        vault_password_file=vault_password_file.resolve() if vault_password_file else None,
        color=console.err.is_terminal and not os.environ.get("NO_COLOR"),
        budget_gate=budget_gate,
        forced_reason=reason,
        remediation_vars=(
            batch_gate_vars(service, loaded, budget_gate, budget_forced=reason is not None) if budget_gate else {}
        ),
    )
    settings = RunSettings.from_env(state, lock_wait)
    views = _PhaseViews(service, verbose)
    with cancel_on_signals() as cancel:
        try:
            report = DriftCheck(request, settings, observers=views, cancel=cancel).run()
        finally:
            views.close()
    console.print_drift_report(report)
    if json_output:
        console.emit_json(report.to_dict())
    raise typer.Exit(int(report.exit_code))


@app.command("history")
def history(
    host: Annotated[str | None, typer.Option("--host", help="Only this host.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only resources that still drift.")] = False,
    count: Annotated[int, typer.Option("--last", "-n", min=1, help="How many resources, newest first.")] = 50,
    inventory: Annotated[
        Path | None, typer.Option("--inventory", "-i", help="Only this inventory (default: every inventory).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Drifted resources: first seen, last seen, and when and how they were resolved."""
    source = str(inventory.resolve()) if inventory is not None else None
    records = DriftStore(state_paths().history_db).history(
        inventory=source, host=host, open_only=open_only, limit=count
    )
    if json_output:
        console.emit_json([record.to_dict() for record in records])
        return
    console.print_drift_history(records)
