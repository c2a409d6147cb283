"""`toolkit report`: delivery figures from a run history and a drift history written as toolkit writes them,
the metrics file promtool accepts, and a bad --since refused in one line."""

import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import CliOutcome, Project
from toolkit.delivery.figures import DeliveryFigures, delivery_figures
from toolkit.drift.store import DriftRecord, DriftStore, open_database
from toolkit.runner.history import History

Cli = Callable[..., CliOutcome]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
INVENTORY = "/srv/inventories/prod"


def iso(minutes_ago: float) -> str:
    return (NOW - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(
    history: History,
    run_id: str,
    minutes_ago: float,
    *,
    target: str = "postgresql",
    kind: str = "converge",
    exit_code: int = 0,
    changed: int = 0,
    check: bool = False,
    note: str | None = None,
    inventory: str = INVENTORY,
) -> None:
    """A run as run_playbook records one: started, then finished a minute later."""
    history.record_start(
        run_id=run_id,
        kind=kind,
        target=target,
        inventory=inventory,
        limit=None,
        check=check,
        started_at=iso(minutes_ago),
        artifacts=None,
        note=note,
    )
    history.finish(
        run_id,
        finished_at=iso(minutes_ago - 1),
        duration=60.0,
        status="successful" if exit_code == 0 else "failed",
        exit_code=exit_code,
        counts=(2, 10, changed, int(exit_code == 1), int(exit_code == 4)),
        detail={},
    )


def drifted(store_path: Path, first_seen: float, resolved: float | None, resolution: str | None) -> None:
    DriftStore(store_path).history()  # creates the table as toolkit does
    with open_database(store_path) as db, db:
        db.execute(
            "INSERT INTO drift_resources (inventory, host, service, task, action, first_seen, first_run, last_seen,"
            " last_run, resolved_at, resolved_run, resolution) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                INVENTORY,
                "db-1",
                "postgresql",
                "postgresql : Write postgresql.conf",
                "ansible.builtin.template",
                iso(first_seen),
                "r0",
                iso(first_seen),
                "r0",
                None if resolved is None else iso(resolved),
                None if resolved is None else "r1",
                resolution,
            ),
        )


@pytest.fixture
def state(project: Project) -> Path:
    path = project.home / "toolkit.db"
    history = History(path)
    run(history, "old", 60 * 24 * 9, exit_code=1)  # before the 7-day window
    run(history, "ok-1", 600, changed=3)
    run(history, "ok-2", 500)
    run(history, "fail-pg", 400, exit_code=1, changed=1)
    run(history, "fixed-pg", 390, changed=1)  # restores fail-pg 10 minutes later
    run(history, "fail-cass", 300, target="cassandra", exit_code=4)  # never restored
    run(history, "fixed-elsewhere", 200, target="cassandra", inventory="/srv/inventories/lab")  # not its inventory
    run(history, "interrupted", 250, exit_code=130)  # stopped by a person: not a failed change
    run(history, "checked", 100, check=True, changed=5)  # check mode changes nothing
    run(history, "drift-check", 90, kind="drift", exit_code=3)
    run(history, "remediation", 80, changed=1, note="drift --remediate (check run drift-check)")
    run(history, "verified", 70, kind="verify")
    drifted(path, first_seen=95, resolved=80, resolution="remediated")  # 15 minutes
    drifted(path, first_seen=300, resolved=295, resolution="no longer drifts")  # 5 minutes
    drifted(path, first_seen=60, resolved=None, resolution=None)  # still open
    drifted(path, first_seen=50, resolved=40, resolution="ignored")  # excused, not restored
    drifted(path, first_seen=60 * 24 * 10, resolved=60 * 24 * 8, resolution="remediated")  # before the window
    return path


