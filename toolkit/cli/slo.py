"""``toolkit slo``: each SLO's error budget and burn rate, from the fleet's Prometheus."""

from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import InventoryOption, JsonOption, load_inventory
from toolkit.errors import ToolkitError, UsageError
from toolkit.exit_codes import ExitCode
from toolkit.services import playbook_for, services_in
from toolkit.slo import gate
from toolkit.slo.definitions import load_slos
from toolkit.slo.locate import gate_settings, prometheus_url
from toolkit.slo.prometheus import PrometheusAPI, PrometheusUnavailable
from toolkit.slo.status import slo_status

app = typer.Typer(help="Service level objectives: SLI, error budget left and burn rate of each one.")

PrometheusURLOption = Annotated[
    str | None,
    typer.Option(
        "--prometheus-url",
        help="Prometheus's base URL. Default: TOOLKIT_PROMETHEUS_URL, toolkit_prometheus_url, or the inventory's "
        "first prometheus host.",
        show_default=False,
    ),
]


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context, inventory: InventoryOption = None, json_output: JsonOption = False) -> None:
    if ctx.invoked_subcommand is None:
        status(inventory=inventory, url=None, json_output=json_output)


@app.command("status")
def status(inventory: InventoryOption = None, url: PrometheusURLOption = None, json_output: JsonOption = False) -> None:
    """Each SLO in slos.yml: its SLI over the window, the error budget left, the 1h burn rate, firing alerts."""
    slos = load_slos()
    if url is None:
        loaded = load_inventory(inventory, None)
        url = prometheus_url(loaded)
        if url is None:
            raise UsageError(
                f"no Prometheus in {loaded.source}", hint="add a host to group prometheus or pass --prometheus-url"
            )
    try:
        statuses = slo_status(PrometheusAPI.at(url), slos)
    except PrometheusUnavailable as exc:
        raise ToolkitError(str(exc), exit_code=ExitCode.UNREACHABLE) from None
    if json_output:
        console.emit_json({"prometheus_url": url, "slos": [s.to_dict() for s in statuses]})
    else:
        console.print_slo_status(statuses, url)


@app.command("gate")
def gate_command(
    service: Annotated[str, typer.Argument(help="The service being changed: a playbook in playbooks/ (site = all).")],
    hosts: Annotated[
        str | None,
        typer.Option("--hosts", help="Comma-separated hosts the last batch changed: they must be healthy too."),
    ] = None,
    inventory: InventoryOption = None,
    budget_forced: Annotated[
        bool, typer.Option("--budget-forced", help="The run was forced despite the budget: check health only.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Ask the budget and health gate whether a rolling change may go on (converge asks it between batches).

    Exit codes: 0 go on (or the gate is off, or only warns), 6 stop.
    """
    playbook_for(service)
    batch = [host.strip() for host in (hosts or "").split(",") if host.strip()]
    loaded = load_inventory(inventory, None)
    unknown = sorted(set(batch) - {host.name for host in loaded.every})
    if unknown:
        raise UsageError(f"--hosts: not in the inventory: {', '.join(unknown)}")
    decision = gate.evaluate_batch(gate_settings(loaded), services_in(service), batch, budget_forced=budget_forced)
    if json_output:
        console.emit_json(decision.to_dict())
    console.print_gate_decision(decision)
    if not decision.open:
        console.error(f"gate closed for {service} after {', '.join(batch) or 'the last batch'}: {decision.reason}")
        raise typer.Exit(int(ExitCode.BUDGET_GATE))
