"""``toolkit inventory``: what an inventory holds (the lab, a YAML file, an AWS fleet), as a tree or as JSON.

It parses the inventory in-process the way ``toolkit converge`` does before a run (toolkit/runner/inventory.py),
so what it shows is what a converge would target, with the same one-line errors. ``--refresh`` parses with
Ansible's cache off: dynamic inventories query their API again and rewrite their cache. Host variables are the
inventory's (its sources, group_vars/, host_vars/): facts cached by earlier runs are not shown.
"""

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from toolkit import console
from toolkit.cli.options import InventoryOption, LimitOption
from toolkit.errors import UsageError
from toolkit.paths import lab_inventory
from toolkit.runner.inventory import LoadedInventory, load


def _groups_of(loaded: LoadedInventory, names: set[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Every group with a selected host below it: (its child groups, its own selected hosts), sorted."""
    kept: dict[str, tuple[list[str], list[str]]] = {}
    for name, group in loaded.manager.groups.items():
        below = {h.name for h in group.get_hosts()} & names
        if not below:
            continue
        own = sorted(h.name for h in group.hosts if h.name in names)
        children = sorted(c.name for c in group.child_groups if {h.name for h in c.get_hosts()} & names)
        kept[name] = (children, own)
    return kept


def _tree(groups: dict[str, tuple[list[str], list[str]]]) -> Tree:
    def branch(parent: Tree, name: str) -> None:
        children, own = groups[name]
        total = len({*own, *(h for c in children for h in _all_hosts(groups, c))})
        node = parent.add(f"[bold]@{escape(name)}[/bold] [hint]({total} host{'s' * (total != 1)})[/hint]")
        for child in children:
            branch(node, child)
        for host in own:
            node.add(escape(host))

    children, own = groups["all"]
    root = Tree(f"[bold]@all[/bold] [hint]({len(_all_hosts(groups, 'all'))} hosts)[/hint]")
    for child in children:
        if child != "ungrouped" or groups[child][1]:
            branch(root, child)
    for host in own:
        root.add(escape(host))
    return root


def _all_hosts(groups: dict[str, tuple[list[str], list[str]]], name: str) -> set[str]:
    children, own = groups[name]
    found = set(own)
    for child in children:
        found |= _all_hosts(groups, child)
    return found


def _listing(loaded: LoadedInventory, hosts: list[Any]) -> dict[str, Any]:
    """The shape of ``ansible-inventory --list``, so tools that read that read this."""
    groups = _groups_of(loaded, {h.name for h in hosts})
    document: dict[str, Any] = {"_meta": {"hostvars": {h.name: loaded.host_vars(h) for h in hosts}}}
    for name, (children, own) in sorted(groups.items()):
        entry: dict[str, Any] = {}
        if children:
            entry["children"] = children
        if own:
            entry["hosts"] = own
        document[name] = entry
    return document


def inventory(
    inventory: InventoryOption = None,
    limit: LimitOption = None,
    graph: Annotated[bool, typer.Option("--graph", help="The group tree with every host (the default).")] = False,
    list_all: Annotated[
        bool,
        typer.Option("--list", help="Every group and host with its variables, as JSON (ansible-inventory's shape)."),
    ] = False,
    host: Annotated[
        str | None, typer.Option("--host", help="One host's inventory variables, as JSON.", show_default=False)
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Bypass the inventory's cache: query again and rewrite the cache.")
    ] = False,
) -> None:
    """Show what an inventory holds: its group tree, or its groups, hosts and variables as JSON."""
    if sum((graph, list_all, host is not None)) > 1:
        raise UsageError("--graph, --list and --host are alternatives: give one")
    if inventory is None:
        inventory = lab_inventory()
        if not (inventory / "hosts.yml").exists():
            raise UsageError("the lab is not up (no inventories/lab/hosts.yml)", hint="run: toolkit lab up, or give -i")
    loaded = load(inventory, limit, refresh=refresh)
    if host is not None:
        found = loaded.manager.get_host(host)
        if found is None:
            names = ", ".join(sorted(h.name for h in loaded.every)[:8])
            raise UsageError(f"no host {host!r} in {loaded.source}", hint=f"hosts: {names}")
        console.emit_json(loaded.host_vars(found))
        return
    hosts = loaded.selected
    how = "queried again" if refresh else "parsed"
    summary = f"{len(hosts)} host(s) from {loaded.source} ({how} in {loaded.seconds:.1f}s)"
    if list_all:
        document = _listing(loaded, hosts)
        console.info(f"{summary}, {len(document) - 1} group(s)")
        console.emit_json(document)
        return
    groups = _groups_of(loaded, {h.name for h in hosts})
    console.out.print(_tree(groups))
    console.info(f"{summary}, {len(groups)} group(s)")
