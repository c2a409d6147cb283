"""The controller's own SSH keys (the lab's, each environment's): made once, without a passphrase, never replaced."""

import subprocess
from pathlib import Path

from toolkit.errors import ToolkitError


def ensure_key(path: Path, comment: str) -> Path:
    """An ed25519 key pair at ``path`` (and ``path.pub``), made with ssh-keygen when missing.

    Raises:
        ToolkitError: ssh-keygen failed (its message is in ours).
    """
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if made.returncode != 0:
        raise ToolkitError(f"ssh-keygen could not make {path}: {made.stderr.strip()}")
    return path
