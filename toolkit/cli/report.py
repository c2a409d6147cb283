"""``toolkit report``: deployments per day, change failure rate and time to restore, from the run history."""

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import JsonOption
from toolkit.delivery.figures import delivery_figures
from toolkit.drift.store import DriftStore
from toolkit.durations import parse_duration
from toolkit.metrics import delivery as delivery_metrics
from toolkit.paths import state_paths
from toolkit.runner.history import History
from toolkit.timestamps import utc_iso


def report(
    since: Annotated[str, typer.Option("--since", help="The window, back from now: 30m, 24h, 7d, 2w.")] = "7d",
    json_output: JsonOption = False,
    textfile_dir: Annotated[
        Path | None,
        typer.Option(
            "--textfile-dir",
            envvar="TOOLKIT_TEXTFILE_DIR",
            help="Where to write the figures as metrics (node_exporter's textfile directory). Default: state dir.",
        ),
    ] = None,
) -> None:
    """Delivery figures over the window: deployments, change failure rate, time to restore (docs/slo.md)."""
    span = parse_duration(since, "--since")
    state = state_paths()
    until = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = until - span
    start_iso = utc_iso(start.timestamp())
    figures = delivery_figures(
        History(state.history_db).started_since(start_iso),
        DriftStore(state.history_db).open_or_resolved_since(start_iso),
        since=start,
        until=until,
    )
    delivery_metrics.write(textfile_dir or state.home / "metrics", figures, since.strip())
    if json_output:
        console.emit_json(figures.to_dict())
    else:
        console.print_delivery_report(figures)
