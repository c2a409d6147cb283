"""build_runner_kwargs() and run_playbook() with ansible-runner faked at its API."""

import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import ansible_runner
import pytest

from tests.unit import fakes
from tests.unit.conftest import Project
from tests.unit.fakes import FakeAnsibleRunner
from toolkit.errors import LockHeldError
from toolkit.exit_codes import ExitCode
from toolkit.paths import state_paths
from toolkit.runner import artifacts
from toolkit.runner.events import HostStats, OutputText, RunEvent, TaskStarted
from toolkit.runner.execute import (
    DEFAULT_KEEP_RUNS,
    PlaybookRun,
    RunSettings,
    build_runner_kwargs,
    playbook_arguments,
    run_playbook,
)
from toolkit.runner.extravars import parse_extra_vars
from toolkit.runner.history import History
from toolkit.runner.inventory import ResolvedInventory
from toolkit.runner.lock import InventoryLock

InstallFake = Callable[..., FakeAnsibleRunner]
HOSTS = ("web-1", "web-2")


def make_run(project: Project, **overrides: Any) -> PlaybookRun:
    inventory = ResolvedInventory(
        source=project.root / "inventories" / "hosts.yml", hosts=overrides.pop("hosts", HOSTS), limit=None
    )
    return PlaybookRun(
        kind="converge",
        target="base",
        playbook=project.playbooks / "base.yml",
        inventory=overrides.pop("inventory", inventory),
        **overrides,
    )


def settings() -> RunSettings:
    return RunSettings.from_env(state_paths())


def no_callback() -> bool:
    return False


def handler(event: dict[str, Any]) -> bool:
    return True


# --- build_runner_kwargs --------------------------------------------------------------------------------------


def test_runner_kwargs_carry_every_option(project: Project) -> None:
    inventory = ResolvedInventory(source=project.root / "inv.yml", hosts=("web-1",), limit="web:!web-2")
    run = make_run(project, inventory=inventory, tags="base_users", skip_tags="slow", forks=7, verbosity=3)
    run_dir = artifacts.RunDirectory("run1", project.runs / "run1")
    vault = project.root / "vault-pass"

    kwargs = build_runner_kwargs(
        run,
        run_dir,
        [*playbook_arguments(make_run(project, check=True, diff=True), vault), "-e", "@/dev/shm/x.json"],
        event_handler=handler,
        cancel_callback=no_callback,
    )

    assert kwargs["private_data_dir"] == str(project.runs / "run1")
    assert kwargs["ident"] == "run1"
    assert kwargs["project_dir"] == str(project.root)  # cwd: ansible.cfg, roles/ and group_vars resolve
    assert kwargs["playbook"] == str(project.playbooks / "base.yml")
    assert kwargs["inventory"] == str(project.root / "inv.yml")
    assert (kwargs["limit"], kwargs["tags"], kwargs["skip_tags"]) == ("web:!web-2", "base_users", "slow")
    assert (kwargs["forks"], kwargs["verbosity"]) == (7, 3)
    assert kwargs["cmdline"] == f"--check --diff --vault-password-file {vault} -e @/dev/shm/x.json"
    assert kwargs["event_handler"] is handler
    assert kwargs["cancel_callback"] is no_callback
    # Secrets never go through runner's own extravars/passwords (written into the run directory).
    assert "extravars" not in kwargs
    assert "passwords" not in kwargs


def test_runner_kwargs_fix_runner_defaults_we_do_not_want(project: Project) -> None:
    kwargs = build_runner_kwargs(
        make_run(project),
        artifacts.RunDirectory("run1", project.runs / "run1"),
        [],
        event_handler=handler,
        cancel_callback=no_callback,
    )
    env = kwargs["envvars"]
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"  # runner would set False
    assert kwargs["fact_cache_type"] != "jsonfile"  # jsonfile = a fact cache per run, in its artifacts
    assert kwargs["suppress_env_files"] is True
    assert kwargs["rotate_artifacts"] == 0
    assert kwargs["quiet"] is True
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["ANSIBLE_CONFIG"] == str(project.root / "ansible.cfg")
    assert (env["ANSIBLE_NOCOLOR"], env["ANSIBLE_FORCE_COLOR"]) == ("1", "0")
    # Nothing asked for, nothing passed: runner's own defaults (and ansible.cfg) apply.
    for absent in ("limit", "tags", "skip_tags", "forks", "verbosity", "cmdline"):
        assert absent not in kwargs, absent


def test_playbook_arguments_only_what_was_asked() -> None:
    run = PlaybookRun("converge", "base", Path("base.yml"), ResolvedInventory(Path("i"), ("h",), None))
    assert playbook_arguments(run, None) == []


