"""One run at a time per inventory: a second converge or drift is refused, naming the holder.

flock() locks die with their process, so a crashed run never leaves a stale lock behind. A run may wait for the
lock a bounded time instead (``--lock-timeout``, like Terraform's): what an unattended remediation does when a
scheduled drift check holds it.
"""

import fcntl
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from toolkit.errors import LockHeldError
from toolkit.timestamps import utc_iso

_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class LockHolder:
    pid: int
    command: str
    started_at: str
    controller: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.controller} ({self.command}, started {self.started_at})"


class InventoryLock:
    """Exclusive lock for runs against one inventory: refused at once, or after waiting up to ``wait`` seconds."""

    def __init__(self, locks_dir: Path, inventory_key: str, command: str, wait: float = 0.0) -> None:
        digest = hashlib.sha256(inventory_key.encode()).hexdigest()[:16]
        self.path = locks_dir / f"inventory-{digest}.lock"
        self.inventory_key = inventory_key
        self.command = command
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Polling, not a blocking flock: a blocking call cannot be bounded, nor interrupted cleanly.
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    time.sleep(min(_POLL_SECONDS, remaining))
                    continue
                holder = _read_holder(fd)
                os.close(fd)
                who = holder.describe() if holder else "another process"
                waited = f" (waited {self.wait:.0f} s)" if self.wait else ""
                raise LockHeldError(
                    f"inventory {self.inventory_key} is locked by {who}{waited}",
                    hint="wait for that run to finish (or pass --lock-timeout); the lock is released when its process"
                    " exits",
                ) from None
        holder = LockHolder(
            pid=os.getpid(),
            command=self.command,
            started_at=utc_iso(),
            controller=socket.gethostname(),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder.__dict__).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "InventoryLock":
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> LockHolder | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
        return LockHolder(**data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None
