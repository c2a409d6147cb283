"""``toolkit bootstrap TARGET --service SERVICE``: a bare host (or EC2 instance) to a verified fleet member."""

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated

import typer

from toolkit import console
from toolkit.bootstrap import flow
from toolkit.bootstrap.placement import check_service, parse_host_vars, services
from toolkit.bootstrap.target import Target, address_target, ec2_target, is_instance_id
from toolkit.cli.converge import cancel_on_signals
from toolkit.cli.options import InventoryOption, JsonOption, VerboseOption
from toolkit.errors import UsageError
from toolkit.paths import lab_inventory, state_paths
from toolkit.runner.execute import RunSettings


class ConsoleSteps:
    """The console side of flow.StepListener."""

    def __init__(self, verbose: int) -> None:
        self.verbose = verbose

    def step_started(self, name: str, description: str) -> None:
        console.print_step_started(name, description)

    def step_finished(self, record: flow.StepRecord) -> None:
        console.print_step_finished(record)

    def playbook_view(self, title: str, hosts: tuple[str, ...]) -> AbstractContextManager[flow.Observer]:
        return self._view(title, hosts)

    @contextmanager
    def _view(self, title: str, hosts: tuple[str, ...]) -> Iterator[flow.Observer]:
        with console.RunView(title, hosts, verbose=self.verbose) as view:
            yield view.handle


def _read_password(prompt: str) -> str:
    """The password from the terminal (not echoed), or the first line of stdin when that is a pipe (scripts,
    a secrets manager's CLI), as `docker login --password-stdin` reads it. Never from a command line."""
    password = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        raise UsageError("no password given")
    return password


def _target(text: str, regions: list[str], endpoint_url: str | None) -> Target:
    if is_instance_id(text):
        regions = regions or [r for r in (os.environ.get("AWS_REGION"), os.environ.get("AWS_DEFAULT_REGION")) if r]
        return ec2_target(text, regions, endpoint_url=endpoint_url)
    return address_target(text)


def bootstrap(
    target: Annotated[str, typer.Argument(help="An IP address, a host name, or an EC2 instance id (i-...).")],
    service: Annotated[str, typer.Option("--service", "-s", help=f"What the host becomes: {', '.join(services())}.")],
    user: Annotated[
        str, typer.Option("--user", "-u", help="The login the bare host has (Debian's EC2 images: admin).")
    ] = "admin",
    key: Annotated[
        Path | None, typer.Option("--key", "-k", help="Private key for that login (default: ssh's own choice).")
    ] = None,
    password_prompt: Annotated[
        bool,
        typer.Option(
            "--password-prompt",
            help="Ask for the login's password (also sudo's), never echoed; from a pipe, read its first line.",
        ),
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Inventory name (default: the Name tag, or the address).")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Group within the service: postgresql_primary or postgresql_replica.")
    ] = None,
    host_var: Annotated[
        list[str] | None, typer.Option("--host-var", help="KEY=VALUE for the host's inventory entry; repeatable.")
    ] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The host's SSH port.")] = 22,
    ssh_timeout: Annotated[
        float, typer.Option("--ssh-timeout", min=1, help="Seconds to wait for sshd to answer.")
    ] = 300,
    lock_login_password: Annotated[
        bool,
        typer.Option("--lock-login-password", help="Lock the bootstrap login's password once keys work."),
    ] = False,
    region: Annotated[
        list[str] | None, typer.Option("--region", help="AWS region(s) to find an instance id in; repeatable.")
    ] = None,
    inventory: InventoryOption = None,
    json_output: JsonOption = False,
    verbose: VerboseOption = 0,
) -> None:
    """Bootstrap a host: SSH, host key, login, inventory, access, base, hardening, the service, verify, Prometheus."""
    check_service(service)
    host_vars = parse_host_vars(host_var or [])
    if key is not None and not key.is_file():
        raise UsageError(f"--key {key}: no such file")
    source = inventory or lab_inventory()
    if not source.exists():
        raise UsageError(f"inventory {source} does not exist", hint="run: toolkit lab up, or pass --inventory")
    # boto3 reads AWS_ENDPOINT_URL itself (moto in the tests, VPC endpoints in production).
    endpoint_url = None
    resolved_target = _target(target, region or [], endpoint_url)
    password = _read_password(f"password for {user}@{resolved_target.address}: ") if password_prompt else None
    request = flow.BootstrapRequest(
        target=resolved_target,
        service=service,
        inventory=source.resolve(),
        login=flow.Login(user=user, key=key.resolve() if key else None, password=password),
        name=name,
        group=group,
        host_vars=host_vars,
        port=port,
        ssh_timeout=ssh_timeout,
        lock_login_password=lock_login_password,
        verbosity=verbose,
        color=console.err.is_terminal and not os.environ.get("NO_COLOR"),
        endpoint_url=endpoint_url,
    )
    with cancel_on_signals() as cancel:
        result = flow.Bootstrap(
            request, RunSettings.from_env(state_paths()), ConsoleSteps(verbose), cancel=cancel
        ).run()
    console.print_bootstrap_summary(result)
    if json_output:
        console.emit_json(result.to_dict())
    raise typer.Exit(int(result.exit_code))
