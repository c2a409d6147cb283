"""`toolkit env up --provider aws`: what playbooks/_env_aws.yml builds an environment from, and the run that does it.

The playbook holds the amazon.aws modules and their idempotence (the VPC found by its ``toolkit:environment``
tag, the rest inside it, each created only when missing); this module turns a spec into its one variable,
``env_aws``, with the names, tags and rules aws_model gives the plan, so what `plan` shows is what `up` builds.
"""

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Any

from toolkit.environments.aws_down import list_environments
from toolkit.environments.aws_model import (
    CREATED_TAG,
    ENV_TAG,
    EXPIRES_TAG,
    OWNER_TAG,
    PROTECTED_TAG,
    aws_settings,
    ingress_sources,
    instance_tags,
    key_pair_name,
    security_group_name,
    subnet_name,
)
from toolkit.environments.aws_state import Client
from toolkit.environments.spec import EnvironmentSpec
from toolkit.paths import StatePaths, project_root
from toolkit.runner.execute import PlaybookRun
from toolkit.runner.extravars import ExtraVars
from toolkit.runner.inventory import ResolvedInventory
from toolkit.sshkeys import ensure_key
from toolkit.timestamps import UTC_FORMAT

PLAYBOOK = "playbooks/_env_aws.yml"
# The controller alone: the play calls AWS's API from here and logs in nowhere.
CONTROLLER_INVENTORY = "inventories/controller.yml"


def created_at(client: Client, env: str, region: str, now: dt.datetime) -> dt.datetime:
    """When the environment was first brought up (its VPC's tag, as `list` reads it), or now for a new one: a
    second `up` keeps the creation time, so the expiry a TTL gives does not move."""
    for listed in list_environments(client, region):
        if listed.name == env and listed.created_at is not None:
            return listed.created_at
    return now.replace(microsecond=0)


def lifecycle_tags(spec: EnvironmentSpec, created: dt.datetime) -> dict[str, str]:
    """The VPC's tags that `list` and `reap` read: created-at, expires-at (absent: never) and protected."""
    tags = {CREATED_TAG: created.strftime(UTC_FORMAT), PROTECTED_TAG: str(spec.protected).lower()}
    expires = spec.expiry(created)
    if expires is not None:
        tags[EXPIRES_TAG] = expires.astimezone(dt.UTC).strftime(UTC_FORMAT)
    return tags


def module_rules(sources: set[tuple[int, str]]) -> list[dict[str, Any]]:
    """amazon.aws.ec2_security_group rules: one per source, with every port it may reach."""
    ports: dict[str, set[int]] = defaultdict(set)
    for port, source in sources:
        ports[source].add(port)
    rules = []
    for source in sorted(ports):
        rule: dict[str, Any] = {"proto": "tcp", "ports": sorted(ports[source])}
        if source.startswith("sg:"):
            rule["group_name"] = source[3:]
        else:
            rule["cidr_ip"] = source
        rules.append(rule)
    return rules


def up_variables(spec: EnvironmentSpec, public_key: str, created: dt.datetime) -> dict[str, Any]:
    """``env_aws`` for playbooks/_env_aws.yml.

    Raises:
        UsageError: the spec has no aws section.
    """
    aws = aws_settings(spec)
    env = spec.name
    services = sorted({host.service for host in spec.hosts})
    return {
        "region": aws.region,
        "tags": {ENV_TAG: env, OWNER_TAG: spec.owner},
        "image": {"owner": aws.image_owner, "name": aws.image_name},
        "vpc": {"name": f"{env}-vpc", "cidr": str(aws.vpc_cidr), "tags": lifecycle_tags(spec, created)},
        "internet_gateway": f"{env}-igw",
        "subnets": [{"name": subnet_name(env, zone), "zone": zone, "cidr": str(aws.subnets[zone])} for zone in aws.azs],
        "route_table": f"{env}-public",
        "nat_gateway": {"name": f"{env}-nat", "subnet": subnet_name(env, aws.azs[0])} if aws.nat_gateway else None,
        "security_groups": [
            {
                "name": security_group_name(env, service),
                "description": f"{env} {service}: peers, Prometheus, clients and admins",
                "rules": module_rules(ingress_sources(spec, aws, service)),
            }
            for service in services
        ],
        "key_pair": {"name": key_pair_name(env), "public_key": public_key},
        "instances": [
            {
                "name": host.name,
                "instance_type": host.instance_type,
                "subnet": subnet_name(env, host.az or aws.azs[0]),
                "security_group": security_group_name(env, host.service),
                "tags": instance_tags(spec, host),
            }
            for host in spec.hosts
        ],
    }


def environment_key(state: StatePaths, env: str) -> Path:
    """The environment's SSH key (made on first use): its public half becomes the EC2 key pair, so the hosts'
    first login (Debian's ``admin``) is with it."""
    return ensure_key(state.home / "environments" / env / "id_ed25519", f"toolkit-env-{env}")


def up_run(spec: EnvironmentSpec, variables: dict[str, Any], verbosity: int = 0) -> PlaybookRun:
    """The run of playbooks/_env_aws.yml: recorded in the history as ``env-up NAME``, locked per environment."""
    inventory = ResolvedInventory(
        source=project_root() / CONTROLLER_INVENTORY, hosts=("localhost",), limit=None, lock=f"env-{spec.name}"
    )
    return PlaybookRun(
        kind="env-up",
        target=spec.name,
        playbook=project_root() / PLAYBOOK,
        inventory=inventory,
        extra_vars=ExtraVars(inline={"env_aws": variables}),
        verbosity=verbosity,
    )
