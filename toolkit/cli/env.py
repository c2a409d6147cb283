"""``toolkit env``: environments on demand from environments/NAME.yml (docs/environments.md)."""

from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import JsonOption
from toolkit.environments.spec import load_spec

app = typer.Typer(help="Environments on demand: one spec, the lab or AWS, converged and verified.")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The environment: environments/NAME.yml.")],
    json_output: JsonOption = False,
) -> None:
    """Check the spec and show what the environment holds: every host, its groups, topology, zone and type."""
    spec = load_spec(name)
    if json_output:
        console.emit_json(spec.to_dict())
    else:
        console.print_environment(spec)
