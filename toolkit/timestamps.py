"""The one timestamp format toolkit records and compares as text (history, locks, drift, lab state): UTC, to the
second, ``2026-12-05T09:30:00Z``. Sorting these strings sorts the times."""

import datetime as dt
import time

UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_iso(timestamp: float | None = None) -> str:
    """``timestamp`` (seconds since the epoch; now when None) in UTC_FORMAT."""
    return time.strftime(UTC_FORMAT, time.gmtime(timestamp))


def parse_utc(text: str) -> dt.datetime | None:
    """An ISO 8601 time (``Z`` or an offset; none means UTC) as an aware datetime; None when empty or malformed."""
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