@pytest.mark.parametrize(("raw", "keep"), [("5", 5), ("0", DEFAULT_KEEP_RUNS), ("-3", DEFAULT_KEEP_RUNS), ("x", 30)])
def test_keep_runs_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str, keep: int) -> None:
    monkeypatch.setenv("TOOLKIT_KEEP_RUNS", raw)
    assert settings().keep_runs == keep


# --- run_playbook ---------------------------------------------------------------------------------------------


def mixed_run() -> list[fakes.Event]:
    """web-1 changes a task, web-2 fails one. The recap counts more than these events show (as in a real run,
    where not every event is replayed here), so a result that matches it was taken from the recap."""
    return [
        fakes.play_start("Base"),
        fakes.task_start("web-1", "Install packages"),
        fakes.task_start("web-2", "Install packages"),
        fakes.task_ok("web-1", "Install packages", changed=True),
        fakes.task_ok("web-2", "Install packages"),
        fakes.task_start("web-1", "Start service"),
        fakes.task_start("web-2", "Start service"),
        fakes.task_ok("web-1", "Start service"),
        fakes.task_failed("web-2", "Start service", "unit failed to start"),
        fakes.recap(ok={"web-1": 7, "web-2": 3}, changed={"web-1": 1}, failures={"web-2": 1}, skipped={"web-1": 2}),
    ]


def test_the_result_is_the_recap_and_the_history_row_is_finished(project: Project, fake_runner: InstallFake) -> None:
    fake_runner(mixed_run(), status="failed")
    result = run_playbook(make_run(project), settings())

    assert result.exit_code is ExitCode.TASK_FAILED
    assert result.status == "failed"
    assert {name: host.stats for name, host in result.hosts.items()} == {
        "web-1": HostStats(ok=7, changed=1, skipped=2),
        "web-2": HostStats(ok=3, failed=1),
    }
    assert [(r.host, r.task) for r in result.changed] == [("web-1", "Install packages")]
    assert [(r.host, r.message) for r in result.failed] == [("web-2", "unit failed to start")]
    assert result.artifacts == project.runs / result.run_id / "artifacts" / result.run_id
    assert (result.artifacts / "job_events").is_dir()

    record = History(project.home / "toolkit.db").get(result.run_id)
    assert record is not None
    assert (record.status, record.exit_code, record.finished_at is not None) == ("failed", 1, True)
    assert (record.hosts, record.ok, record.changed, record.failed, record.unreachable) == (2, 10, 1, 1, 0)
    assert record.detail == json.loads(json.dumps(result.to_dict()))


def test_the_observer_sees_every_event_in_order(project: Project, fake_runner: InstallFake) -> None:
    fake_runner(mixed_run())
    seen: list[RunEvent] = []
    run_playbook(make_run(project), settings(), observer=seen.append)
    typed = [type(e).__name__ for e in seen if not isinstance(e, OutputText)]
    start, result = "TaskStarted", "TaskResult"
    assert typed == ["PlayStarted", start, start, result, result, start, start, result, result, "PlaybookStats"]
    # Ansible's own rendering comes through too (shown with --verbose).
    assert any(isinstance(e, OutputText) and "PLAY [Base]" in e.text for e in seen)


def test_a_broken_observer_does_not_break_the_run(project: Project, fake_runner: InstallFake) -> None:
    fake_runner(mixed_run(), status="failed")

    def explode(event: RunEvent) -> None:
        raise ValueError("the terminal went away")

    result = run_playbook(make_run(project), settings(), observer=explode)
    assert result.exit_code is ExitCode.TASK_FAILED
    assert result.hosts["web-1"].stats.changed == 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [("successful", ExitCode.OK), ("failed", ExitCode.UNREACHABLE)],
)
def test_the_exit_code_follows_the_recap(
    project: Project, fake_runner: InstallFake, status: str, expected: ExitCode
) -> None:
    events = [fakes.play_start("Base"), fakes.task_ok("web-1", "Ping")]
    if expected is ExitCode.UNREACHABLE:
        events += [
            fakes.task_unreachable("web-2", "Ping", "ssh: connect to host web-2 port 22: No route to host"),
            fakes.recap(ok={"web-1": 1}, dark={"web-2": 1}),
        ]
    else:
        events.append(fakes.recap(ok={"web-1": 1, "web-2": 1}))
    fake_runner(events, status=status)
    result = run_playbook(make_run(project), settings())
    assert result.exit_code is expected
    if expected is ExitCode.UNREACHABLE:
        assert result.unreachable_hosts() == ["web-2"]
        assert "No route to host" in result.unreachable[0].message


