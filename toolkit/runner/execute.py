"""Running a playbook through the ansible-runner library.

All ansible-runner keyword arguments are built in one function (``build_runner_kwargs``) so they
can be tested without running Ansible. ``run_playbook`` adds what every run gets: the inventory
lock, a fresh private data dir under the runs directory, history rows, scrubbing and rotation.
"""

import dataclasses
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.exit_codes import ExitCode
from toolkit.paths import StatePaths, project_root
from toolkit.runner import artifacts
from toolkit.runner.events import (
    ChangedItem,
    OutputText,
    PlayStarted,
    RunEvent,
    RunTracker,
    TaskResult,
    TaskStarted,
    parse_event,
    stats_from_runner,
)
from toolkit.runner.extravars import ExtraVars, extra_vars_arguments
from toolkit.runner.history import History
from toolkit.runner.inventory import ResolvedInventory
from toolkit.runner.lock import InventoryLock
from toolkit.runner.result import BATCH_GATE_TASK, HostSummary, RunResult, TaskRef, decide_exit_code
from toolkit.runner.strategy import DEFAULT as DEFAULT_STRATEGY
from toolkit.runner.strategy import strategy_environment, strategy_from_env
from toolkit.timestamps import utc_iso

Observer = Callable[[RunEvent], None]
DEFAULT_KEEP_RUNS = 30


@dataclass(frozen=True)
class PlaybookRun:
    """What to run, as the user asked for it (already validated)."""

    kind: str  # converge, drift, ...: recorded in the history
    target: str  # the service name
    playbook: Path
    inventory: ResolvedInventory
    tags: str | None = None
    skip_tags: str | None = None
    check: bool = False
    diff: bool = False
    extra_vars: ExtraVars = field(default_factory=ExtraVars)
    forks: int | None = None
    verbosity: int = 0
    vault_password_file: Path | None = None
    color: bool = False
    note: str | None = None


@dataclass(frozen=True)
class RunSettings:
    """Where runs go, how many are kept, and the Ansible strategy they use."""

    state: StatePaths
    keep_runs: int = DEFAULT_KEEP_RUNS
    strategy: str = DEFAULT_STRATEGY
    lock_wait: float = 0.0  # seconds to wait for another run's inventory lock; 0 refuses at once

    @classmethod
    def from_env(cls, state: StatePaths, lock_wait: float = 0.0) -> "RunSettings":
        """TOOLKIT_KEEP_RUNS and TOOLKIT_STRATEGY.

        Raises:
            UsageError: TOOLKIT_STRATEGY names a strategy that does not exist or is not installed.
        """
        raw = os.environ.get("TOOLKIT_KEEP_RUNS", "")
        keep = int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_KEEP_RUNS
        return cls(state=state, keep_runs=keep, strategy=strategy_from_env(), lock_wait=lock_wait)


def playbook_arguments(run: PlaybookRun, vault_password_file: Path | None) -> list[str]:
    """ansible-playbook arguments that ansible-runner has no keyword for."""
    args: list[str] = []
    if run.check:
        args.append("--check")
    if run.diff:
        args.append("--diff")
    if vault_password_file is not None:
        args += ["--vault-password-file", str(vault_password_file)]
    return args


