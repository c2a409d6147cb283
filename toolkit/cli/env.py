"""``toolkit env``: environments on demand from environments/NAME.yml (docs/environments.md)."""

from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import JsonOption
from toolkit.environments.aws_model import desired_resources
from toolkit.environments.aws_state import read_environment_in
from toolkit.environments.plan import make_plan
from toolkit.environments.spec import load_spec
from toolkit.errors import UsageError

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


@app.command("plan")
def plan(
    name: Annotated[str, typer.Argument(help="The environment: environments/NAME.yml.")],
    provider: Annotated[str, typer.Option("--provider", help="Where the environment lives: aws.")] = "aws",
    json_output: JsonOption = False,
) -> None:
    """Show, changing nothing, what `up` would create, change or keep, and what exists that the spec no longer has.

    Reads only resources tagged toolkit:environment=NAME, with the credentials and endpoint boto3 finds
    (AWS_PROFILE, AWS_ENDPOINT_URL, ...).
    """
    if provider != "aws":
        raise UsageError(f"--provider {provider!r}: plan supports aws (the lab's plan is still to come)")
    spec = load_spec(name)
    if spec.aws is None:
        raise UsageError(f"{spec.path.name}: no aws section: the environment cannot be planned on AWS")
    desired = desired_resources(spec)
    result = make_plan(spec.name, desired, read_environment_in(spec.aws.region, spec.name))
    if json_output:
        console.emit_json({"provider": provider, "region": spec.aws.region, **result.to_dict()})
    else:
        console.print_environment_plan(result, spec.aws.region)
