"""Intervals and the calendar both backends share: ``--every`` parsed and spelled, and its wall-clock slots."""

import re
import zlib
from dataclasses import dataclass

from toolkit.errors import UsageError

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
DAILY_HOUR = 3  # a daily run starts at 03:MM, MM from the service's name (calendar_for)

_UNITS = {"s": 1, "m": MINUTE, "min": MINUTE, "h": HOUR, "d": DAY}
_EVERY = re.compile(r"(?P<count>\d+)\s*(?P<unit>s|m|min|h|d)", re.IGNORECASE)
_ALLOWED = (
    "minutes dividing an hour (1m 2m 3m 4m 5m 6m 10m 12m 15m 20m 30m), hours dividing a day (1h 2h 3h 4h 6h 8h 12h), 1d"
)


def parse_every(text: str) -> int:
    """``15m``, ``1h``, ``2h``, ``1d`` (also ``s`` and ``min``) as seconds; at least one minute, whole minutes."""
    match = _EVERY.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"--every {text!r} is not an interval", hint="a number and a unit: 15m, 1h, 2h, 1d (s, m, h, d)"
        )
    seconds = int(match["count"]) * _UNITS[match["unit"].lower()]
    if seconds < MINUTE:
        raise UsageError(f"--every {text.strip()} is too short: the minimum is 1m")
    if seconds % MINUTE:
        raise UsageError(f"--every {text.strip()} is not a whole number of minutes (cron and timers count minutes)")
    return seconds


def format_every(seconds: int) -> str:
    """The shortest exact spelling: 900 -> 15m, 7200 -> 2h, 86400 -> 1d, 5400 -> 90m."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Calendar:
    """When a service's drift runs, in both backends' syntax."""

    cron: str  # the five time fields of a crontab line
    systemd: str  # an OnCalendar= expression
    text: str  # for people: "every 15 minutes", "every 2 hours at minute 17", "daily at 03:17"


def calendar_for(every: int, service: str) -> Calendar:
    """The fixed wall-clock slots of an interval; hourly and daily runs start at a minute taken from the name.

    crc32, not hash(): the minute must be the same in every process, or a second install would rewrite
    the schedule. Different services then rarely start together (they would contend for the inventory lock).
    """
    minute = zlib.crc32(service.encode()) % 60
    if every < HOUR and every % MINUTE == 0 and HOUR % every == 0:
        step = every // MINUTE
        text = "every minute" if step == 1 else f"every {step} minutes"
        return Calendar(f"*/{step} * * * *", f"*-*-* *:00/{step}:00", text)
    if every < DAY and every % HOUR == 0 and DAY % every == 0:
        step = every // HOUR
        text = f"every {'hour' if step == 1 else f'{step} hours'} at minute {minute}"
        return Calendar(f"{minute} */{step} * * *", f"*-*-* 00/{step}:{minute:02d}:00", text)
    if every == DAY:
        return Calendar(
            f"{minute} {DAILY_HOUR} * * *",
            f"*-*-* {DAILY_HOUR:02d}:{minute:02d}:00",
            f"daily at {DAILY_HOUR:02d}:{minute:02d}",
        )
    raise UsageError(f"--every {format_every(every)} cannot be scheduled; allowed: {_ALLOWED}")
