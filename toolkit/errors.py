"""Errors that reach the user as one line (plus an optional hint) and an exit code.

Library code raises these; only the CLI boundary prints them and exits (no logging here,
so an error is reported exactly once, where it is handled).
"""

from toolkit.exit_codes import ExitCode


class ToolkitError(Exception):
    """A problem the user can act on. Carries its own exit code and an optional hint."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(ToolkitError):
    """Bad input: unknown service, malformed -e, missing inventory. Nothing has run."""

    exit_code = ExitCode.USAGE


class LockHeldError(ToolkitError):
    """Another converge or drift run holds the inventory's lock."""

    exit_code = ExitCode.LOCK_HELD


class LabError(ToolkitError):
    """The lab cannot do what was asked (podman missing, lab not up, image not built)."""

    exit_code = ExitCode.USAGE
