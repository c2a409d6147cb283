"""``toolkit drift schedule``: run drift on its own, from a systemd timer or (without systemd) cron."""

from enum import StrEnum
from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import InventoryOption, JsonOption, LimitOption
from toolkit.drift import schedule
from toolkit.errors import UsageError
from toolkit.services import playbook_for

app = typer.Typer(
    help="Run drift on a schedule: a systemd timer, or a cron entry where systemd is not running.",
    no_args_is_help=True,
)


class BackendName(StrEnum):
    auto = "auto"
    systemd = "systemd"
    cron = "cron"


BackendOption = Annotated[
    BackendName,
    typer.Option("--backend", help="auto: systemd when it is PID 1, else cron."),
]
ServiceArgument = Annotated[str, typer.Argument(help="The service: a playbook in playbooks/ (site = all).")]


@app.command()
def install(
    service: ServiceArgument,
    every: Annotated[
        str, typer.Option("--every", help="How often: 1m-30m dividing an hour, 1h-12h dividing a day, or 1d.")
    ] = "1h",
    inventory: InventoryOption = None,
    limit: LimitOption = None,
    remediate: Annotated[
        bool, typer.Option("--remediate", help="Each run converges the drifted hosts, then checks them again.")
    ] = False,
    backend: BackendOption = BackendName.auto,
    json_output: JsonOption = False,
) -> None:
    """Schedule `toolkit drift check SERVICE` (installing the same schedule again changes nothing)."""
    playbook_for(service)
    seconds = schedule.parse_every(every)
    if inventory is not None and not inventory.exists():
        raise UsageError(f"inventory {inventory} does not exist")
    extra = [*(["--limit", limit] if limit else []), *(["--remediate"] if remediate else [])]
    job = schedule.DriftJob(
        service=service,
        every=seconds,
        inventory=inventory.resolve() if inventory is not None else None,
        extra_args=tuple(extra),
    )
    installed = schedule.install(job, backend=backend.value)
    verb = "scheduled" if installed.changed else "already scheduled, unchanged:"
    console.info(f"{verb} drift {service} {installed.when} ({installed.backend})")
    if json_output:
        console.emit_json(installed.as_dict())
        return
    console.print_schedules([installed])


@app.command()
def remove(
    service: ServiceArgument, backend: BackendOption = BackendName.auto, json_output: JsonOption = False
) -> None:
    """Remove SERVICE's schedule: exactly the files or crontab lines `install` wrote."""
    removed = schedule.remove(service, backend=backend.value)
    if removed:
        console.info(f"removed the drift schedule of {service}")
    else:
        console.info(f"no drift schedule of {service} is installed: nothing to remove")
    if json_output:
        console.emit_json({"service": service, "removed": removed})


@app.command()
def status(
    service: Annotated[str | None, typer.Argument(help="One service (default: every schedule).")] = None,
    backend: BackendOption = BackendName.auto,
    json_output: JsonOption = False,
) -> None:
    """The installed schedules: backend, interval, command, and (systemd) the next and last run."""
    found = schedule.status(service, backend=backend.value)
    if json_output:
        console.emit_json([entry.as_dict() for entry in found])
        return
    console.print_schedules(found)
