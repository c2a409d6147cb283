"""The one timestamp format toolkit records and compares as text (history, locks, drift, lab state): UTC, to the
second, ``2026-12-05T09:30:00Z``. Sorting these strings sorts the times."""

import time

UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_iso(timestamp: float | None = None) -> str:
    """``timestamp`` (seconds since the epoch; now when None) in UTC_FORMAT."""
    return time.strftime(UTC_FORMAT, time.gmtime(timestamp))
