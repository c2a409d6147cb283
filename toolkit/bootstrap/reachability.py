"""Waiting for a new host's sshd: bounded, and clear about why it gave up.

A port that accepts connections is not enough (a load balancer, a half-booted host): the wait ends when
the peer sends an SSH identification line (``SSH-2.0-...``), which sshd does before anything else.
"""

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from toolkit.errors import ToolkitError
from toolkit.exit_codes import ExitCode


class UnreachableError(ToolkitError):
    exit_code = ExitCode.UNREACHABLE


@dataclass(frozen=True)
class SshReady:
    banner: str  # the server's identification line, e.g. SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3
    waited: float  # seconds until it answered


def _banner(host: str, port: int, timeout: float) -> str:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        data = b""
        # RFC 4253: the server may send other lines before its identification line.
        while len(data) < 8192:
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
            for line in data.split(b"\n"):
                if line.startswith(b"SSH-"):
                    return line.decode(errors="replace").strip()
    raise ConnectionError("the port answered, but not with an SSH identification line")


def wait_for_ssh(
    host: str,
    port: int = 22,
    *,
    timeout: float = 120,
    attempt_timeout: float = 5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SshReady:
    """Wait until host:port speaks SSH, at most ``timeout`` seconds.

    Raises:
        UnreachableError: it did not within the timeout; the message says what the last attempt saw.
    """
    started = clock()
    delay = 0.5
    last = "no attempt"
    while True:
        try:
            return SshReady(_banner(host, port, attempt_timeout), clock() - started)
        except TimeoutError:
            last = "no answer (timed out)"
        except ConnectionRefusedError:
            last = "connection refused"
        except OSError as exc:  # no route, name not known, reset, not SSH
            last = exc.strerror or str(exc) or type(exc).__name__
        remaining = timeout - (clock() - started)
        if remaining <= 0:
            raise UnreachableError(
                f"{host}:{port} did not answer SSH within {timeout:g}s (last attempt: {last})",
                hint="is the host up, sshd running, and the port open to this controller?",
            )
        sleep(min(delay, remaining))
        delay = min(delay * 2, 5.0)