def test_a_run_that_fails_before_any_host_reports_why(project: Project, fake_runner: InstallFake) -> None:
    fake_runner(
        [fakes.verbose("ERROR! couldn't resolve module/action 'ansible.builtin.nope'"), fakes.verbose("exit 4")],
        status="failed",
    )
    result = run_playbook(make_run(project), settings())
    assert result.exit_code is ExitCode.TASK_FAILED
    assert result.hosts == {}
    assert result.error == "ERROR! couldn't resolve module/action 'ansible.builtin.nope' | exit 4"


def test_cancel_stops_the_run_and_exits_130(project: Project, fake_runner: InstallFake) -> None:
    fake = fake_runner(mixed_run(), status="failed")
    cancel = threading.Event()

    def press_ctrl_c(event: RunEvent) -> None:
        if isinstance(event, TaskStarted):
            cancel.set()  # what the SIGINT handler does

    result = run_playbook(make_run(project), settings(), observer=press_ctrl_c, cancel=cancel)

    assert result.exit_code is ExitCode.INTERRUPTED
    assert result.status == "canceled"
    assert fake.runner is not None
    assert len(fake.runner.events) == 2  # the play start and the first task start, then runner stopped
    assert result.error == ""
    record = History(project.home / "toolkit.db").get(result.run_id)
    assert record is not None
    assert (record.status, record.exit_code) == ("canceled", 130)


def test_a_cancel_that_lands_as_the_run_ends_still_exits_130(project: Project, fake_runner: InstallFake) -> None:
    # Ctrl-C during the recap: runner finishes normally, but the user asked to stop and must see 130.
    fake_runner(mixed_run(), status="failed")
    cancel = threading.Event()

    def press_ctrl_c_at_the_recap(event: RunEvent) -> None:
        if type(event).__name__ == "PlaybookStats":
            cancel.set()

    result = run_playbook(make_run(project), settings(), observer=press_ctrl_c_at_the_recap, cancel=cancel)
    assert result.status == "failed"
    assert result.exit_code is ExitCode.INTERRUPTED


def test_a_held_lock_refuses_the_run_before_anything_is_created(project: Project, fake_runner: InstallFake) -> None:
    fake = fake_runner(mixed_run())
    run = make_run(project)
    with (
        InventoryLock(project.home / "locks", run.inventory.lock_key, "converge site"),
        pytest.raises(LockHeldError) as raised,
    ):
        run_playbook(run, settings())
    assert raised.value.exit_code == ExitCode.LOCK_HELD
    assert "converge site" in raised.value.message
    assert fake.calls == []
    assert not project.runs.exists() or list(project.runs.iterdir()) == []
    assert History(project.home / "toolkit.db").list() == []


def test_the_lock_is_free_again_after_a_run(project: Project, fake_runner: InstallFake) -> None:
    fake_runner(mixed_run())
    run = make_run(project)
    run_playbook(run, settings())
    InventoryLock(project.home / "locks", run.inventory.lock_key, "converge base").acquire()


