"""What the role's CQL modules share: their connection options and one authenticated session.

The modules run on a Cassandra node with Debian's python3-cassandra (the DataStax driver) and talk to that
node only, so they never depend on which peers a firewall lets the node reach.
"""

from __future__ import annotations

import traceback
from typing import Any

try:
    from cassandra import AuthenticationFailed
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import NoHostAvailable

    HAS_DRIVER = True
    DRIVER_IMPORT_ERROR = ""
except ImportError:  # pragma: no cover - reported by the module
    HAS_DRIVER = False
    DRIVER_IMPORT_ERROR = traceback.format_exc()

CONNECTION_ARGS: dict[str, Any] = {
    "login_host": {"type": "str", "default": "127.0.0.1"},
    "login_port": {"type": "int", "default": 9042},
    "login_user": {"type": "str", "required": True},
    "login_password": {"type": "str", "required": True, "no_log": True},
    # The default superuser, tried only when login_user is refused: how a new cluster is first reached.
    "fallback_login_user": {"type": "str"},
    "fallback_login_password": {"type": "str", "no_log": True},
    "connect_timeout": {"type": "int", "default": 15},
}


class CqlSession:
    """A session on one node, as login_user or (when refused, and given) the fallback user."""

    def __init__(self, module: Any) -> None:
        if not HAS_DRIVER:
            module.fail_json(msg="python3-cassandra is required on the node", exception=DRIVER_IMPORT_ERROR)
        self.module = module
        self.cluster: Any = None
        self.session: Any = None
        self.login_used = ""
        params = module.params
        attempts = [(params["login_user"], params["login_password"])]
        if params.get("fallback_login_user"):
            attempts.append((params["fallback_login_user"], params.get("fallback_login_password") or ""))
        errors = []
        for user, password in attempts:
            try:
                self._connect(user, password)
                self.login_used = user
                return
            except NoHostAvailable as exc:
                if not _is_auth_failure(exc):
                    module.fail_json(msg=f"cannot reach CQL at {params['login_host']}:{params['login_port']}: {exc}")
                errors.append(f"{user}: authentication failed")
        module.fail_json(msg="no login accepted at {}: {}".format(params["login_host"], "; ".join(errors)))

    def _connect(self, user: str, password: str) -> None:
        from cassandra.cluster import Cluster
        from cassandra.policies import WhiteListRoundRobinPolicy

        params = self.module.params
        cluster = Cluster(
            [params["login_host"]],
            port=params["login_port"],
            auth_provider=PlainTextAuthProvider(username=user, password=password),
            load_balancing_policy=WhiteListRoundRobinPolicy([params["login_host"]]),
            connect_timeout=params["connect_timeout"],
            control_connection_timeout=params["connect_timeout"],
            max_schema_agreement_wait=60,
        )
        try:
            self.session = cluster.connect()
        except Exception:
            cluster.shutdown()
            raise
        self.cluster = cluster

    def execute(self, statement: str, parameters: Any = None) -> list[Any]:
        return list(self.session.execute(statement, parameters, timeout=60))

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.shutdown()


def _is_auth_failure(exc: Exception) -> bool:
    errors = getattr(exc, "errors", {}) or {}
    return any(isinstance(e, AuthenticationFailed) or "Bad credentials" in str(e) for e in errors.values())


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
