"""A stand-in for ``ansible_runner.run_async`` and builders of the job events ansible-runner emits; and what a
fake Prometheus query API answers (served on loopback by conftest's ``prometheus`` fixture).

The event dicts copy the shape of ansible-runner 2.4 events recorded from a real run (top-level ``event``,
``stdout``, ``counter``, ``uuid``; ``event_data`` with ``host``, ``task``, ``resolved_action``, ``res``,
``duration``). The fake runs in a thread, calls ``event_handler`` for every event, honours
``cancel_callback`` between events, and writes the artifacts a real run leaves behind (``command`` with the
whole environment, ``job_events/``, ``stdout``, ``status``, ``rc``) so scrubbing has real work to do.
"""

import io
import itertools
import json
import os
import re
import shlex
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Event = dict[str, Any]
_counter = itertools.count(1)


def _event(kind: str, stdout: str = "", **data: Any) -> Event:
    return {
        "uuid": str(uuid.uuid4()),
        "counter": next(_counter),
        "stdout": stdout,
        "event": kind,
        "pid": 4242,
        "created": "2026-11-25T04:15:00.000000+00:00",
        "event_data": {"playbook": "base.yml", "play": "Base", "play_pattern": "all", **data},
    }


def _task(host: str, task: str, action: str) -> dict[str, Any]:
    return {"host": host, "task": task, "task_action": action, "resolved_action": action, "task_path": "base.yml:5"}


def play_start(name: str) -> Event:
    return _event("playbook_on_play_start", f"\r\nPLAY [{name}] ****", play=name, name=name, pattern="all")


def task_start(host: str, task: str, action: str = "ansible.builtin.command") -> Event:
    return _event("runner_on_start", "", **_task(host, task, action))


def task_ok(
    host: str,
    task: str,
    *,
    changed: bool = False,
    action: str = "ansible.builtin.command",
    res: dict[str, Any] | None = None,
    **context: Any,
) -> Event:
    """A task's result; ``res`` adds to the module's result (diff, results of a loop), ``context`` to
    event_data (play, role, task_uuid)."""
    word = "changed" if changed else "ok"
    result = {"changed": changed, "msg": "", "_ansible_no_log": False, **(res or {})}
    return _event(
        "runner_on_ok",
        f"{word}: [{host}]",
        **_task(host, task, action),
        remote_addr=host,
        res=result,
        duration=0.25,
        **context,
    )


def handler_start(task: str, task_uuid: str) -> Event:
    """ansible-runner's event for a handler: playbook_on_task_start marked is_conditional."""
    return _event(
        "playbook_on_task_start", f"\r\nRUNNING HANDLER [{task}]", name=task, uuid=task_uuid, is_conditional=True
    )


def task_failed(
    host: str, task: str, msg: str, *, ignore_errors: bool = False, action: str = "ansible.builtin.command"
) -> Event:
    res = {"msg": msg, "changed": False, "_ansible_no_log": False}
    # Ansible's own rendering: the result as JSON inside the event's stdout (so values appear escaped).
    stdout = f"fatal: [{host}]: FAILED! => {json.dumps(res)}" + ("\r\n...ignoring" if ignore_errors else "")
    return _event(
        "runner_on_failed",
        stdout,
        **_task(host, task, action),
        remote_addr=host,
        res=res,
        duration=0.5,
        ignore_errors=True if ignore_errors else None,
    )


def task_unreachable(host: str, task: str, msg: str) -> Event:
    res = {"msg": msg, "unreachable": True, "changed": False}
    return _event(
        "runner_on_unreachable",
        f"fatal: [{host}]: UNREACHABLE! => {json.dumps(res)}",
        **_task(host, task, "ansible.builtin.ping"),
        remote_addr=host,
        res=res,
        duration=30.0,
    )


def task_skipped(host: str, task: str) -> Event:
    return _event("runner_on_skipped", f"skipping: [{host}]", **_task(host, task, "ansible.builtin.debug"))


def verbose(text: str) -> Event:
    """What ansible-runner emits for output outside any task (e.g. a playbook syntax error)."""
    return {"uuid": str(uuid.uuid4()), "counter": next(_counter), "stdout": text, "event": "verbose", "event_data": {}}


def recap(**per_key: dict[str, int]) -> Event:
    """playbook_on_stats with ansible's keys: ok, changed, failures, dark, skipped, rescued, ignored."""
    keys = ("changed", "dark", "failures", "ignored", "ok", "rescued", "skipped")
    data: dict[str, Any] = {key: dict(per_key.get(key, {})) for key in keys}
    data["processed"] = dict.fromkeys(set().union(*(d.keys() for d in per_key.values())), 1)
    lines = "\r\n".join(f"{host} : ok={data['ok'].get(host, 0)}" for host in sorted(data["processed"]))
    return _event("playbook_on_stats", f"\r\nPLAY RECAP ****\r\n{lines}", **data, artifact_data={})


class FakeRunner:
    """What ``run_async`` returns as its second element: status, rc, stats and stdout, as ansible-runner's Runner."""

    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.status = "starting"
        self.rc: int | None = None
        self.events: list[Event] = []

    @property
    def stats(self) -> dict[str, Any] | None:
        recaps = [e for e in self.events if e.get("event") == "playbook_on_stats"]
        if not recaps:
            return None
        data = recaps[0]["event_data"]
        keys = ("skipped", "ok", "dark", "failures", "ignored", "rescued", "processed", "changed")
        return {key: data.get(key, {}) for key in keys}

    @property
    def stdout(self) -> io.StringIO:
        # Like ansible-runner, a fresh handle on the artifacts' stdout file (read after toolkit scrubbed it).
        return io.StringIO((self.artifacts / "stdout").read_text())


