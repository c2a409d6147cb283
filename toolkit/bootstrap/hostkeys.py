"""Trust on first use for host keys, with OpenSSH's ``accept-new`` semantics and a one-line refusal.

A host the project's known_hosts has never seen: its keys (from ``ssh-keyscan``) are learned. A host it
knows: at least one presented key must be a known key of the same type, else the bootstrap stops before
any login, naming the host and both fingerprints. Every later connection (Ansible's) then runs with
``StrictHostKeyChecking=yes`` against the same file.

known_hosts lines are read as OpenSSH writes them: plain or hashed (``|1|salt|hmac``) host fields, the
``[host]:port`` form for ports other than 22, comma-separated names; ``@revoked`` / ``@cert-authority``
lines are never matched as plain keys.
"""

import base64
import hashlib
import hmac
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.exit_codes import ExitCode

SCAN_TYPES = "ed25519,ecdsa,rsa"


class HostKeyError(ToolkitError):
    """A host presents keys that do not match what the project's known_hosts recorded for it."""

    exit_code = ExitCode.TASK_FAILED


@dataclass(frozen=True)
class HostKey:
    keytype: str  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa
    blob: str  # base64, as in known_hosts

    @property
    def fingerprint(self) -> str:
        """SHA256:..., as ``ssh-keygen -l`` prints it."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def describe(self) -> str:
        return f"{self.keytype} {self.fingerprint}"


def host_field(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _matches(field: str, name: str) -> bool:
    for candidate in field.split(","):
        if candidate.startswith("|1|"):
            try:
                _, _, salt, digest = candidate.split("|", 3)
                mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            except (ValueError, TypeError):
                continue
            if hmac.compare_digest(base64.b64encode(mac).decode(), digest):
                return True
        elif candidate == name:
            return True
    return False


def known_keys(known_hosts: Path, host: str, port: int = 22) -> list[HostKey]:
    """The keys known_hosts records for host:port (plain or hashed entries)."""
    if not known_hosts.is_file():
        return []
    name = host_field(host, port)
    keys: list[HostKey] = []
    for line in known_hosts.read_text().splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0].startswith(("#", "@")):
            continue
        if _matches(parts[0], name):
            keys.append(HostKey(parts[1], parts[2]))
    return keys


def parse_scan(output: str) -> list[HostKey]:
    """``ssh-keyscan`` output lines (``host keytype blob``) as keys; comments and noise skipped."""
    keys = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not parts[0].startswith("#"):
            keys.append(HostKey(parts[1], parts[2]))
    return keys


def scan(host: str, port: int = 22, timeout: int = 10) -> list[HostKey]:
    """The keys the host presents now (ed25519, ecdsa, rsa)."""
    result = subprocess.run(
        ["ssh-keyscan", "-T", str(timeout), "-p", str(port), "-t", SCAN_TYPES, host],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout * 3 + 5,
    )
    keys = parse_scan(result.stdout)
    if not keys:
        raise HostKeyError(
            f"{host}:{port} presented no SSH host key",
            hint="is sshd running there, and is this the right address?",
        )
    return keys


@dataclass(frozen=True)
class Trust:
    learned: bool  # True: the keys were new and are now in known_hosts
    keys: list[HostKey]


def trust_on_first_use(known_hosts: Path, host: str, port: int, presented: list[HostKey]) -> Trust:
    """Learn a new host's keys, accept a known host whose key still matches, refuse anything else.

    Raises:
        HostKeyError: the host is known and none of its presented keys is a known key of that type.
    """
    known = known_keys(known_hosts, host, port)
    if not known:
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{host_field(host, port)} {key.keytype} {key.blob}\n" for key in presented)
        fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(lines)
        return Trust(learned=True, keys=presented)
    if any(key in known for key in presented):
        return Trust(learned=False, keys=presented)
    same_type = [key for key in presented if key.keytype in {k.keytype for k in known}] or presented
    raise HostKeyError(
        f"host key of {host_field(host, port)} changed: known {', '.join(k.describe() for k in known)};"
        f" presented {', '.join(k.describe() for k in same_type)}",
        hint=f"if the host was rebuilt, check the new key out of band, then: ssh-keygen -R {host_field(host, port)}"
        f" -f {known_hosts}",
    )