def figures(path: Path) -> DeliveryFigures:
    since = NOW - dt.timedelta(days=7)
    records: list[DriftRecord] = DriftStore(path).open_or_resolved_since(since.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return delivery_figures(History(path).started_since(iso(60 * 24 * 7)), records, since=since, until=NOW)


def test_deployments_failures_and_restores_follow_their_definitions(state: Path) -> None:
    result = figures(state)
    # ok-1, ok-2, fail-pg, fixed-pg, fail-cass, fixed-elsewhere, interrupted.
    assert result.deployments == 7
    assert result.failed == 2 and result.change_failure_rate == pytest.approx(2 / 7)
    assert result.changed == 3  # ok-1, fail-pg, fixed-pg
    assert result.remediations == 1
    assert result.deployments_per_day == pytest.approx(1.0)
    assert result.failed_change_restores.durations == [600.0]
    assert result.failed_change_restores.still_open == 1
    assert sorted(result.drift_restores.durations) == [300.0, 900.0]
    assert result.drift_restores.still_open == 1
    services = result.to_dict()["services"]
    assert services["postgresql"] == {"deployments": 5, "failed": 1, "changed": 3}
    assert services["cassandra"] == {"deployments": 2, "failed": 1, "changed": 0}


def test_report_prints_the_figures_and_writes_metrics_promtool_accepts(cli: Cli, state: Path, tmp_path: Path) -> None:
    textfiles = tmp_path / "textfile"
    outcome = cli("report", "--since", "7d", "--json", "--textfile-dir", str(textfiles))
    assert outcome.code == 0, outcome.err
    document = json.loads(outcome.out)
    assert (document["deployments"], document["failed"], document["remediations"]) == (7, 2, 1)
    assert document["change_failure_rate"] == round(2 / 7, 4)
    assert document["time_to_restore"]["failed_change"] == {
        "count": 1,
        "open": 1,
        "median_seconds": 600.0,
        "max_seconds": 600.0,
    }
    assert document["time_to_restore"]["drift"]["median_seconds"] == 600.0  # of 300 and 900

    metrics = textfiles / "toolkit_delivery_7d.prom"
    text = metrics.read_text()
    assert 'toolkit_delivery_deployments{window="7d"} 7' in text
    assert 'toolkit_delivery_time_to_restore_seconds{window="7d",source="drift",stat="max"} 900' in text
    assert 'toolkit_delivery_unrestored{window="7d",source="failed_change"} 1' in text
    promtool = shutil.which("promtool", path=str(Path(sys.executable).parent)) or shutil.which("promtool")
    assert promtool, "promtool comes from scripts/setup"
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    human = cli("report", "--since", "1d", "--textfile-dir", str(textfiles))
    assert human.code == 0, human.err
    assert "change failure rate  28.6% (2 failed)" in human.out
    assert "restore: failed run  median 10m00.0s" in human.out


def test_a_short_window_leaves_out_older_runs(cli: Cli, state: Path, tmp_path: Path) -> None:
    outcome = cli("report", "--since", "3h", "--json", "--textfile-dir", str(tmp_path))
    document = json.loads(outcome.out)
    # In the last 3 hours: the remediation (a restoration) only; no deployment, so no failure rate.
    assert (document["deployments"], document["remediations"], document["change_failure_rate"]) == (0, 1, None)


def test_an_empty_history_reports_zeros(cli: Cli, tmp_path: Path) -> None:
    outcome = cli("report", "--json", "--textfile-dir", str(tmp_path))
    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out)["deployments"] == 0


@pytest.mark.parametrize("span", ["7", "0d", "7x", "-1d", "week"])
def test_a_bad_since_is_one_line_and_exit_2(cli: Cli, span: str, tmp_path: Path) -> None:
    textfiles = tmp_path / "textfile"
    outcome = cli("report", "--since", span, "--textfile-dir", str(textfiles))
    assert outcome.code == 2
    assert f"--since {span!r} is not a positive duration like 30s, 10m, 24h, 7d or 2w" in outcome.err
    assert not textfiles.exists()
