"""``toolkit env``: environments on demand from environments/NAME.yml (docs/environments.md)."""

import datetime as dt
import sys
from typing import Annotated, NoReturn

import typer

from toolkit import console
from toolkit.cli import env_aws, env_configure, env_lab
from toolkit.cli.options import JsonOption, VerboseOption
from toolkit.environments.aws_down import Teardown, list_environments, take_down
from toolkit.environments.aws_model import aws_settings, desired_resources
from toolkit.environments.aws_state import aws_errors, ec2_client, read_environment_in
from toolkit.environments.lab_env import LabEnvironment, desired_lab_resources, list_lab_environments
from toolkit.environments.plan import make_plan
from toolkit.environments.spec import environments_dir, known_specs, load_spec
from toolkit.errors import UsageError
from toolkit.exit_codes import ExitCode
from toolkit.paths import state_paths
from toolkit.runner.execute import RunSettings

PROVIDERS = ("aws", "lab")

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
    provider: Annotated[str, typer.Option("--provider", help="Where the environment lives: aws or lab.")] = "aws",
    json_output: JsonOption = False,
) -> None:
    """Show, changing nothing, what `up` would create, change or keep, and what exists that the spec no longer has.

    On aws, reads only resources tagged toolkit:environment=NAME, with the credentials and endpoint boto3 finds
    (AWS_PROFILE, AWS_ENDPOINT_URL, ...); in the lab, the containers labelled io.toolkit.env=NAME and the
    network.
    """
    if _provider(provider) == "lab":
        lab_spec = load_spec(name)
        lab_plan = make_plan(
            name, desired_lab_resources(lab_spec), LabEnvironment(name, state_paths()).existing_resources()
        )
        if json_output:
            console.emit_json({"provider": provider, **lab_plan.to_dict()})
        else:
            console.print_environment_plan(lab_plan, "lab")
        return
    spec = load_spec(name)
    aws = aws_settings(spec)
    result = make_plan(spec.name, desired_resources(spec), read_environment_in(aws.region, spec.name))
    if json_output:
        console.emit_json({"provider": provider, "region": aws.region, **result.to_dict()})
    else:
        console.print_environment_plan(result, aws.region)


@app.command("up")
def up(
    name: Annotated[str, typer.Argument(help="The environment: environments/NAME.yml.")],
    provider: Annotated[str, typer.Option("--provider", help="Where the environment lives: aws or lab.")] = "aws",
    resources_only: Annotated[
        bool,
        typer.Option(
            "--resources-only", help="aws: create or update the resources and stop: no SSH, access, converge or verify."
        ),
    ] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Converge and stop: no testinfra suites (toolkit verify runs them).")
    ] = False,
    wait: Annotated[
        float,
        typer.Option("--wait", min=1, help="aws: seconds to wait for the instances to be listed and answer SSH."),
    ] = 600,
    json_output: JsonOption = False,
    verbose: VerboseOption = 0,
) -> None:
    """Build the environment and end with a converged, verified fleet.

    On aws: the plan's create and change steps with amazon.aws modules (playbooks/_env_aws.yml) and the
    environment's inventory; then, once every instance answers SSH, its host keys (trust on first use), the
    access play of playbooks/bootstrap.yml, `converge site` and every service's verify suite. On lab: the
    spec's hosts as containers on a network of the environment's own, then the same converge and verify.
    Prints the endpoints and the time from nothing to verified.

    Idempotent: a second `up` finds everything and changes nothing; a grown count adds hosts. `up` never
    deletes (a host the spec no longer has stays until `down`).
    """
    where = _provider(provider)
    spec = load_spec(name)
    state = state_paths()
    settings = RunSettings.from_env(state)
    if where == "lab":
        if resources_only:
            raise UsageError("--resources-only is for aws; the lab's hosts are ready as soon as they exist")
        report = env_lab.lab_up(spec, state, settings, verbose, verify=not no_verify)
    else:
        report = env_aws.aws_up(
            spec, state, settings, verbose=verbose, json_output=json_output, resources_only=resources_only,
            verify=not no_verify, ssh_timeout=wait,
        )  # fmt: skip
        if resources_only:
            _finish_resources(report, json_output)
    env_configure.finish(report, json_output)


def _finish_resources(report: env_configure.EnvUpReport, json_output: bool) -> NoReturn:
    if json_output:
        console.emit_json(report.to_dict())
    elif report.error:
        console.error(report.error)
    else:
        console.info("resources only: toolkit bootstrap / converge / verify -i the inventory above")
    raise typer.Exit(int(report.exit_code))


def spec_path_exists(name: str) -> bool:
    return (environments_dir() / f"{name}.yml").is_file()


RegionOption = Annotated[
    list[str] | None,
    typer.Option("--region", help="AWS region to look in (repeatable). Default: the regions of environments/*.yml."),
]


