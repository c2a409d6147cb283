"""Typed views of ansible-runner events, the recap mapping, and the per-host tracker."""

from typing import TypeVar

import pytest

from tests.unit import fakes
from toolkit.runner.events import (
    HostStats,
    OutputText,
    PlaybookStats,
    PlayStarted,
    RunEvent,
    RunTracker,
    TaskResult,
    TaskStarted,
    parse_event,
    stats_from_runner,
)

T = TypeVar("T")


def only(events: list[RunEvent], kind: type[T]) -> T:
    """The one event of that kind (besides OutputText, which most events also produce)."""
    matching = [e for e in events if isinstance(e, kind)]
    assert len(matching) == 1, events
    return matching[0]


def test_a_changed_result_is_changed_with_its_action_and_duration() -> None:
    parsed = parse_event(fakes.task_ok("web-1", "Write the config", changed=True, action="ansible.builtin.template"))
    assert parsed == [
        OutputText("changed: [web-1]"),
        TaskResult("web-1", "Write the config", "ansible.builtin.template", "changed", "", 0.25, play="Base"),
    ]


def test_an_unchanged_result_is_ok() -> None:
    result = only(parse_event(fakes.task_ok("web-1", "Ping")), TaskResult)
    assert result.status == "ok"


def test_a_debug_message_is_kept_as_a_note_on_one_line() -> None:
    event = fakes.task_ok("db-1", "Report pending settings", action="ansible.builtin.debug")
    event["event_data"]["res"]["msg"] = "PENDING RESTART on db-1:\n  max_connections"
    result = only(parse_event(event), TaskResult)
    assert (result.status, result.message) == ("ok", "PENDING RESTART on db-1: max_connections")


def test_other_modules_messages_are_not_notes() -> None:
    event = fakes.task_ok("db-1", "Install", action="ansible.builtin.apt")
    event["event_data"]["res"]["msg"] = "1 upgraded, 0 newly installed"
    assert only(parse_event(event), TaskResult).message == ""


def test_the_tracker_collects_notes_in_order() -> None:
    tracker = RunTracker()
    for host in ("db-2", "db-1"):
        event = fakes.task_ok(host, "Say", action="debug")
        event["event_data"]["res"]["msg"] = f"restarted {host}"
        for parsed in parse_event(event):
            tracker.observe(parsed, now=1.0)
    tracker.observe(only(parse_event(fakes.task_ok("db-1", "Ping")), TaskResult), now=2.0)
    assert [(note.host, note.message) for note in tracker.notes] == [
        ("db-2", "restarted db-2"),
        ("db-1", "restarted db-1"),
    ]


def test_a_failure_keeps_the_first_line_of_its_message() -> None:
    result = only(parse_event(fakes.task_failed("db-1", "Start", "unit failed\nsee journalctl")), TaskResult)
    assert result == TaskResult("db-1", "Start", "ansible.builtin.command", "failed", "unit failed", 0.5, play="Base")


def test_an_argument_spec_failure_names_the_variable_and_value() -> None:
    event = fakes.task_failed("db-1", "Validating arguments against arg spec main", "Validation of arguments failed:")
    event["event_data"]["res"]["argument_errors"] = [
        "value of method must be one of: scram-sha-256, peer, reject, got: md5 found in postgresql_hba_rules"
    ]
    result = only(parse_event(event), TaskResult)
    assert result.message.endswith("got: md5 found in postgresql_hba_rules")


def test_a_failed_loop_reports_its_first_failed_items_message() -> None:
    event = fakes.task_failed("db-1", "Check every rule", "One or more items failed")
    event["event_data"]["res"]["results"] = [
        {"failed": False, "msg": "All assertions passed"},
        {"failed": True, "msg": "rule 1 (10.0.0.300/8) is not a CIDR\nsecond line"},
        {"failed": True, "msg": "rule 2 is bad too"},
    ]
    assert only(parse_event(event), TaskResult).message == "rule 1 (10.0.0.300/8) is not a CIDR"


def test_a_failure_without_msg_falls_back_to_stderr() -> None:
    event = fakes.task_failed("db-1", "Run", "")
    event["event_data"]["res"] = {"msg": "", "stderr": "  permission denied\n", "rc": 1}
    result = only(parse_event(event), TaskResult)
    assert result.message == "permission denied"


def test_a_refused_validation_reports_the_validators_message() -> None:
    event = fakes.task_failed("prom-1", "Write the rules", "failed to validate")
    event["event_data"]["res"] = {
        "msg": "failed to validate",
        "exit_status": 1,
        "stdout": "Checking /tmp/source\n\n",
        "stderr": '  FAILED:\n/tmp/source: 5:15: group "x", rule 1, "X": could not parse expression: 1:6: parse error',
    }
    assert only(parse_event(event), TaskResult).message == (
        'failed to validate: /tmp/source: 5:15: group "x", rule 1, "X": could not parse expression: 1:6: parse error'
    )


def test_a_command_that_exits_non_zero_reports_the_end_of_its_stderr() -> None:
    event = fakes.task_failed("db-1", "Gate | budget and health before the next batch", "non-zero return code")
    event["event_data"]["res"] = {
        "msg": "non-zero return code",
        "rc": 6,
        "stdout": "",
        "stderr": "warning: slow burn\n\n"
        "error: gate closed for postgresql after db-1: postgres target on db-1 is down\n",
    }
    assert only(parse_event(event), TaskResult).message == (
        "non-zero return code 6: warning: slow burn error: gate closed for postgresql after db-1: postgres target on"
        " db-1 is down"
    )


