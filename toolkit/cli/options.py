"""Options shared by the commands that run against an inventory (converge, verify, drift)."""

from pathlib import Path
from typing import Annotated

import typer

from toolkit.durations import parse_duration
from toolkit.errors import UsageError
from toolkit.paths import lab_inventory
from toolkit.runner.inventory import LoadedInventory, ResolvedInventory, load, resolved_from

InventoryOption = Annotated[
    Path | None,
    typer.Option(
        "--inventory",
        "-i",
        envvar="TOOLKIT_INVENTORY",
        help="Inventory file or directory. Default: the lab (inventories/lab).",
        show_default=False,
    ),
]
LimitOption = Annotated[
    str | None, typer.Option("--limit", "-l", help="Only these hosts or groups (an Ansible host pattern).")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout; human output stays on stderr.")
]
ForceDespiteBudgetOption = Annotated[
    str | None,
    typer.Option(
        "--force-despite-budget",
        metavar="REASON",
        help="Change hosts although the budget gate is closed (docs/slo.md); the reason is kept in the history.",
    ),
]
LockTimeoutOption = Annotated[
    str,
    typer.Option(
        "--lock-timeout",
        metavar="DURATION",
        help="Wait this long (30s, 10m) for another run's lock on the inventory instead of refusing at once.",
    ),
]
VerboseOption = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="Show Ansible's own output (-vvv for more).")
]


def resolve_inventory(inventory: Path | None, limit: str | None, scope: str | None = None) -> ResolvedInventory:
    """The inventory to use and the hosts it targets (within scope, a host pattern); the lab's by default."""
    return resolved_from(load_inventory(inventory, limit, scope), limit)


def load_inventory(inventory: Path | None, limit: str | None, scope: str | None = None) -> LoadedInventory:
    """The parsed inventory (the lab's by default), for commands that need its variables as well as its hosts."""
    if inventory is None:
        inventory = lab_inventory()
        if not (inventory / "hosts.yml").exists():
            raise UsageError("the lab is not up (no inventories/lab/hosts.yml)", hint="run: toolkit lab up")
    return load(inventory, limit, scope=scope)


def lock_wait_seconds(timeout: str) -> float:
    """--lock-timeout in seconds (0 refuses at once). Raises UsageError."""
    return parse_duration(timeout, "--lock-timeout", allow_zero=True).total_seconds()


def forced_reason(reason: str | None) -> str | None:
    """--force-despite-budget's reason, stripped; an empty one is refused (an override must say why)."""
    if reason is not None and not reason.strip():
        raise UsageError("--force-despite-budget needs a reason")
    return reason.strip() if reason is not None else None
