"""``toolkit heal``: alert-driven remediation with Event-Driven Ansible (docs/heal.md)."""

from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import InventoryOption, JsonOption, resolve_inventory
from toolkit.heal.server import (
    DEFAULT_LISTEN,
    ServeSettings,
    parse_listen,
    read_state,
    rulebook_command,
    serve,
    webhook_token,
)
from toolkit.paths import state_paths
from toolkit.runner.history import History

app = typer.Typer(help="Remediate what Alertmanager reports: the heal rulebook, run by ansible-rulebook.")
HEAL_NOTE = "heal: "


@app.command("serve")
def serve_command(
    inventory: InventoryOption = None,
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            envvar="TOOLKIT_HEAL_LISTEN",
            help="Where the webhook listens: loopback, or the controller's private address.",
        ),
    ] = DEFAULT_LISTEN,
) -> None:
    """Run the heal rulebook in the foreground: Alertmanager posts to http://LISTEN/ with the shared token
    (TOOLKIT_HEAL_TOKEN, sent as Authorization: Bearer)."""
    host, port = parse_listen(listen)
    webhook_token()
    rulebook_command()
    resolved = resolve_inventory(inventory, None)
    settings = ServeSettings(listen_host=host, listen_port=port, inventory=resolved.source)
    console.info(f"heal: listening on {settings.listen} for inventory {resolved.source} ({len(resolved.hosts)} hosts)")
    raise typer.Exit(serve(settings, state_paths().home))


@app.command("status")
def status_command(
    last: Annotated[int, typer.Option("--last", "-n", min=1, help="How many remediations to list.")] = 10,
    json_output: JsonOption = False,
) -> None:
    """Whether the rulebook runs (here), and the last remediations it made (from the run history)."""
    state = state_paths()
    server = read_state(state.home)
    running = server is not None and server.alive
    runs = [
        r for r in History(state.history_db).list(limit=500, kind="converge") if (r.note or "").startswith(HEAL_NOTE)
    ]
    if json_output:
        console.emit_json(
            {
                "running": running,
                "server": server.__dict__ if server is not None and running else None,
                "remediations": [{k: v for k, v in r.to_dict().items() if k != "detail"} for r in runs[:last]],
            }
        )
        return
    console.print_heal_status(server if running else None, runs[:last])
