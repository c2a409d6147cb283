#!/usr/bin/python
"""Ansible module: a Cassandra role (user) with its password, login and superuser flags."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cassandra_role
short_description: Manage a Cassandra role
description:
  - Creates, alters or drops a role of CassandraRoleManager. The password is compared with the stored
    bcrypt hash (python3-bcrypt), so an unchanged password is no change and is never sent again.
  - With fallback_login_user, a new cluster is reached through its default superuser to create the managed one.
options:
  name: {description: Role name., type: str, required: true}
  password: {description: Its password (no_log); omitted keeps the current one., type: str}
  login: {description: May log in., type: bool, default: true}
  superuser: {description: Is a superuser., type: bool, default: false}
  state: {description: present or absent., type: str, choices: [present, absent], default: present}
extends_documentation_fragment: [cassandra_connection]
supports_check_mode: true
"""

EXAMPLES = r"""
- name: Replace the default superuser with a managed one.
  cassandra_role:
    name: toolkit_admin
    password: "{{ vault_cassandra_password }}"
    superuser: true
    login_user: toolkit_admin
    login_password: "{{ vault_cassandra_password }}"
    fallback_login_user: cassandra
    fallback_login_password: cassandra
"""

RETURN = r"""
login_used: {description: The user the module logged in as., type: str, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (Ansible's layout: docs first)
from ansible.module_utils.cassandra_cql import CONNECTION_ARGS, CqlSession, quote_identifier  # noqa: E402

try:
    import bcrypt

    HAS_BCRYPT = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_BCRYPT = False


def _password_matches(password: str, salted_hash: str | None) -> bool:
    if not salted_hash:
        return False
    try:
        return bool(bcrypt.checkpw(password.encode(), salted_hash.encode()))
    except ValueError:
        return False


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "password": {"type": "str", "no_log": True},
            "login": {"type": "bool", "default": True},
            "superuser": {"type": "bool", "default": False},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            **CONNECTION_ARGS,
        },
        supports_check_mode=True,
    )
    if module.params["password"] is not None and not HAS_BCRYPT:
        module.fail_json(msg="python3-bcrypt is required on the node to compare passwords")
    name, state = module.params["name"], module.params["state"]
    cql = CqlSession(module)
    try:
        rows = cql.execute(
            "SELECT can_login, is_superuser, salted_hash FROM system_auth.roles WHERE role = %s", (name,)
        )
        current = rows[0] if rows else None
        result = {"changed": False, "login_used": cql.login_used}
        target = quote_identifier(name)
        statements: list[tuple[str, tuple[str, ...]]] = []
        if state == "absent":
            if current is not None:
                statements.append((f"DROP ROLE {target}", ()))
        else:
            options = [
                f"LOGIN = {str(module.params['login']).lower()}",
                f"SUPERUSER = {str(module.params['superuser']).lower()}",
            ]
            password = module.params["password"]
            if current is None:
                if password is not None:
                    options.append("PASSWORD = %s")
                statements.append(
                    (f"CREATE ROLE {target} WITH " + " AND ".join(options), (password,) if password is not None else ())
                )
            else:
                changes = []
                if current.can_login != module.params["login"]:
                    changes.append(options[0])
                if current.is_superuser != module.params["superuser"]:
                    changes.append(options[1])
                parameters: tuple[str, ...] = ()
                if password is not None and not _password_matches(password, current.salted_hash):
                    changes.append("PASSWORD = %s")
                    parameters = (password,)
                if changes:
                    statements.append((f"ALTER ROLE {target} WITH " + " AND ".join(changes), parameters))
        result["changed"] = bool(statements)
        # The statements carry no password text: parameters are bound, and the diff names the flags only.
        result["statements"] = [statement for statement, _ in statements]
        if not module.check_mode:
            for statement, parameters in statements:
                cql.execute(statement, parameters or None)
        module.exit_json(**result)
    finally:
        cql.close()


if __name__ == "__main__":
    main()
