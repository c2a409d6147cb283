"""Resolving an inventory and a --limit to host names before anything runs.

Bad inventories and limits that match nothing are caught here, so they become a one-line usage
error instead of an ansible-playbook run that fails (or, worse, "succeeds" on zero hosts).
"""

import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import UsageError
from toolkit.paths import project_root

_NOISE = re.compile(r"^\s*(\[WARNING\]:\s*)?")


@dataclass(frozen=True)
class ResolvedInventory:
    """An inventory source and the hosts a run against it will touch."""

    source: Path
    hosts: tuple[str, ...]
    limit: str | None
    lock: str | None = None  # what runs against it serialise on; default: the source

    @property
    def lock_key(self) -> str:
        return self.lock or str(self.source)


@contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Collect what ansible's Display writes to fd 2 while parsing, instead of showing it."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def _first_cause(lines: list[str]) -> str:
    """The most specific line of ansible's parse failure (the YAML problem, not the plugin chatter)."""
    for line in lines:
        if "YAML parsing failed" in line or "Syntax Error" in line:
            return _NOISE.sub("", line).strip()
    for line in lines:
        if line.strip() and "Failed to parse" not in line and "caused by" not in line:
            return _NOISE.sub("", line).strip()
    return ""


@dataclass
class LoadedInventory:
    """A parsed inventory: Ansible's own managers, and how long parsing took."""

    source: Path
    manager: Any  # ansible.inventory.manager.InventoryManager
    variables: Any  # ansible.vars.manager.VariableManager
    seconds: float
    every: list[Any]  # every host (ansible.inventory.host.Host)
    selected: list[Any]  # the hosts the limit (and scope) select; all without them

    def host_vars(self, host: Any) -> dict[str, Any]:
        """What the inventory defines for the host: its vars, its groups' vars, group_vars/ and host_vars/.

        Flattened as ``ansible-inventory`` does (the same get_vars() call, without magic variables), through a
        VariableManager that has no fact cache (see _inventory_variables): facts are not inventory variables.
        """
        from ansible import constants

        found = self.variables.get_vars(host=host, include_hostvars=False, stage="all")
        return {k: v for k, v in found.items() if k not in constants.INTERNAL_STATIC_VARS}


def _inventory_variables(loader: Any, manager: Any) -> Any:
    """A VariableManager over the inventory alone, blind to the fact cache.

    VariableManager.get_vars() merges the facts cached for a host (``fact_caching`` in ansible.cfg: the
    project's jsonfile cache under .toolkit/facts) into its variables, and ``ansible-inventory --list`` and
    ``--host`` show them as if the inventory defined them. A VariableManager reads the fact cache plugin's name
    when it is made, so this one is made with ``fact_caching = memory``, Ansible's default: an empty cache of
    its own. Nothing else changes (precedence, group_vars/, host_vars/, vars plugins), and the setting is
    restored at once for whatever else this process does.
    """
    from ansible import constants
    from ansible.vars.manager import VariableManager

    configured = constants.CACHE_PLUGIN
    constants.CACHE_PLUGIN = "ansible.builtin.memory"
    try:
        return VariableManager(loader=loader, inventory=manager)
    finally:
        constants.CACHE_PLUGIN = configured


def load(source: Path, limit: str | None = None, *, scope: str | None = None, refresh: bool = False) -> LoadedInventory:
    """Parse an inventory source in-process, as a run would, and select the hosts it would target.

    scope is an Ansible host pattern for the hosts a service runs on (its playbook's plays); when given,
    only hosts in it are selected. With ``refresh``, inventory caches are bypassed and rewritten.

    Raises:
        UsageError: the source is missing, malformed, or its plugin failed (the plugin's own message), or it
            has no hosts, or the limit (within the scope) matches none.
    """
    if not source.exists():
        raise UsageError(f"inventory {source} does not exist")
    # Ansible reads its config when first imported: make sure it is the project's (plugin paths).
    os.environ.setdefault("ANSIBLE_CONFIG", str(project_root() / "ansible.cfg"))
    from ansible import constants
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.utils.collection_loader import AnsibleCollectionConfig

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
            if scope:
                in_scope = set(manager.get_hosts(scope))
                selected = [host for host in selected if host in in_scope]
        except AnsibleError as exc:
            failure: AnsibleError | None = exc
        else:
            failure = None
    if failure is not None:
        cause = _first_cause(chatter) or str(failure).splitlines()[0]
        raise UsageError(f"cannot parse inventory {source}: {cause}") from None
    if not every:
        raise UsageError(f"inventory {source} has no hosts", hint="is the lab up? (toolkit lab up)")
    if not selected:
        names = ", ".join(sorted(h.name for h in every)[:8])
        if scope and not limit:
            raise UsageError(f"no host of {source} is in {scope!r}", hint=f"hosts: {names}")
        where = f"{source} (within {scope!r})" if scope else str(source)
        raise UsageError(f"--limit {limit!r} matches no host in {where}", hint=f"hosts: {names}")
    return LoadedInventory(
        source=source.resolve(),
        manager=manager,
        variables=_inventory_variables(loader, manager),
        seconds=seconds,
        every=every,
        selected=selected,
    )


def resolve(source: Path, limit: str | None = None, scope: str | None = None) -> ResolvedInventory:
    """The hosts a run against the inventory would target (see load()), and the inventory's lock key."""
    return resolved_from(load(source, limit, scope=scope), limit)


def resolved_from(loaded: LoadedInventory, limit: str | None) -> ResolvedInventory:
    """What a run needs of an inventory already parsed (its selection made with this limit)."""
    return ResolvedInventory(source=loaded.source, hosts=tuple(h.name for h in loaded.selected), limit=limit)
