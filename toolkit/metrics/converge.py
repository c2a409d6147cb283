"""When each service last converged successfully on each host, for the ToolkitConvergeStale alert.

One file (``toolkit_converge.prom``) for every converge: a run updates the hosts and services it
converged and keeps the others' samples, so a ``--limit`` run does not make the rest of the fleet look
stale. Check-mode runs change nothing and write nothing.
"""

from pathlib import Path

from toolkit.metrics.textfile import labels, number, read_samples, write_atomically
from toolkit.runner.result import RunResult

FILE_NAME = "toolkit_converge.prom"
LAST_SUCCESS = "toolkit_converge_last_success_timestamp_seconds"
_HELP = {
    LAST_SUCCESS: "When the service last converged successfully on the host (Unix time).",
    "toolkit_converge_last_run_timestamp_seconds": "When the last converge of the target finished (Unix time).",
    "toolkit_converge_last_run_exit_code": "The last converge's exit code (0 success).",
}


def write(directory: Path, result: RunResult, coverage: set[tuple[str, str]], finished_at: float) -> Path | None:
    if result.check:
        return None
    path = directory / FILE_NAME
    samples = read_samples(path)
    good = {
        host for host, summary in result.hosts.items() if not summary.stats.failed and not summary.stats.unreachable
    }
    for host, service in sorted(coverage):
        if host in good:
            samples[LAST_SUCCESS + labels(host=host, service=service)] = number(finished_at)
    samples["toolkit_converge_last_run_timestamp_seconds" + labels(target=result.target)] = number(finished_at)
    samples["toolkit_converge_last_run_exit_code" + labels(target=result.target)] = str(int(result.exit_code))
    lines: list[str] = []
    for name, help_text in _HELP.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{key} {value}" for key, value in sorted(samples.items()) if key.split("{")[0] == name]
    return write_atomically(path, "\n".join(lines) + "\n")