def _regions(regions: list[str] | None) -> list[str]:
    if regions:
        return sorted(set(regions))
    found = sorted({spec.aws.region for spec in known_specs() if spec.aws is not None})
    if not found:
        raise UsageError("no region to look in: no environments/*.yml with an aws section", hint="pass --region")
    return found


ProviderOption = Annotated[str, typer.Option("--provider", help="Where the environments live: aws or lab.")]


def _provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise UsageError(f"--provider {provider!r}: valid: {', '.join(PROVIDERS)}")
    return provider


@app.command("list")
def list_command(
    regions: RegionOption = None, provider: ProviderOption = "aws", json_output: JsonOption = False
) -> None:
    """The environments (on AWS found by their VPC's tags; in the lab by their state): owner, age, expiry, hosts."""
    now = dt.datetime.now(dt.UTC)
    if _provider(provider) == "lab":
        found = list_lab_environments(state_paths())
    else:
        with aws_errors():
            found = [env for region in _regions(regions) for env in list_environments(ec2_client(region), region)]
    if json_output:
        console.emit_json([env.to_dict(now) for env in found])
    else:
        console.print_environment_list(found, now)


@app.command("down")
def down(
    name: Annotated[str, typer.Argument(help="The environment: environments/NAME.yml, or only its tag with --region.")],
    region: Annotated[str | None, typer.Option("--region", help="Its region, when no spec names it.")] = None,
    provider: Annotated[str, typer.Option("--provider", help="Where the environment lives: aws or lab.")] = "aws",
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask for confirmation (required without a terminal).")
    ] = False,
    purge_cache: Annotated[
        bool, typer.Option("--purge-cache", help="lab: also delete the environment's package cache.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Delete exactly the environment's resources, dependents first: on aws those tagged
    toolkit:environment=NAME; on lab its containers (label io.toolkit.env=NAME), network, key and inventory.

    A protected environment (protected: true in its spec, or its VPC's toolkit:protected tag) is refused.
    """
    if _provider(provider) == "lab":
        lab_spec = load_spec(name, now=dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) if spec_path_exists(name) else None
        if lab_spec is not None and lab_spec.protected:
            raise UsageError(f"environment {name} is protected: down refuses it", hint="unprotect it in its spec first")
        removed = env_lab.lab_down(name, state_paths(), purge_cache)
        if json_output:
            console.emit_json({"provider": "lab", "environment": name, "removed": removed})
        else:
            console.info(
                "removed: " + ", ".join(removed) if removed else f"{name} was not up in the lab: nothing to remove"
            )
        return
    # Checked as of the epoch: down needs the spec's region and protection, and an expiry in the past is no
    # error here; an expired environment is what down is for.
    spec = load_spec(name, now=dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) if region is None else None
    where = region or (spec.aws.region if spec is not None and spec.aws is not None else None)
    if where is None:
        raise UsageError(f"environment {name}: its spec has no aws section", hint="pass --region")
    with aws_errors():
        client = ec2_client(where)
        listed = [env for env in list_environments(client, where) if env.name == name]
        if (spec is not None and spec.protected) or any(env.protected for env in listed):
            raise UsageError(f"environment {name} is protected: down refuses it", hint="unprotect it in its spec first")
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"down deletes every resource of {name} in {where}", hint="pass --yes")
            typer.confirm(f"Delete every resource of {name} in {where}?", abort=True)
        result = take_down(client, name)
    _report_teardowns([result], json_output)


@app.command("reap")
def reap(
    regions: RegionOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what has expired.")] = False,
    provider: ProviderOption = "aws",
    json_output: JsonOption = False,
) -> None:
    """Take down every environment whose time to live has passed (never a protected one). For cron, like drift."""
    now = dt.datetime.now(dt.UTC)
    results: list[Teardown] = []
    if _provider(provider) == "lab":
        state = state_paths()
        for env in list_lab_environments(state):
            if env.expired(now):
                removed = [] if dry_run else env_lab.lab_down(env.name, state, purge_cache=False)
                results.append(Teardown(env.name, deleted=env_lab.as_steps(removed)))
        _report_teardowns(results, json_output, dry_run=dry_run)
        return
    with aws_errors():
        for region in _regions(regions):
            client = ec2_client(region)
            for env in list_environments(client, region):
                if env.expired(now):
                    results.append(Teardown(env.name) if dry_run else take_down(client, env.name))
    _report_teardowns(results, json_output, dry_run=dry_run)


def _report_teardowns(results: list[Teardown], json_output: bool, *, dry_run: bool = False) -> None:
    if json_output:
        console.emit_json({"dry_run": dry_run, "environments": [r.to_dict() for r in results]})
    else:
        console.print_teardowns(results, dry_run=dry_run)
    if any(r.failed for r in results):
        raise typer.Exit(int(ExitCode.TASK_FAILED))
