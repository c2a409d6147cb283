"""Durations given on the command line: ``30s``, ``10m``, ``24h``, ``7d``, ``2w``."""

import datetime as dt
import re

from toolkit.errors import UsageError

_DURATION = re.compile(r"^([0-9]+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, option: str, *, allow_zero: bool = False) -> dt.timedelta:
    """A count and one unit (s, m, h, d, w). Raises UsageError naming ``option``."""
    match = _DURATION.match(text.strip())
    if not match or (int(match[1]) == 0 and not allow_zero):
        kind = "a duration" if allow_zero else "a positive duration"
        raise UsageError(f"{option} {text!r} is not {kind} like 30s, 10m, 24h, 7d or 2w")
    return dt.timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
