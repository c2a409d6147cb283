"""Writing node_exporter textfile-collector files: exposition-format helpers and the atomic write.

node_exporter reads every ``*.prom`` file of its directory on each scrape; a file is replaced by
renaming a complete temporary file over it (same directory, so the rename is atomic) and is never
seen half-written.
"""

import os
import re
import tempfile
from pathlib import Path

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{.*\})?\s+(?P<value>\S+)$")


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(**pairs: str) -> str:
    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in pairs.items()) + "}"


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def file_name(prefix: str, target: str) -> str:
    return f"{prefix}{re.sub(r'[^A-Za-z0-9_]', '_', target)}.prom"


def read_samples(path: Path) -> dict[str, str]:
    """The samples of an existing file (``name{labels}`` -> value); {} when it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    samples: dict[str, str] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match and not line.startswith("#"):
            samples[match["name"] + (match["labels"] or "")] = match["value"]
    return samples


def write_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        # node_exporter runs as its own user: the file must be readable by it.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
