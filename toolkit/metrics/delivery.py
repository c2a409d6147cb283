"""Delivery figures (toolkit report) as node_exporter textfile metrics, one file rewritten by each report.

A drift or report schedule keeps them fresh; the window is a label, so reports over different spans (a 1d
and a 7d job) write separate series to separate files.
"""

from pathlib import Path

from toolkit.delivery.figures import DeliveryFigures, Restores
from toolkit.metrics.textfile import file_name, labels, number, write_atomically

_HELP = {
    "toolkit_delivery_deployments": "Converges that were not check mode or drift remediation, over the window.",
    "toolkit_delivery_deployments_per_day": "Deployments per day over the window.",
    "toolkit_delivery_change_failure_ratio": "Failed deployments (a task failed or a host unreachable) / deployments.",
    "toolkit_delivery_remediations": "Drift remediations (toolkit drift --remediate converges) over the window.",
    "toolkit_delivery_time_to_restore_seconds": "Time from failure (failed deployment, drift) to clean, by stat.",
    "toolkit_delivery_unrestored": "Failed deployments not yet followed by a success, resources still drifting.",
}


def _restore_lines(source: str, window: str, restores: Restores) -> list[str]:
    name = "toolkit_delivery_time_to_restore_seconds"
    lines = [f"toolkit_delivery_unrestored{labels(window=window, source=source)} {restores.still_open}"]
    if restores.durations:
        summary = restores.to_dict()
        for stat in ("median", "max"):
            value = summary[f"{stat}_seconds"]
            lines.append(f"{name}{labels(window=window, source=source, stat=stat)} {number(value)}")
    return lines


def write(directory: Path, figures: DeliveryFigures, window: str) -> Path:
    samples = [
        f"toolkit_delivery_deployments{labels(window=window)} {figures.deployments}",
        f"toolkit_delivery_deployments_per_day{labels(window=window)} {number(figures.deployments_per_day)}",
        f"toolkit_delivery_remediations{labels(window=window)} {figures.remediations}",
    ]
    rate = figures.change_failure_rate
    if rate is not None:
        samples.append(f"toolkit_delivery_change_failure_ratio{labels(window=window)} {number(rate)}")
    samples += _restore_lines("failed_change", window, figures.failed_change_restores)
    samples += _restore_lines("drift", window, figures.drift_restores)
    lines: list[str] = []
    for name, help_text in _HELP.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [sample for sample in samples if sample.split("{")[0] == name]
    return write_atomically(directory / file_name("toolkit_delivery_", window), "\n".join(lines) + "\n")
