"""``toolkit inventory``: what an inventory holds (the lab, a YAML file, an AWS fleet), as a tree or as JSON.

It parses the inventory in-process the way ``toolkit converge`` does before a run (toolkit/runner/inventory.py),
so what it shows is what a converge would target, with the same one-line errors. ``--refresh`` parses with
Ansible's cache off: dynamic inventories query their API again and rewrite their cache.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from toolkit import console
from toolkit.cli.options import InventoryOption, LimitOption
from toolkit.errors import UsageError
from toolkit.paths import lab_inventory, project_root
from toolkit.runner.inventory import _captured_stderr, _first_cause


@dataclass
class LoadedInventory:
    """A parsed inventory: Ansible's own managers, and how long parsing took."""

    source: Path
    manager: Any  # ansible.inventory.manager.InventoryManager
    variables: Any  # ansible.vars.manager.VariableManager
    seconds: float
    every: list[Any]  # every host (ansible.inventory.host.Host)
    selected: list[Any]  # the hosts the limit selects (all without one)

    def host_vars(self, host: Any) -> dict[str, Any]:
        """What a play sees for the host from the inventory (its vars, group vars, group_vars/ and host_vars/)."""
        from ansible import constants

        found = self.variables.get_vars(host=host, include_hostvars=False, stage="all")
        return {k: v for k, v in found.items() if k not in constants.INTERNAL_STATIC_VARS}


def load(source: Path, limit: str | None = None, *, refresh: bool = False) -> LoadedInventory:
    """Parse an inventory source in-process; with ``refresh``, inventory caches are bypassed and rewritten.

    Raises:
        UsageError: the source is missing, malformed, or its plugin failed (the plugin's own message), or it
            has no hosts, or the limit matches none.
    """
    if not source.exists():
        raise UsageError(f"inventory {source} does not exist")
    os.environ.setdefault("ANSIBLE_CONFIG", str(project_root() / "ansible.cfg"))
    from ansible import constants
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.utils.collection_loader import AnsibleCollectionConfig
    from ansible.vars.manager import VariableManager

    # Collection plugins (amazon.aws.aws_ec2, cache_plugin: ansible.builtin.jsonfile) load only once the
    # collection finder is installed; ansible's own CLIs do this at start.
    if AnsibleCollectionConfig.collection_finder is None:
        init_plugin_loader()
    constants.INVENTORY_UNPARSED_IS_FAILED = True
    constants.INVENTORY_ANY_UNPARSED_IS_FAILED = True
    loader = DataLoader()
    started = time.perf_counter()
    with _captured_stderr() as chatter:
        try:
            manager = InventoryManager(loader=loader, sources=[str(source)], cache=not refresh)
            seconds = time.perf_counter() - started
            every = list(manager.get_hosts("all"))
            selected = list(manager.get_hosts(limit)) if limit else every
        except AnsibleError as exc:
            failure: AnsibleError | None = exc
        else:
            failure = None
    if failure is not None:
        cause = _first_cause(chatter) or str(failure).splitlines()[0]
        raise UsageError(f"cannot parse inventory {source}: {cause}") from None
    if not every:
        raise UsageError(f"inventory {source} has no hosts")
    if not selected:
        names = ", ".join(sorted(h.name for h in every)[:8])
        raise UsageError(f"--limit {limit!r} matches no host in {source}", hint=f"hosts: {names}")
    return LoadedInventory(
        source=source.resolve(),
        manager=manager,
        variables=VariableManager(loader=loader, inventory=manager),
        seconds=seconds,
        every=every,
        selected=selected,
    )


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
        str | None, typer.Option("--host", help="One host's variables, as JSON.", show_default=False)
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
