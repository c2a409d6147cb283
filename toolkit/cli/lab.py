"""``toolkit lab``: local hosts as podman containers booting systemd and sshd."""

import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import JsonOption
from toolkit.errors import UsageError
from toolkit.lab.lab import Lab, LabPaths, ssh_base_command, status_as_dict
from toolkit.paths import lab_inventory, state_paths

app = typer.Typer(help="The local lab: podman containers as real hosts (systemd, sshd, their own network).")


class Profile(StrEnum):
    minimal = "minimal"
    full = "full"
    bench = "bench"


def _lab() -> Lab:
    return Lab(LabPaths(state_dir=state_paths().lab, inventory_file=lab_inventory() / "hosts.yml"))


@app.command()
def up(
    profile: Annotated[Profile, typer.Option("--profile", "-p", help="Which hosts to run.")] = Profile.minimal,
    json_output: JsonOption = False,
) -> None:
    """Bring the lab up (idempotent: creates what is missing, starts what is stopped)."""
    started = time.monotonic()
    console.info(f"lab up ({profile.value})…")
    statuses = _lab().up(profile.value)
    elapsed = time.monotonic() - started
    console.print_lab_status(statuses)
    console.info(f"lab up with {len(statuses)} host(s) in {elapsed:.1f}s; inventory: inventories/lab/hosts.yml")
    if json_output:
        console.emit_json({"profile": profile.value, "seconds": round(elapsed, 2), "hosts": status_as_dict(statuses)})


@app.command()
def down(
    purge_cache: Annotated[bool, typer.Option("--purge-cache", help="Also delete the package cache.")] = False,
) -> None:
    """Remove exactly what `lab up` created (the package cache's content is kept unless --purge-cache)."""
    removed = _lab().down(purge_cache=purge_cache)
    console.info("removed: " + ", ".join(removed) if removed else "the lab was not up: nothing to remove")


@app.command()
def bare(
    name: Annotated[str, typer.Argument(help="The container's host name, e.g. new-1.")],
    address: Annotated[str, typer.Option("--address", help="A free address of the lab network, e.g. 10.242.10.41.")],
    authorized_key: Annotated[
        Path | None,
        typer.Option(
            "--authorized-key", help="Public key file the login accepts (sudo needs no password).", dir_okay=False
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the login's password (for SSH and sudo) from stdin instead."),
    ] = False,
    login: Annotated[str, typer.Option("--login", help="The host's only login.")] = "admin",
    json_output: JsonOption = False,
) -> None:
    """Start a bare host: sshd and one login, no Python, in no inventory (what `toolkit bootstrap` starts from)."""
    if (authorized_key is None) == (not password_stdin):
        raise UsageError("give exactly one of --authorized-key FILE and --password-stdin")
    if authorized_key is not None and not authorized_key.is_file():
        raise UsageError(f"--authorized-key {authorized_key}: no such file")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    public_key = authorized_key.read_text() if authorized_key is not None else None
    host = _lab().add_bare(name, address, login, public_key=public_key, password=password)
    console.info(f"bare host {host.name} at {host.address}: ssh {login}@{host.address}; then toolkit bootstrap")
    if json_output:
        console.emit_json({"name": host.name, "address": host.address, "login": login, "container": host.container})


@app.command()
def status(json_output: JsonOption = False) -> None:
    """Each host: container state, address, systemd state, reachable over SSH or not."""
    statuses = _lab().status()
    if json_output:
        console.emit_json(status_as_dict(statuses))
        return
    console.print_lab_status(statuses)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="A lab host, e.g. cassandra-1.")],
) -> None:
    """Open a shell on a lab host (or run the command given after --)."""
    lab = _lab()
    target = lab.host(host)
    command = [*ssh_base_command(lab.paths), f"toolkit@{target.address}", *ctx.args]
    os.execvp(command[0], command)