def test_old_runs_are_rotated_after_a_run(
    project: Project, fake_runner: InstallFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLKIT_KEEP_RUNS", "2")
    for day in (1, 2, 3):
        (project.runs / f"2020010{day}T000000Z-aaaaaa").mkdir(parents=True)
    fake_runner(mixed_run())
    result = run_playbook(make_run(project), settings())
    assert sorted(p.name for p in project.runs.iterdir()) == ["20200103T000000Z-aaaaaa", result.run_id]


def test_rotation_spares_a_run_still_going_on_another_inventory(
    project: Project, fake_runner: InstallFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLKIT_KEEP_RUNS", "1")
    concurrent = "20200101T000000Z-cccccc"  # oldest, so first in line for deletion
    (project.runs / concurrent).mkdir(parents=True)
    # Its history row is 'running' under a live pid (this test's own process).
    History(project.home / "toolkit.db").record_start(
        run_id=concurrent,
        kind="converge",
        target="base",
        inventory="/elsewhere",
        limit=None,
        check=False,
        started_at="2020-01-01T00:00:00Z",
        artifacts=None,
    )
    fake_runner(mixed_run())
    result = run_playbook(make_run(project), settings())
    assert sorted(p.name for p in project.runs.iterdir()) == [concurrent, result.run_id]


def test_a_runner_crash_closes_the_history_row_and_scrubs(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_run_async(**kwargs: Any) -> None:
        command = Path(kwargs["private_data_dir"]) / "env"
        command.mkdir()
        (command / "extravars").write_text("leftover")
        raise RuntimeError("runner exploded")

    monkeypatch.setattr(ansible_runner, "run_async", broken_run_async)
    with pytest.raises(RuntimeError, match="runner exploded"):
        run_playbook(make_run(project), settings())
    [record] = History(project.home / "toolkit.db").list()
    assert record.status == "error" and record.exit_code == 1
    assert record.note == "RuntimeError: runner exploded"
    assert not (project.runs / record.run_id / "env").exists()


# --- secrets --------------------------------------------------------------------------------------------------

CLI_SECRET = 'S3cr"et\\pw-9731'  # a quote and a backslash: its JSON-escaped forms differ from it
VAULT_SECRET = "vault-pass-7781"
ENV_SECRET = "aws-secret-value-4242"


def secret_forms() -> list[str]:
    forms = []
    for secret in (CLI_SECRET, VAULT_SECRET, ENV_SECRET):
        once = json.dumps(secret)[1:-1]
        forms += [secret, once, json.dumps(once)[1:-1]]
    return [*forms, "pw-9731"]


def leaky_run() -> list[fakes.Event]:
    """Events that carry the secrets the way Ansible would: in a templated task name, a message, the output."""
    return [
        fakes.play_start(f"Base with {CLI_SECRET}"),
        fakes.task_start("web-1", f"Connect as {CLI_SECRET}"),
        fakes.task_ok("web-1", f"Connect as {CLI_SECRET}", changed=True),
        fakes.task_failed("web-2", "Log in", f"login failed for {CLI_SECRET} / {VAULT_SECRET} / {ENV_SECRET}"),
        fakes.verbose(f"debug: password is {CLI_SECRET}"),
        fakes.recap(ok={"web-1": 1}, changed={"web-1": 1}, failures={"web-2": 1}),
    ]


def test_no_secret_survives_in_any_file_the_result_or_the_live_events(
    project: Project, fake_runner: InstallFake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    monkeypatch.setenv("TOOLKIT_VAULT_PASSWORD", VAULT_SECRET)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    fake = fake_runner(leaky_run(), status="failed")
    seen: list[RunEvent] = []
    run = make_run(project, extra_vars=parse_extra_vars([f"db_password={CLI_SECRET}", "base_timezone=UTC"]))

    result = run_playbook(run, settings(), observer=seen.append)

    # Ansible did get the values: through private files outside the run directory, gone after the run.
    [extra_file] = fake.extra_vars_files
    assert json.loads(extra_file.content) == {"db_password": CLI_SECRET, "base_timezone": "UTC"}
    assert extra_file.mode == 0o600
    assert extra_file.path.parent == runtime
    assert not extra_file.path.exists()
    [vault_file] = fake.vault_files
    assert vault_file.content == VAULT_SECRET
    assert not vault_file.path.exists()
    # ...and never through the run's environment.
    assert VAULT_SECRET not in json.dumps(fake.calls[0]["envvars"])

    # Every byte toolkit wrote: the run directory, the history database, anything else under TOOLKIT_HOME.
    written = [p for p in project.home.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in written)
    assert any(p.parent.name == "job_events" for p in written)
    for path in written:
        data = path.read_bytes()
        for form in secret_forms():
            assert form.encode() not in data, f"{form!r} in {path}"
    assert not (project.runs / result.run_id / "env").exists()

    document = json.dumps(result.to_dict())
    shown = repr(seen)
    for form in secret_forms():
        assert form not in document, form
        assert form not in shown, form
    # The redaction is visible where the secrets were, so the output still makes sense.
    assert result.changed[0].task == f"Connect as {artifacts.REDACTED}"
    assert artifacts.REDACTED in result.failed[0].message


def test_an_allow_listed_environment_is_recorded_for_debugging(
    project: Project, fake_runner: InstallFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_UNRELATED_VAR", "x")
    fake_runner(mixed_run())
    result = run_playbook(make_run(project), settings())
    assert result.artifacts is not None
    env = json.loads((result.artifacts / "command").read_text())["env"]
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert "SOME_UNRELATED_VAR" not in env
    assert env["TOOLKIT_HOME"] == str(project.home)


def test_the_history_database_is_a_plain_sqlite_file(project: Project, fake_runner: InstallFake) -> None:
    # Drift and metrics read it without toolkit: the schema is the contract.
    fake_runner(mixed_run(), status="failed")
    result = run_playbook(make_run(project), settings())
    with closing(sqlite3.connect(project.home / "toolkit.db")) as db:
        row = db.execute("SELECT kind, target, status, exit_code, changed FROM runs WHERE run_id = ?", (result.run_id,))
        assert row.fetchone() == ("converge", "base", "failed", 1, 1)