def runner_environment(run: PlaybookRun) -> dict[str, str]:
    # ansible-playbook is found on PATH: make it the one installed beside this interpreter, so
    # `.venv/bin/toolkit` works without an activated virtualenv.
    interpreter_bin = str(Path(sys.executable).parent)
    return {
        "PATH": os.pathsep.join([interpreter_bin, os.environ.get("PATH", "")]),
        "ANSIBLE_CONFIG": str(project_root() / "ansible.cfg"),
        # ansible-runner turns host key checking off unless told otherwise; we never want that.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_FORCE_COLOR": "1" if run.color else "0",
        "ANSIBLE_NOCOLOR": "0" if run.color else "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }


def build_runner_kwargs(
    run: PlaybookRun,
    run_dir: artifacts.RunDirectory,
    extra_args: list[str],
    *,
    event_handler: Callable[[dict[str, Any]], bool],
    cancel_callback: Callable[[], bool],
    strategy: str = DEFAULT_STRATEGY,
) -> dict[str, Any]:
    """The complete keyword arguments for ``ansible_runner.run_async``."""
    kwargs: dict[str, Any] = {
        "private_data_dir": str(run_dir.private_data_dir),
        "ident": run_dir.run_id,
        # cwd = the project, so ansible.cfg, roles/ and group_vars resolve as with ansible-playbook.
        "project_dir": str(project_root()),
        "playbook": str(run.playbook),
        "inventory": str(run.inventory.source),
        "envvars": runner_environment(run) | strategy_environment(strategy),
        "cmdline": shlex.join(extra_args) if extra_args else None,
        "quiet": True,
        "suppress_env_files": True,
        # Any value but "jsonfile" stops runner from pointing the fact cache into this run's
        # artifacts, so the cache configured in ansible.cfg is shared across runs.
        "fact_cache_type": "ansible.cfg",
        "rotate_artifacts": 0,  # we rotate whole run directories ourselves
        "event_handler": event_handler,
        "cancel_callback": cancel_callback,
    }
    if run.inventory.limit:
        kwargs["limit"] = run.inventory.limit
    if run.tags:
        kwargs["tags"] = run.tags
    if run.skip_tags:
        kwargs["skip_tags"] = run.skip_tags
    if run.forks:
        kwargs["forks"] = run.forks
    if run.verbosity:
        kwargs["verbosity"] = run.verbosity
    return {key: value for key, value in kwargs.items() if value is not None}


@contextmanager
def _vault_password_file(run: PlaybookRun) -> Iterator[tuple[Path | None, list[str]]]:
    """The vault password file to pass, and the secret values to scrub from artifacts.

    TOOLKIT_VAULT_PASSWORD is written to a private temporary file (never into the run's env) and
    removed after the run.
    """
    if run.vault_password_file is not None:
        yield run.vault_password_file, []
        return
    password = os.environ.get("TOOLKIT_VAULT_PASSWORD")
    if not password:
        yield None, []
        return
    directory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    fd, name = tempfile.mkstemp(prefix="toolkit-vault-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(password)
        yield Path(name), [password]
    finally:
        Path(name).unlink(missing_ok=True)


def run_playbook(
    run: PlaybookRun,
    settings: RunSettings,
    *,
    observer: Observer | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Run one playbook under the inventory lock and return its result.

    Raises:
        LockHeldError: another run holds the inventory's lock (nothing ran).
    """
    import ansible_runner

    cancel = cancel or threading.Event()
    history = History(settings.state.history_db)
    command = f"{run.kind} {run.target}" + (" --check" if run.check else "")
    with ExitStack() as stack:
        stack.enter_context(InventoryLock(settings.state.locks, run.inventory.lock_key, command, settings.lock_wait))
        run_dir = artifacts.create(settings.state.runs)
        started = time.time()
        history.record_start(
            run_id=run_dir.run_id,
            kind=run.kind,
            target=run.target,
            inventory=str(run.inventory.source),
            limit=run.inventory.limit,
            check=run.check,
            started_at=utc_iso(started),
            artifacts=str(run_dir.artifacts),
            note=run.note,
        )
        vault_file, vault_secrets = stack.enter_context(_vault_password_file(run))
        extra_args = stack.enter_context(extra_vars_arguments(run.extra_vars))
        secrets = [
            *run.extra_vars.secret_values(),
            *vault_secrets,
            *artifacts.secret_env_values(dict(os.environ)),
        ]
        tracker = RunTracker()
        observer_errors: list[BaseException] = []

        def on_event(raw: dict[str, Any]) -> bool:
            now = time.time()
            for parsed in parse_event(raw):
                # Redact before anything sees the event: the live view prints it immediately.
                event = _redacted_event(parsed, secrets)
                tracker.observe(event, now)
                if observer is not None and not observer_errors:
                    try:
                        observer(event)
                    except Exception as exc:  # a display problem must not break the run
                        observer_errors.append(exc)
            return True

        kwargs = build_runner_kwargs(
            run,
            run_dir,
            [*playbook_arguments(run, vault_file), *extra_args],
            event_handler=on_event,
            cancel_callback=cancel.is_set,
            strategy=settings.strategy,
        )
        try:
            thread, runner = ansible_runner.run_async(**kwargs)
            while thread.is_alive():
                thread.join(0.2)
        except Exception as exc:
            # ansible-runner itself broke: close the history row and scrub before the error boundary reports it.
            artifacts.scrub(run_dir, secrets)
            history.finish(
                run_dir.run_id,
                finished_at=utc_iso(),
                duration=time.time() - started,
                status="error",
                exit_code=int(ExitCode.TASK_FAILED),
                counts=(0, 0, 0, 0, 0),
                detail={},
                error=artifacts.redact(f"{type(exc).__name__}: {exc}", secrets),
            )
            raise
        duration = time.time() - started
        artifacts.scrub(run_dir, secrets)
        stats = tracker.stats if tracker.stats is not None else stats_from_runner(runner.stats)
        status = str(runner.status)
        gate_stopped = any(failure.task == BATCH_GATE_TASK for failure in tracker.failed)
        exit_code = decide_exit_code(status, stats, canceled=cancel.is_set(), gate_stopped=gate_stopped)
        error = ""
        if not stats and status != "successful" and not cancel.is_set():
            error = artifacts.redact(_tail(runner), secrets)
        result = RunResult(
            run_id=run_dir.run_id,
            kind=run.kind,
            target=run.target,
            inventory=str(run.inventory.source),
            limit=run.inventory.limit,
            check=run.check,
            status=status,
            exit_code=exit_code,
            started_at=utc_iso(started),
            duration=duration,
            hosts={
                name: HostSummary(stats=host_stats, duration=tracker.host(name).duration)
                for name, host_stats in stats.items()
            },
            changed=[TaskRef.of(r) for r in tracker.changed],
            notes=[TaskRef.of(r) for r in tracker.notes],
            failed=[TaskRef.of(r) for r in tracker.failed],
            unreachable=[TaskRef.of(r) for r in tracker.unreachable],
            artifacts=run_dir.artifacts,
            error=error,
        )
        history.record_finish(result, utc_iso())
        artifacts.rotate(
            settings.state.runs, settings.keep_runs, current=run_dir.run_id, active=history.active_run_ids()
        )
        return result
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack never swallows


def _redacted_event(event: RunEvent, secrets: list[str]) -> RunEvent:
    # Ansible templates play and task names with extra vars ("Connect as {{ db_password }}"): names too.
    if isinstance(event, OutputText):
        return OutputText(artifacts.redact(event.text, secrets))
    if isinstance(event, PlayStarted):
        return PlayStarted(artifacts.redact(event.name, secrets))
    if isinstance(event, TaskStarted):
        return dataclasses.replace(event, task=artifacts.redact(event.task, secrets))
    if isinstance(event, TaskResult):
        return dataclasses.replace(
            event,
            task=artifacts.redact(event.task, secrets),
            message=artifacts.redact(event.message, secrets),
            diff=artifacts.redact(event.diff, secrets),
            items=tuple(
                ChangedItem(artifacts.redact(item.label, secrets), artifacts.redact(item.diff, secrets))
                for item in event.items
            ),
        )
    return event


def _tail(runner: Any, lines: int = 5) -> str:
    """The last lines ansible-playbook printed: the reason when it failed before any host ran."""
    try:
        text = runner.stdout.read()
    except Exception:
        return ""
    useful = [line.strip() for line in str(text).splitlines() if line.strip()]
    return " | ".join(useful[-lines:])
