"""decide_exit_code() precedence and the --json document built from a RunResult."""

import json
from pathlib import Path

import pytest

from toolkit.exit_codes import ExitCode
from toolkit.runner.events import HostStats
from toolkit.runner.result import HostSummary, RunResult, TaskRef, decide_exit_code

CLEAN = {"web-1": HostStats(ok=4, changed=1), "web-2": HostStats(ok=4)}
FAILED = {"web-1": HostStats(ok=2, failed=1), "web-2": HostStats(ok=4)}
UNREACHABLE_AND_FAILED = {"web-1": HostStats(ok=2, failed=1), "web-2": HostStats(unreachable=1)}


@pytest.mark.parametrize(
    ("status", "stats", "canceled", "expected"),
    [
        pytest.param("successful", CLEAN, False, ExitCode.OK, id="clean run"),
        pytest.param(
            "successful", {"web-1": HostStats(ok=3, ignored=1, rescued=1)}, False, ExitCode.OK, id="ignored+rescued"
        ),
        pytest.param("failed", FAILED, False, ExitCode.TASK_FAILED, id="a task failed"),
        # ansible-navigator and runner's CLI have returned 0 after failures: the recap decides, not the status.
        pytest.param("successful", FAILED, False, ExitCode.TASK_FAILED, id="failed recap despite success status"),
        pytest.param("failed", UNREACHABLE_AND_FAILED, False, ExitCode.UNREACHABLE, id="unreachable beats failed"),
        pytest.param("failed", UNREACHABLE_AND_FAILED, True, ExitCode.INTERRUPTED, id="interrupt beats everything"),
        pytest.param("canceled", {}, False, ExitCode.INTERRUPTED, id="runner reports canceled"),
        pytest.param("failed", {}, False, ExitCode.TASK_FAILED, id="failed before any host ran"),
        pytest.param("timeout", {}, False, ExitCode.TASK_FAILED, id="timeout without recap"),
        pytest.param("failed", CLEAN, False, ExitCode.TASK_FAILED, id="non-successful status, clean recap"),
    ],
)
def test_exit_code_precedence(status: str, stats: dict[str, HostStats], canceled: bool, expected: ExitCode) -> None:
    assert decide_exit_code(status, stats, canceled=canceled) is expected


def make_result(hosts: dict[str, HostStats], exit_code: ExitCode = ExitCode.OK) -> RunResult:
    return RunResult(
        run_id="20261125T041500Z-abc123",
        kind="converge",
        target="base",
        inventory="/srv/inventories/lab",
        limit="web",
        check=True,
        status="successful",
        exit_code=exit_code,
        started_at="2026-11-25T04:15:00Z",
        duration=12.34567,
        hosts={name: HostSummary(stats=s, duration=3.14159) for name, s in hosts.items()},
        changed=[TaskRef("web-1", "Write config", "ansible.builtin.template")],
        failed=[TaskRef("web-2", "Start", "ansible.builtin.service", "boom")],
        artifacts=Path("/state/runs/x/artifacts/x"),
    )


def test_totals_are_the_sum_of_the_hosts() -> None:
    result = make_result(
        {
            "web-1": HostStats(ok=5, changed=2, skipped=1, ignored=1),
            "web-2": HostStats(ok=3, changed=1, failed=1, rescued=1),
            "web-3": HostStats(unreachable=1),
        }
    )
    document = result.to_dict()
    for key in ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored"):
        assert document["totals"][key] == sum(host[key] for host in document["hosts"].values()), key
    assert document["totals"] == {
        "ok": 8,
        "changed": 3,
        "failed": 1,
        "unreachable": 1,
        "skipped": 1,
        "rescued": 1,
        "ignored": 1,
    }
    assert result.changed_count == 3
    assert result.unreachable_hosts() == ["web-3"]


def test_the_document_is_plain_json_with_rounded_durations() -> None:
    result = make_result({"web-1": HostStats(ok=1)}, exit_code=ExitCode.UNREACHABLE)
    document = json.loads(json.dumps(result.to_dict()))  # no default=: everything must be JSON-native
    assert document["exit_code"] == 4
    assert type(document["exit_code"]) is int
    assert document["duration"] == 12.346
    assert document["hosts"]["web-1"]["duration"] == 3.142
    assert document["artifacts"] == "/state/runs/x/artifacts/x"
    assert document["check"] is True
    assert document["limit"] == "web"
    assert document["changed_tasks"] == [
        {"host": "web-1", "task": "Write config", "action": "ansible.builtin.template", "message": ""}
    ]
    assert document["failed_tasks"][0]["message"] == "boom"
    assert document["unreachable"] == []
