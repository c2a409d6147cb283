"""Ansible's ``--diff`` results as bounded, redacted unified-diff text.

Modules return diffs in several shapes: ``{before, after, before_header, after_header}`` with text
or with dicts (the file module's ``{"mode": "0644"}``), ``{"prepared": "..."}`` (apt, user), or a
list of those. Drift reports and history keep the text, so it is bounded and a line that assigns a
secret-named key (``replication_password = ...``, ``api_token: ...``) has its value masked even when
a role forgot ``no_log``.
"""

import difflib
import re
from typing import Any

MAX_DIFF_CHARS = 8000
MASK = "********"
# A key that names a secret: it ends in password, secret, token or (api/private/secret) key.
# `password_encryption` or `PasswordAuthentication yes` are settings, not secrets, and stay readable.
_SECRET_ASSIGNMENT = re.compile(
    r"""^(?P<lead>[+\- ]?\s*["']?[\w.-]*?(?:password|passwd|secret|token|api_?key|private_?key|secret_?key)["']?"""
    r"""\s*[:=]\s*)(?P<value>\S.*)$""",
    re.IGNORECASE,
)


def render_diff(raw: Any) -> str:
    """Unified text for one result's ``diff`` value ('' when the module returned none)."""
    parts = raw if isinstance(raw, list) else [raw]
    rendered = [text for part in parts if isinstance(part, dict) and (text := _render_one(part))]
    return _bound("\n".join(rendered))


def mask_secret_assignments(text: str) -> str:
    return "\n".join(_SECRET_ASSIGNMENT.sub(rf"\g<lead>{MASK}", line) for line in text.splitlines())


def _render_one(part: dict[str, Any]) -> str:
    prepared = part.get("prepared")
    if isinstance(prepared, str) and prepared.strip():
        return mask_secret_assignments(prepared.strip("\n"))
    if "before" not in part and "after" not in part:
        return ""
    before, after = part.get("before", ""), part.get("after", "")
    if isinstance(before, dict) or isinstance(after, dict):
        before, after = _as_lines(before), _as_lines(after)
    lines = difflib.unified_diff(
        str(before).splitlines(),
        str(after).splitlines(),
        fromfile=str(part.get("before_header") or "before"),
        tofile=_after_header(part),
        lineterm="",
        n=2,
    )
    return mask_secret_assignments("\n".join(lines))


def _after_header(part: dict[str, Any]) -> str:
    header = str(part.get("after_header") or "after")
    # A template's "after" is rendered into a temporary file on the controller: its path means nothing.
    return "from the code" if "/.ansible/tmp/" in header or header == "dynamically generated" else header


def _as_lines(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value or "")
    return "\n".join(f"{key}: {value[key]}" for key in sorted(value))


def _bound(text: str) -> str:
    if len(text) <= MAX_DIFF_CHARS:
        return text
    return text[:MAX_DIFF_CHARS] + f"\n… ({len(text) - MAX_DIFF_CHARS} more characters in the run's artifacts)"