def test_an_ignored_failure_is_ignored_not_failed() -> None:
    result = only(parse_event(fakes.task_failed("db-1", "Probe", "nope", ignore_errors=True)), TaskResult)
    assert result.status == "ignored"


def test_an_unreachable_host_is_unreachable_with_the_reason() -> None:
    reason = "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.5 port 22: Connection refused"
    result = only(parse_event(fakes.task_unreachable("web-2", "Gathering Facts", reason)), TaskResult)
    assert result == TaskResult(
        "web-2", "Gathering Facts", "ansible.builtin.ping", "unreachable", reason, 30.0, play="Base"
    )


def test_a_skipped_result_is_skipped() -> None:
    result = only(parse_event(fakes.task_skipped("web-1", "Only on Debian 11")), TaskResult)
    assert (result.status, result.message) == ("skipped", "")


def test_runner_on_start_is_a_task_start() -> None:
    assert parse_event(fakes.task_start("web-1", "Install packages")) == [TaskStarted("web-1", "Install packages")]


def test_a_play_start_carries_the_play_name_and_its_banner() -> None:
    parsed = parse_event(fakes.play_start("Base | every host"))
    assert PlayStarted("Base | every host") in parsed
    assert any(isinstance(e, OutputText) and "PLAY [Base | every host]" in e.text for e in parsed)


def test_the_recap_maps_ansible_keys_to_ours() -> None:
    event = fakes.recap(
        ok={"web-1": 5, "web-2": 1},
        changed={"web-1": 2},
        failures={"web-1": 1},
        dark={"web-2": 1},
        skipped={"web-1": 3},
        rescued={"web-1": 1},
        ignored={"web-1": 4},
    )
    stats = only(parse_event(event), PlaybookStats)
    assert stats.hosts == {
        "web-1": HostStats(ok=5, changed=2, failed=1, unreachable=0, skipped=3, rescued=1, ignored=4),
        "web-2": HostStats(ok=1, unreachable=1),
    }


def test_a_host_only_in_processed_has_a_zero_line() -> None:
    # A host can appear in the recap with every count at zero (e.g. it was skipped by a failed condition).
    raw = {"ok": {"web-1": 1}, "processed": {"web-1": 1, "web-2": 1}, "failures": None}
    assert stats_from_runner(raw) == {"web-1": HostStats(ok=1), "web-2": HostStats()}


@pytest.mark.parametrize("raw", [None, {}])
def test_no_recap_is_no_stats(raw: dict[str, object] | None) -> None:
    assert stats_from_runner(raw) == {}


def test_plain_output_is_output_text_and_blank_output_is_nothing() -> None:
    assert parse_event(fakes.verbose("ERROR! the playbook could not be parsed")) == [
        OutputText("ERROR! the playbook could not be parsed")
    ]
    assert parse_event(fakes.verbose("  \r\n ")) == []
    assert parse_event({"event": "playbook_on_task_start", "event_data": {"task": "x"}}) == []


def test_the_tracker_aggregates_per_host_and_keeps_changed_failed_unreachable() -> None:
    tracker = RunTracker()
    script = [
        (fakes.play_start("Base"), 100.0),
        (fakes.task_start("web-1", "Install"), 100.0),
        (fakes.task_ok("web-1", "Install", changed=True), 101.0),
        (fakes.task_start("web-1", "Configure"), 102.0),
        (fakes.task_ok("web-1", "Configure"), 104.5),
        (fakes.task_failed("web-1", "Probe", "meh", ignore_errors=True), 105.0),
        (fakes.task_skipped("web-1", "Legacy"), 105.5),
        (fakes.task_failed("db-1", "Start", "boom"), 103.0),
        (fakes.task_unreachable("db-2", "Gathering Facts", "timed out"), 130.0),
        (fakes.recap(ok={"web-1": 3}, changed={"web-1": 1}, failures={"db-1": 1}, dark={"db-2": 1}), 131.0),
    ]
    for raw, now in script:
        for event in parse_event(raw):
            tracker.observe(event, now)

    web = tracker.hosts["web-1"]
    # ok counts changed and ignored results too, as Ansible's recap does.
    assert (web.ok, web.changed, web.failed, web.unreachable, web.skipped) == (3, 1, 0, 0, 1)
    assert web.current_task == "Configure"
    assert web.duration == pytest.approx(5.5)
    assert tracker.hosts["db-1"].failed == 1
    assert tracker.hosts["db-2"].unreachable == 1
    assert tracker.hosts["db-2"].duration == 0.0  # one event: no span
    assert [(r.host, r.task) for r in tracker.changed] == [("web-1", "Install")]
    assert [(r.host, r.message) for r in tracker.failed] == [("db-1", "boom")]
    assert [(r.host, r.message) for r in tracker.unreachable] == [("db-2", "timed out")]
    assert tracker.play == "Base"
    assert tracker.stats is not None
    assert tracker.stats["db-2"].unreachable == 1
