"""`toolkit converge` in-process through main(), with ansible-runner faked: output streams, JSON, exit codes."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit import fakes
from tests.unit.conftest import CliOutcome, Project
from tests.unit.fakes import FakeAnsibleRunner
from toolkit.runner.lock import InventoryLock

Cli = Callable[..., CliOutcome]
InstallFake = Callable[..., FakeAnsibleRunner]


@pytest.fixture
def inventory(project: Project) -> Path:
    return project.inventory({"web": ["web-1", "web-2"]})


def clean_run() -> list[fakes.Event]:
    return [
        fakes.play_start("Base"),
        fakes.task_start("web-1", "Write config"),
        fakes.task_ok("web-1", "Write config", changed=True),
        fakes.task_ok("web-2", "Write config"),
        fakes.recap(ok={"web-1": 4, "web-2": 4}, changed={"web-1": 1}, skipped={"web-2": 1}),
    ]


def failed_run() -> list[fakes.Event]:
    return [
        fakes.play_start("Base"),
        fakes.task_ok("web-1", "Write config"),
        fakes.task_failed("web-2", "Write config", "Destination directory /etc/x does not exist"),
        fakes.recap(ok={"web-1": 2, "web-2": 1}, failures={"web-2": 1}),
    ]


def unreachable_run() -> list[fakes.Event]:
    return [
        fakes.play_start("Base"),
        fakes.task_ok("web-1", "Write config", changed=True),
        fakes.task_failed("web-1", "Restart", "boom"),
        fakes.task_unreachable("web-2", "Gathering Facts", "ssh: connect to host web-2 port 22: Connection timed out"),
        fakes.recap(ok={"web-1": 1}, changed={"web-1": 1}, failures={"web-1": 1}, dark={"web-2": 1}),
    ]


def test_json_is_one_document_on_stdout_matching_the_recap(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    fake_runner(clean_run())
    outcome = cli("converge", "base", "-i", str(inventory), "--json")

    assert outcome.code == 0, outcome.err
    document = json.loads(outcome.out)  # raises on anything but exactly one JSON document
    assert document["exit_code"] == 0
    assert document["totals"] == {
        "ok": 8,
        "changed": 1,
        "failed": 0,
        "unreachable": 0,
        "skipped": 1,
        "rescued": 0,
        "ignored": 0,
    }
    assert document["hosts"]["web-1"]["changed"] == 1
    assert document["changed_tasks"] == [
        {"host": "web-1", "task": "Write config", "action": "ansible.builtin.command", "message": ""}
    ]
    assert (document["kind"], document["target"], document["check"]) == ("converge", "base", False)
    # Human output went to stderr, and none of it leaked into stdout.
    assert "converge base on 2 host(s)" in outcome.err
    assert "1 task(s) changed on 1 of 2 host(s)" in outcome.err
    assert "exit 0" in outcome.err
    assert document["run_id"] in outcome.err
    assert "converge base on" not in outcome.out


def test_without_json_stdout_stays_empty(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    fake_runner(clean_run())
    outcome = cli("converge", "base", "-i", str(inventory))
    assert outcome.code == 0
    assert outcome.out == ""
    assert "exit 0" in outcome.err


def test_a_failed_task_exits_1_and_names_the_host(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    fake_runner(failed_run(), status="failed")
    outcome = cli("converge", "base", "-i", str(inventory), "--json")
    assert outcome.code == 1
    document = json.loads(outcome.out)
    assert document["exit_code"] == 1
    assert document["totals"]["failed"] == 1
    assert document["failed_tasks"][0]["message"] == "Destination directory /etc/x does not exist"
    assert "failed on web-2" in outcome.err
    assert "exit 1" in outcome.err


def test_an_unreachable_host_exits_4_even_with_failures(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    fake_runner(unreachable_run(), status="failed")
    outcome = cli("converge", "base", "-i", str(inventory), "--json")
    assert outcome.code == 4
    document = json.loads(outcome.out)
    assert document["exit_code"] == 4
    assert (document["totals"]["unreachable"], document["totals"]["failed"]) == (1, 1)
    assert "unreachable: web-2" in outcome.err
    assert "Connection timed out" in outcome.err


def test_options_reach_ansible_runner(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    fake = fake_runner(clean_run())
    outcome = cli(
        "converge", "base", "-i", str(inventory), "-l", "web-1", "-t", "base_users", "--skip-tags", "slow",
        "-C", "-D", "-f", "3", "-e", "base_timezone=UTC",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    [kwargs] = fake.calls
    assert (kwargs["limit"], kwargs["tags"], kwargs["skip_tags"], kwargs["forks"]) == ("web-1", "base_users", "slow", 3)
    assert kwargs["cmdline"].startswith("--check --diff -e @")
    assert kwargs["inventory"] == str(inventory)
    assert json.loads(fake.extra_vars_files[0].content) == {"base_timezone": "UTC"}
    assert "(check mode)" in outcome.err


def test_a_secret_extra_var_never_reaches_the_output(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    secret = "hunter2-db-pass"
    fake_runner(
        [
            fakes.play_start("Base"),
            fakes.task_ok("web-1", f"Set password to {secret}", changed=True),
            fakes.task_failed("web-2", "Log in", f"password {secret} rejected"),
            fakes.recap(ok={"web-1": 1}, changed={"web-1": 1}, failures={"web-2": 1}),
        ],
        status="failed",
    )
    outcome = cli("converge", "base", "-i", str(inventory), "--json", "-v", "-e", f"db_password={secret}")
    assert outcome.code == 1
    assert "********" in outcome.out
    assert secret not in outcome.out
    assert "FAILED! =>" in outcome.err  # -v streams Ansible's own output...
    assert secret not in outcome.err  # ...redacted too


def test_a_held_lock_exits_5_naming_the_holder(
    cli: Cli, fake_runner: InstallFake, project: Project, inventory: Path
) -> None:
    fake = fake_runner(clean_run())
    with InventoryLock(project.home / "locks", str(inventory), "drift base"):
        outcome = cli("converge", "base", "-i", str(inventory), "--json")
    assert outcome.code == 5
    assert outcome.out == ""
    assert "is locked by pid" in outcome.err
    assert "drift base" in outcome.err
    assert fake.calls == []


def test_an_internal_error_is_one_line_with_the_traceback_in_the_debug_log(
    cli: Cli, project: Project, inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ansible_runner

    def broken(**kwargs: object) -> None:
        raise RuntimeError("runner exploded")

    monkeypatch.setattr(ansible_runner, "run_async", broken)
    outcome = cli("converge", "base", "-i", str(inventory))
    assert outcome.code == 1
    assert "error: internal error: RuntimeError: runner exploded" in outcome.err
    assert "Traceback" not in outcome.err
    log = (project.home / "debug.log").read_text()
    assert "Traceback" in log
    assert "runner exploded" in log


def test_debug_shows_the_traceback_instead(cli: Cli, inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ansible_runner

    def broken(**kwargs: object) -> None:
        raise RuntimeError("runner exploded")

    monkeypatch.setattr(ansible_runner, "run_async", broken)
    monkeypatch.setenv("TOOLKIT_DEBUG", "0")  # registered with monkeypatch, so --debug's setting is undone
    outcome = cli("--debug", "converge", "base", "-i", str(inventory))
    assert outcome.code == 1
    assert "Traceback" in outcome.err
    assert "RuntimeError: runner exploded" in outcome.err


def test_runs_lists_and_shows_the_converge(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    fake_runner(failed_run(), status="failed")
    run_id = json.loads(cli("converge", "base", "-i", str(inventory), "--json").out)["run_id"]

    listed = cli("runs", "list", "--json")
    assert listed.code == 0
    [row] = json.loads(listed.out)
    assert (row["run_id"], row["kind"], row["status"], row["exit_code"], row["failed"]) == (
        run_id,
        "converge",
        "failed",
        1,
        1,
    )
    assert "detail" not in row

    shown = cli("runs", "show", run_id[:12], "--json")
    assert shown.code == 0
    record = json.loads(shown.out)
    assert record["run_id"] == run_id
    assert record["detail"]["totals"]["failed"] == 1

    human = cli("runs")
    assert human.code == 0
    assert run_id in human.out + human.err