@dataclass
class HandedFile:
    """A file toolkit handed to Ansible on the command line, as it was while the run was going."""

    path: Path
    content: str
    mode: int


@dataclass
class FakeAnsibleRunner:
    """Replaces ``ansible_runner.run_async``; one instance per test, inspected afterwards."""

    events: list[Event]
    status: str = "successful"
    calls: list[dict[str, Any]] = field(default_factory=list)
    extra_vars_files: list[HandedFile] = field(default_factory=list)
    vault_files: list[HandedFile] = field(default_factory=list)
    runner: FakeRunner | None = None
    on_event: Callable[[Event], None] | None = None
    # One list of events per call, in order (a command that runs several playbooks); else ``events`` every time.
    script: list[list[Event]] | None = None

    def __call__(self, **kwargs: Any) -> tuple[threading.Thread, FakeRunner]:
        self.calls.append(kwargs)
        self._record_handed_files(shlex.split(kwargs.get("cmdline") or ""))
        artifacts = Path(kwargs["private_data_dir"]) / "artifacts" / kwargs["ident"]
        artifacts.mkdir(parents=True)
        runner = self.runner = FakeRunner(artifacts)
        thread = threading.Thread(target=self._run, args=(kwargs, runner), daemon=True)
        thread.start()
        return thread, runner

    def _record_handed_files(self, args: list[str]) -> None:
        for flag, value in itertools.pairwise(args):
            if flag == "-e" and value.startswith("@"):
                path = Path(value[1:])
                self.extra_vars_files.append(HandedFile(path, path.read_text(), path.stat().st_mode & 0o777))
            elif flag == "--vault-password-file":
                path = Path(value)
                self.vault_files.append(HandedFile(path, path.read_text(), path.stat().st_mode & 0o777))

    def _run(self, kwargs: dict[str, Any], runner: FakeRunner) -> None:
        artifacts = runner.artifacts
        # ansible-runner records its whole process environment here, whatever suppress_env_files says.
        command = ["ansible-playbook", *shlex.split(kwargs.get("cmdline") or ""), kwargs["playbook"]]
        environment = {**os.environ, **kwargs.get("envvars", {})}
        recorded = {"command": command, "cwd": kwargs["project_dir"], "env": environment}
        (artifacts / "command").write_text(json.dumps(recorded))
        (artifacts / "job_events").mkdir()
        status = self.status
        stdout: list[str] = []
        runner.status = "running"
        events = self.script[len(self.calls) - 1] if self.script else self.events
        for event in events:
            if kwargs["cancel_callback"]():
                status = "canceled"
                break
            event = {**event, "runner_ident": kwargs["ident"]}
            if self.on_event is not None:
                self.on_event(event)
            keep = kwargs["event_handler"](event)
            runner.events.append(event)
            if keep is not False:
                name = f"{event['counter']}-{event['uuid']}.json"
                (artifacts / "job_events" / name).write_text(json.dumps(event))
            if event.get("stdout"):
                stdout.append(event["stdout"])
        (artifacts / "stdout").write_text("\n".join(stdout))
        (artifacts / "status").write_text(status)
        runner.rc = {"successful": 0, "canceled": 254}.get(status, 2)
        (artifacts / "rc").write_text(str(runner.rc))
        runner.status = status


# A label matcher of a PromQL selector: name, operator (= or =~), the string's content (PromQL escapes).
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"')


def _selector_matches(query: str, labels: dict[str, str]) -> bool:
    """Whether labels satisfy every matcher of the query's first selector (a missing label is "")."""
    selector = query[query.index("{") + 1 : query.index("}")]
    for name, operator, raw in _MATCHER.findall(selector):
        wanted = raw.replace("\\\\", "\\")  # the PromQL string's escaped backslashes, as the regex sees them
        value = labels.get(name, "")
        if not (re.fullmatch(wanted, value) if operator == "=~" else value == wanted):
            return False
    return True


@dataclass
class FakePrometheus:
    """Alerts, down targets and recorded series a test plants; every request is kept (path, query, headers).

    ALERTS{...} and up{...} == 0 apply the query's own label matchers, as Prometheus would."""

    alerts: list[dict[str, str]] = field(default_factory=list)
    down_targets: list[dict[str, str]] = field(default_factory=list)
    series: dict[str, list[tuple[dict[str, str], str]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    status: int = 200
    url: str = ""

    def fire(self, alertname: str, slo: str = "", service: str = "", **labels: str) -> None:
        self.alerts.append({"alertname": alertname, "alertstate": "firing", "slo": slo, "service": service, **labels})

    def down(self, job: str, instance: str) -> None:
        self.down_targets.append({"__name__": "up", "job": job, "instance": instance})

    def answer(self, query: str) -> list[dict[str, Any]]:
        if query.startswith("ALERTS{"):
            return [
                {"metric": {"__name__": "ALERTS", **a}, "value": [0, "1"]}
                for a in self.alerts
                if _selector_matches(query, a)
            ]
        if query.startswith("up{") and query.endswith("== 0"):
            return [{"metric": t, "value": [0, "0"]} for t in self.down_targets if _selector_matches(query, t)]
        return [{"metric": labels, "value": [0, value]} for labels, value in self.series.get(query, [])]
