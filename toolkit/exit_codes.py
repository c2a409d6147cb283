"""The documented exit codes of every toolkit command (README, "Exit codes")."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    TASK_FAILED = 1
    USAGE = 2
    DRIFT = 3
    UNREACHABLE = 4
    LOCK_HELD = 5
    BUDGET_GATE = 6
    INTERRUPTED = 130
