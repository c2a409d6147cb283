#!/usr/bin/python
"""Ansible module: a keyspace with NetworkTopologyStrategy replication, created, altered or dropped."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cassandra_keyspace
short_description: Manage a Cassandra keyspace replicated per datacenter
description:
  - Creates, alters (replication, durable_writes) or drops a keyspace with NetworkTopologyStrategy.
  - Connects to one node only (login_host); runs on a Cassandra node with python3-cassandra.
  - Reports C(replication_raised) when a datacenter's replication factor went up, so the caller can repair.
options:
  name:
    description: Keyspace name (system_auth and the other replicated system keyspaces too).
    type: str
    required: true
  replication: {description: "Datacenter name to replication factor, e.g. {dc1: 3}.", type: dict, default: {}}
  durable_writes: {description: Write through the commit log., type: bool, default: true}
  state: {description: present or absent., type: str, choices: [present, absent], default: present}
extends_documentation_fragment: [cassandra_connection]
supports_check_mode: true
"""

EXAMPLES = r"""
- name: Replicate the ledger three times in each datacenter.
  cassandra_keyspace:
    name: ledger
    replication: {eu_west_1: 3, us_east_1: 3}
    login_user: toolkit_admin
    login_password: "{{ vault_cassandra_password }}"
"""

RETURN = r"""
replication_raised:
  description: Datacenters whose replication factor went up (repair them).
  type: list
  returned: always
login_used: {description: The user the module logged in as., type: str, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (Ansible's layout: docs first)
from ansible.module_utils.cassandra_cql import CONNECTION_ARGS, CqlSession, quote_identifier  # noqa: E402

NTS = "org.apache.cassandra.locator.NetworkTopologyStrategy"


def _cql_map(replication: dict[str, int]) -> str:
    entries = ["'class': 'NetworkTopologyStrategy'"]
    entries += ["'{}': {}".format(dc.replace("'", "''"), int(rf)) for dc, rf in sorted(replication.items())]
    return "{" + ", ".join(entries) + "}"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "replication": {"type": "dict", "default": {}},
            "durable_writes": {"type": "bool", "default": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            **CONNECTION_ARGS,
        },
        supports_check_mode=True,
    )
    name, state = module.params["name"], module.params["state"]
    wanted = {dc: int(rf) for dc, rf in module.params["replication"].items()}
    if state == "present" and (not wanted or any(rf < 1 for rf in wanted.values())):
        module.fail_json(msg=f"keyspace {name}: replication must map datacenters to factors of 1 or more")
    cql = CqlSession(module)
    try:
        rows = cql.execute(
            "SELECT replication, durable_writes FROM system_schema.keyspaces WHERE keyspace_name = %s", (name,)
        )
        current = rows[0] if rows else None
        result = {"changed": False, "replication_raised": [], "login_used": cql.login_used}
        target = quote_identifier(name)
        if state == "absent":
            if current is not None:
                result["changed"] = True
                result["diff"] = {"before": f"keyspace {name}\n", "after": ""}
                if not module.check_mode:
                    cql.execute(f"DROP KEYSPACE {target}")
            module.exit_json(**result)
        before = {}
        if current is not None:
            strategy = current.replication.get("class", "")
            before = {k: int(v) for k, v in current.replication.items() if k != "class" and v.isdigit()}
            if strategy == NTS and before == wanted and current.durable_writes == module.params["durable_writes"]:
                module.exit_json(**result)
        verb = "ALTER" if current is not None else "CREATE"
        statement = "{} KEYSPACE {} WITH replication = {} AND durable_writes = {}".format(
            verb, target, _cql_map(wanted), str(module.params["durable_writes"]).lower()
        )
        result["changed"] = True
        result["statement"] = statement
        result["replication_raised"] = sorted(dc for dc, rf in wanted.items() if current and rf > before.get(dc, 0))
        result["diff"] = {
            "before": "".join(f"{dc}: {rf}\n" for dc, rf in sorted(before.items())),
            "after": "".join(f"{dc}: {rf}\n" for dc, rf in sorted(wanted.items())),
        }
        if not module.check_mode:
            cql.execute(statement)
        module.exit_json(**result)
    finally:
        cql.close()


if __name__ == "__main__":
    main()
