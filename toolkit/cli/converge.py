"""``toolkit converge SERVICE``: apply a service's playbook to its hosts."""

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from toolkit import console
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
from toolkit.drift.schedule.job import default_toolkit
from toolkit.errors import UsageError
from toolkit.exit_codes import ExitCode
from toolkit.metrics import converge as converge_metrics
from toolkit.paths import state_paths
from toolkit.runner.events import RunEvent
from toolkit.runner.execute import PlaybookRun, RunSettings, run_playbook
from toolkit.runner.extravars import parse_extra_vars
from toolkit.runner.inventory import LoadedInventory, resolved_from
from toolkit.services import ServiceCoverage, play_services, playbook_for, services_in
from toolkit.slo import gate
from toolkit.slo.locate import GateSettings, gate_settings


@contextmanager
def cancel_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C or SIGTERM (cron timeouts) cancel the run through ansible-runner's cancel callback."""
    cancel = threading.Event()

    def request_cancel(signum: int, frame: FrameType | None) -> None:
        if not cancel.is_set():
            console.warning("cancelling the run (waiting for ansible-playbook to stop)…")
        cancel.set()

    previous = {sig: signal.signal(sig, request_cancel) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield cancel
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def converge(
    service: Annotated[str, typer.Argument(help="The service to converge: a playbook in playbooks/ (site = all).")],
    inventory: InventoryOption = None,
    limit: LimitOption = None,
    tags: Annotated[str | None, typer.Option("--tags", "-t", help="Only tasks with these tags.")] = None,
    skip_tags: Annotated[str | None, typer.Option("--skip-tags", help="Skip tasks with these tags.")] = None,
    check: Annotated[bool, typer.Option("--check", "-C", help="Report what would change; change nothing.")] = False,
    diff: Annotated[bool, typer.Option("--diff", "-D", help="Show the differences in changed files.")] = False,
    extra_vars: Annotated[
        list[str] | None, typer.Option("--extra-vars", "-e", help="key=value or @file (YAML); repeatable.")
    ] = None,
    json_output: JsonOption = False,
    forks: Annotated[int | None, typer.Option("--forks", "-f", min=1, max=1000, help="Parallel hosts.")] = None,
    verbose: VerboseOption = 0,
    textfile_dir: Annotated[
        Path | None,
        typer.Option(
            "--textfile-dir",
            envvar="TOOLKIT_TEXTFILE_DIR",
            help="Where to write the last-success metrics (node_exporter's textfile directory). Default: state dir.",
        ),
    ] = None,
    force_despite_budget: ForceDespiteBudgetOption = None,
    lock_timeout: LockTimeoutOption = "0s",
    note: Annotated[
        str | None, typer.Option("--note", help="Kept in the run history with the run (a change ticket, a reason).")
    ] = None,
    vault_password_file: Annotated[
        Path | None,
        typer.Option(
            "--vault-password-file",
            envvar="ANSIBLE_VAULT_PASSWORD_FILE",
            help="File with the ansible-vault password (or set TOOLKIT_VAULT_PASSWORD).",
        ),
    ] = None,
) -> None:
    """Converge SERVICE: run [bold]playbooks/SERVICE.yml[/bold] through ansible-runner, with a live view."""
    playbook = playbook_for(service)
    extra = parse_extra_vars(extra_vars or [])
    if vault_password_file is not None and not vault_password_file.is_file():
        raise UsageError(f"vault password file {vault_password_file} does not exist")
    reason = forced_reason(force_despite_budget)
    lock_wait = lock_wait_seconds(lock_timeout)
    loaded = load_inventory(inventory, limit)
    resolved = resolved_from(loaded, limit)
    state = state_paths()
    # A bad TOOLKIT_STRATEGY stops here, before the gate and the live view.
    settings = RunSettings.from_env(state, lock_wait)
    notes = [note.strip()] if note and note.strip() else []
    if not check:
        gate_config = gate_settings(loaded)
        notes += filter(None, [budget_gate(service, gate_config, reason, json_output)])
        between_batches = batch_gate_vars(service, loaded, gate_config, budget_forced=reason is not None)
        extra = replace(extra, inline={**extra.inline, **between_batches})
    run = PlaybookRun(
        kind="converge",
        target=service,
        playbook=playbook,
        inventory=resolved,
        tags=tags,
        skip_tags=skip_tags,
        check=check,
        diff=diff,
        extra_vars=extra,
        forks=forks,
        verbosity=verbose,
        vault_password_file=vault_password_file.resolve() if vault_password_file else None,
        color=console.err.is_terminal and not os.environ.get("NO_COLOR"),
        note="; ".join(notes) or None,
    )
    title = f"converge {service}" + (" (check mode)" if check else "")
    coverage = ServiceCoverage(play_services(service), default_service=service)
    with cancel_on_signals() as cancel, console.RunView(title, resolved.hosts, verbose=verbose) as view:

        def observe(event: RunEvent) -> None:
            coverage.observe(event)
            view.handle(event)

        result = run_playbook(run, settings, observer=observe, cancel=cancel)
    converge_metrics.write(textfile_dir or state.home / "metrics", result, coverage.pairs, time.time())
    console.print_run_summary(result)
    if json_output:
        console.emit_json(result.to_dict())
    raise typer.Exit(int(result.exit_code))


def batch_gate_vars(
    service: str, loaded: LoadedInventory, settings: GateSettings, *, budget_forced: bool
) -> dict[str, Any]:
    """The command the rolling plays run between batches (playbooks/tasks/batch_gate.yml), unless the gate is off."""
    if settings.mode == "off":
        return {}
    command = [str(default_toolkit()), "slo", "gate", service, "--inventory", str(loaded.source)]
    return {"toolkit_batch_gate": command + (["--budget-forced"] if budget_forced else [])}


def budget_gate(service: str, settings: GateSettings, forced_reason: str | None, json_output: bool) -> str | None:
    """Ask the budget gate whether SERVICE may change now; exit 6 if not (nothing has run).

    Returns the note the run history keeps: the override's reason and what it overrode.
    """
    decision = gate.evaluate(settings, services_in(service))
    allowed = decision.override(forced_reason)
    console.print_gate_decision(decision)
    if allowed:
        return f"forced despite budget: {forced_reason} (gate: {decision.reason})" if decision.forced else None
    if json_output:
        refused = {"status": "refused", "exit_code": int(ExitCode.BUDGET_GATE), "budget_gate": decision.to_dict()}
        console.emit_json(refused)
    console.error(
        f"budget gate closed for {service}: {decision.reason}; nothing ran",
        hint='wait for the budget to recover, or: --force-despite-budget "REASON" (kept in the run history)',
    )
    raise typer.Exit(int(ExitCode.BUDGET_GATE))
