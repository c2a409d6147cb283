"""``toolkit runs``: the history of converge, verify and drift runs."""

from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import JsonOption
from toolkit.errors import UsageError
from toolkit.paths import state_paths
from toolkit.runner.history import History

app = typer.Typer(help="History of runs (who, what, when, how long, result, changes).", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        list_runs(count=20, kind=None, json_output=False)


@app.command("list")
def list_runs(
    count: Annotated[int, typer.Option("--last", "-n", min=1, help="How many runs, newest first.")] = 20,
    kind: Annotated[str | None, typer.Option("--kind", help="Only converge, verify or drift runs.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List recent runs, newest first."""
    records = History(state_paths().history_db).list(limit=count, kind=kind)
    if json_output:
        console.emit_json([{k: v for k, v in r.to_dict().items() if k != "detail"} for r in records])
        return
    console.print_runs_table(records)


@app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix of one).")],
    json_output: JsonOption = False,
) -> None:
    """Show one run: its settings, per-host recap and the tasks that changed or failed."""
    record = History(state_paths().history_db).get(run_id)
    if record is None:
        raise UsageError(f"no run {run_id!r} in the history", hint="toolkit runs list")
    if json_output:
        console.emit_json(record.to_dict())
        return
    console.print_run_record(record)
