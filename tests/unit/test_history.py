"""The SQLite run history: rows written at start and finish, listing, prefix lookup, abandoned runs."""

import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from toolkit.exit_codes import ExitCode
from toolkit.runner.events import HostStats
from toolkit.runner.history import History
from toolkit.runner.result import HostSummary, RunResult, TaskRef

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "state" / "toolkit.db")


def start(history: History, run_id: str, *, kind: str = "converge", started_at: str = "2026-11-25T04:15:00Z") -> None:
    history.record_start(
        run_id=run_id,
        kind=kind,
        target="base",
        inventory="/srv/inventories/lab",
        limit="web",
        check=True,
        started_at=started_at,
        artifacts=f"/state/runs/{run_id}/artifacts/{run_id}",
        note=None,
    )


def finished_result(run_id: str) -> RunResult:
    return RunResult(
        run_id=run_id,
        kind="converge",
        target="base",
        inventory="/srv/inventories/lab",
        limit="web",
        check=True,
        status="failed",
        exit_code=ExitCode.UNREACHABLE,
        started_at="2026-11-25T04:15:00Z",
        duration=42.5,
        hosts={
            "web-1": HostSummary(HostStats(ok=5, changed=2), 10.0),
            "web-2": HostSummary(HostStats(ok=3, changed=1, failed=1), 11.0),
            "web-3": HostSummary(HostStats(unreachable=1), 30.0),
        },
        failed=[TaskRef("web-2", "Start", "ansible.builtin.service", "boom")],
        error="",
    )


def test_a_started_run_reads_as_running_with_who_and_where(history: History) -> None:
    start(history, "20261125T041500Z-aaaaaa")
    record = history.get("20261125T041500Z-aaaaaa")
    assert record is not None
    assert (record.status, record.effective_status) == ("running", "running")  # our own pid is alive
    assert (record.pid, record.controller) == (os.getpid(), socket.gethostname())
    assert (record.kind, record.target, record.limit_expr, record.check_mode) == ("converge", "base", "web", True)
    assert record.finished_at is None
    assert record.exit_code is None
    assert record.detail is None
    assert history.path.exists()


def test_a_finished_run_has_its_counts_exit_code_and_document(history: History) -> None:
    run_id = "20261125T041500Z-aaaaaa"
    start(history, run_id)
    result = finished_result(run_id)
    history.record_finish(result, "2026-11-25T04:15:43Z")
    record = history.get(run_id)
    assert record is not None
    assert (record.status, record.exit_code, record.finished_at) == ("failed", 4, "2026-11-25T04:15:43Z")
    assert record.duration == 42.5
    # hosts, ok, changed, failed (tasks), unreachable (hosts)
    assert (record.hosts, record.ok, record.changed, record.failed, record.unreachable) == (3, 8, 3, 1, 1)
    assert record.detail == result.to_dict()
    assert record.to_dict()["status"] == "failed"


def test_the_user_note_survives_an_error_and_an_error_fills_an_empty_note(history: History) -> None:
    history.record_start(
        run_id="a1",
        kind="converge",
        target="base",
        inventory="i",
        limit=None,
        check=False,
        started_at="2026-11-25T04:15:00Z",
        artifacts=None,
        note="emergency fix, ticket 42",
    )
    start(history, "b2")
    for run_id in ("a1", "b2"):
        history.finish(
            run_id,
            finished_at="2026-11-25T04:16:00Z",
            duration=1.0,
            status="failed",
            exit_code=1,
            counts=(0, 0, 0, 0, 0),
            detail={},
            error="ERROR! the playbook could not be parsed",
        )
    first, second = history.get("a1"), history.get("b2")
    assert first is not None
    assert second is not None
    assert first.note == "emergency fix, ticket 42"
    assert second.note == "ERROR! the playbook could not be parsed"


def test_list_is_newest_first_limited_and_filtered_by_kind(history: History) -> None:
    start(history, "20261125T010000Z-aaaaaa", started_at="2026-11-25T01:00:00Z")
    start(history, "20261125T030000Z-cccccc", started_at="2026-11-25T03:00:00Z", kind="verify")
    start(history, "20261125T020000Z-bbbbbb", started_at="2026-11-25T02:00:00Z")
    assert [r.run_id for r in history.list()] == [
        "20261125T030000Z-cccccc",
        "20261125T020000Z-bbbbbb",
        "20261125T010000Z-aaaaaa",
    ]
    assert [r.run_id for r in history.list(limit=1)] == ["20261125T030000Z-cccccc"]
    assert [r.run_id for r in history.list(kind="converge")] == ["20261125T020000Z-bbbbbb", "20261125T010000Z-aaaaaa"]
    assert history.list(kind="drift") == []


def test_an_empty_history_lists_nothing(history: History) -> None:
    assert history.list() == []
    assert history.get("anything") is None


def test_get_accepts_a_unique_prefix_and_refuses_an_ambiguous_one(history: History) -> None:
    start(history, "20261125T041500Z-aaaaaa")
    start(history, "20261125T041501Z-bbbbbb")
    start(history, "20261126T090000Z-cccccc")
    unique = history.get("20261126")
    assert unique is not None
    assert unique.run_id == "20261126T090000Z-cccccc"
    assert history.get("20261125T0415") is None  # two runs start with it
    assert history.get("20261125T041501Z-bbbbbb") is not None
    assert history.get("nosuch") is None


def test_a_running_row_whose_process_died_reads_as_abandoned(history: History) -> None:
    # A real process records a start and dies without finishing, like a converge killed with SIGKILL.
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from toolkit.runner.history import History
        History(Path({str(history.path)!r})).record_start(
            run_id="dead", kind="converge", target="base", inventory="i", limit=None, check=False,
            started_at="2026-11-25T04:15:00Z", artifacts=None)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    record = history.get("dead")
    assert record is not None
    assert record.pid != os.getpid()
    assert record.status == "running"
    assert record.effective_status == "abandoned"
    assert record.to_dict()["status"] == "abandoned"


def test_a_running_row_from_another_controller_is_not_judged(history: History) -> None:
    # A pid means nothing on another machine sharing the database: the row stays "running".
    start(history, "remote")
    with closing(sqlite3.connect(history.path)) as db, db:
        db.execute("UPDATE runs SET controller = 'elsewhere', pid = 999999999 WHERE run_id = 'remote'")
    record = history.get("remote")
    assert record is not None
    assert record.effective_status == "running"


def test_prefix_lookup_is_literal_not_a_like_pattern(history: History) -> None:
    start(history, "20261125T041500Z-aaaaaa")
    # LIKE would read % and _ as wildcards and ignore case; a run id prefix is matched letter for letter.
    assert history.get("%") is None
    assert history.get("2026112_T") is None
    assert history.get("20261125T041500Z-AAAAAA") is None
    found = history.get("20261125T041500Z-aaa")
    assert found is not None and found.run_id == "20261125T041500Z-aaaaaa"


def test_active_run_ids_are_the_running_rows_whose_process_lives(history: History) -> None:
    start(history, "20261125T041500Z-aaaaaa")  # this process: alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    start(history, "20261125T041501Z-bbbbbb")
    with closing(sqlite3.connect(history.path)) as db, db:
        db.execute("UPDATE runs SET pid = ? WHERE run_id = ?", (int(dead.stdout), "20261125T041501Z-bbbbbb"))
    assert history.active_run_ids() == {"20261125T041500Z-aaaaaa"}
