"""Adding a bootstrapped host to the inventory it belongs to.

A file inventory (a directory, like inventories/lab) gets the host in ``bootstrap.yml`` beside its other
files, which Ansible reads with them; nothing else in the directory is edited, so hand-kept files and
generated ones (the lab's hosts.yml) stay as they are. An EC2 instance gets the tags the project's
``aws_fleet`` inventory plugin groups on (service, and role for PostgreSQL), so the dynamic inventory lists
it on its next refresh.

The host is registered before its first converge: every step then runs as later converges will (the same
inventory, group_vars and verify suite), and a bootstrap that fails half-way leaves a host that
``toolkit bootstrap`` (or ``toolkit converge site --limit HOST``) completes.
"""

from pathlib import Path
from typing import Any

import yaml

from toolkit.bootstrap.placement import Placement
from toolkit.errors import UsageError

FILE_NAME = "bootstrap.yml"
HEADER = (
    "# Hosts added by `toolkit bootstrap` (one entry per host; a re-run rewrites its own entry).\n"
    "# Ansible reads this file with the rest of this inventory directory. Move a host into the hand-kept\n"
    "# inventory whenever you like: the bootstrap only ever edits this file.\n"
)
# The aws_fleet plugin's defaults (inventories/aws/*.aws.yml: tag_keys).
DEFAULT_TAG_KEYS = {"service": "service", "role": "role"}


def bootstrap_file(inventory: Path) -> Path:
    """Where bootstrapped hosts of a file inventory are listed.

    Raises:
        UsageError: the inventory is a single file or a plugin configuration, which the bootstrap cannot add to.
    """
    if not inventory.is_dir():
        raise UsageError(
            f"cannot add a host to {inventory}: bootstrap adds hosts to an inventory directory",
            hint="use a directory inventory (like inventories/lab), or an EC2 instance id with the AWS inventory",
        )
    return inventory / FILE_NAME


def _groups_entry(placement: Placement) -> tuple[str, dict[str, Any]]:
    hostvars: dict[str, Any] = {"ansible_host": placement.address, **placement.hostvars}
    return placement.group or "ungrouped", {placement.name: hostvars}


def load_entries(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"all": {"children": {}}}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("all", {}).get("children", {}), dict):
        raise UsageError(f"{path} is not an inventory file the bootstrap wrote", hint="fix or remove it")
    data.setdefault("all", {}).setdefault("children", {})
    return data


def render(existing: dict[str, Any], placement: Placement) -> dict[str, Any]:
    """The file's content with the host's entry (re)written: in its group only, with its address and vars."""
    children: dict[str, Any] = {}
    for group, body in existing["all"]["children"].items():
        hosts = {name: hv for name, hv in (body or {}).get("hosts", {}).items() if name != placement.name}
        if hosts:
            children[group] = {"hosts": hosts}
    group, entry = _groups_entry(placement)
    children.setdefault(group, {"hosts": {}})["hosts"].update(entry)
    return {"all": {"children": dict(sorted(children.items()))}}


def register_in_file(inventory: Path, placement: Placement) -> bool:
    """Write the host into the inventory directory's bootstrap.yml. True when the file changed."""
    path = bootstrap_file(inventory)
    wanted = render(load_entries(path), placement)
    text = HEADER + yaml.safe_dump(wanted, sort_keys=False, default_flow_style=False)
    if path.is_file() and path.read_text() == text:
        return False
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)
    return True


def ec2_tags(placement: Placement, tag_keys: dict[str, str] | None = None) -> dict[str, str]:
    """The tags that make the aws_fleet inventory place the instance as the placement says."""
    keys = {**DEFAULT_TAG_KEYS, **(tag_keys or {})}
    if placement.group is None:
        return {}
    service = "postgresql" if placement.group.startswith("postgresql_") else placement.group
    tags = {keys["service"]: service}
    if placement.group == "postgresql_primary":
        tags[keys["role"]] = "primary"
    elif placement.group == "postgresql_replica":
        tags[keys["role"]] = "replica"
    return tags


def register_on_ec2(
    instance_id: str, region: str, current: dict[str, str], wanted: dict[str, str], *, endpoint_url: str | None = None
) -> bool:
    """Tag the instance (only the tags that differ). True when a tag was written.

    Raises:
        UsageError: AWS refused (permissions, a vanished instance): the bootstrap stops before converging.
    """
    missing = {key: value for key, value in wanted.items() if current.get(key) != value}
    if not missing:
        return False
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url)
    try:
        client.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in sorted(missing.items())])
    except (ClientError, BotoCoreError) as exc:
        message = " ".join(str(exc).split())[:300]
        raise UsageError(f"cannot tag {instance_id} in {region}: {message}") from None
    return True
