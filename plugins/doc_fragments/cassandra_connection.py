"""The connection options every CQL module of the cassandra role takes (roles/cassandra/library/)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description: Node to connect to (the modules talk to this node only).
    type: str
    default: 127.0.0.1
  login_port:
    description: Its native transport port.
    type: int
    default: 9042
  login_user:
    description: A superuser.
    type: str
    required: true
  login_password:
    description: Its password.
    type: str
    required: true
  fallback_login_user:
    description: Tried when login_user is refused (a new cluster's default superuser).
    type: str
  fallback_login_password:
    description: Its password.
    type: str
  connect_timeout:
    description: Seconds to wait for the node.
    type: int
    default: 15
"""
