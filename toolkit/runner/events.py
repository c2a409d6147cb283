"""Typed views of ansible-runner's job events, and a tracker that aggregates them per host.

Only the fields toolkit shows or records are kept; the raw events stay in the run's artifacts.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from toolkit.runner.diffs import render_diff

ResultStatus = Literal["ok", "changed", "failed", "ignored", "unreachable", "skipped"]


@dataclass(frozen=True)
class PlayStarted:
    name: str


@dataclass(frozen=True)
class TaskStarted:
    host: str
    task: str


@dataclass(frozen=True)
class HandlerStarted:
    """A handler begins: its results are consequences of other tasks' changes, not resources of their own."""

    task_uuid: str


@dataclass(frozen=True)
class ChangedItem:
    """One changed item of a looped task (its label) and its diff."""

    label: str
    diff: str = ""


@dataclass(frozen=True)
class TaskResult:
    host: str
    task: str
    action: str
    status: ResultStatus
    message: str = ""
    duration: float | None = None
    # What drift needs to name a resource and show what differs; empty for most consumers.
    play: str = ""
    role: str = ""
    task_uuid: str = ""
    diff: str = ""  # unified text of Ansible's --diff output (redacted before anyone sees it)
    items: tuple[ChangedItem, ...] = ()
    censored: bool = False  # a no_log task: its result and diff were hidden by Ansible


@dataclass(frozen=True)
class HostStats:
    """One host's line of the play recap. As in Ansible, ``ok`` also counts changed results."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class PlaybookStats:
    hosts: dict[str, HostStats]


@dataclass(frozen=True)
class OutputText:
    """Ansible's own rendering of an event (shown with --verbose)."""

    text: str


RunEvent = PlayStarted | TaskStarted | HandlerStarted | TaskResult | PlaybookStats | OutputText

# ansible's stats keys -> ours
_STATS_KEYS = {
    "ok": "ok",
    "changed": "changed",
    "failures": "failed",
    "dark": "unreachable",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}


def stats_from_runner(raw: dict[str, Any] | None) -> dict[str, HostStats]:
    """Per-host stats from ansible-runner's ``runner.stats`` or a playbook_on_stats event."""
    if not raw:
        return {}
    hosts: set[str] = set()
    for key in (*_STATS_KEYS, "processed"):
        hosts.update((raw.get(key) or {}).keys())
    return {
        host: HostStats(**{ours: int((raw.get(theirs) or {}).get(host, 0)) for theirs, ours in _STATS_KEYS.items()})
        for host in sorted(hosts)
    }


VALIDATION_FAILED = "failed to validate"
NONZERO_RC = "non-zero return code"


def _message(res: dict[str, Any]) -> str:
    # A role's argument_specs failure says only "Validation of arguments failed:" on its first line; the
    # errors themselves (which variable, which value) are what the operator needs.
    errors = res.get("argument_errors")
    if isinstance(errors, list) and errors:
        return "; ".join(" ".join(str(error).split()) for error in errors)[:500]
    # A loop says only "One or more items failed"; the failed item's own message says what and why.
    items = res.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("failed"):
                message = _message(item)
                if message:
                    return message
    # A file refused by a task's `validate` command says only "failed to validate"; the validator's own words
    # (promtool's, sshd -t's) are on its stderr, and they are what the operator needs.
    if str(res.get("msg", "")).strip() == VALIDATION_FAILED:
        detail = " ".join(line.strip() for line in str(res.get("stderr") or res.get("stdout") or "").splitlines())
        detail = " ".join(word for word in detail.split() if word != "FAILED:")
        if detail:
            return f"{VALIDATION_FAILED}: {detail}"[:500]
    # A command that exits non-zero says only "non-zero return code"; what it printed on stderr says why.
    if str(res.get("msg", "")).strip() == NONZERO_RC and str(res.get("stderr") or "").strip():
        lines = [line.strip() for line in str(res["stderr"]).splitlines() if line.strip()]
        return f"{NONZERO_RC} {res.get('rc', '?')}: {' '.join(lines[-3:])}"[:500]
    for key in ("msg", "stderr", "reason"):
        value = res.get(key)
        if value:
            return str(value).strip().splitlines()[0][:500] if str(value).strip() else ""
    return ""


def _changed_items(res: dict[str, Any]) -> tuple[ChangedItem, ...]:
    """The changed items of a looped task's result, each with its label and diff."""
    items = res.get("results")
    if not isinstance(items, list):
        return ()
    changed: list[ChangedItem] = []
    for item in items:
        if not isinstance(item, dict) or not item.get("changed"):
            continue
        label = item.get("_ansible_item_label", item.get("item", ""))
        text = label if isinstance(label, str) else " ".join(str(label).split())
        changed.append(ChangedItem(label=text[:200], diff=render_diff(item.get("diff"))))
    return tuple(changed)


DEBUG_ACTIONS = frozenset({"debug", "ansible.builtin.debug", "ansible.legacy.debug"})


def _note(res: dict[str, Any]) -> str:
    """The message of a debug task, on one line (at most 1,000 characters)."""
    value = res.get("msg")
    if value is None or value == "":
        return ""
    text = value if isinstance(value, str) else str(value)
    return " ".join(text.split())[:1000]


def parse_event(raw: dict[str, Any]) -> list[RunEvent]:
    """Translate one ansible-runner event into zero or more typed events."""
    kind = raw.get("event", "")
    data: dict[str, Any] = raw.get("event_data") or {}
    parsed: list[RunEvent] = []
    text = raw.get("stdout") or ""
    if text.strip():
        parsed.append(OutputText(text))
    host = str(data.get("host") or data.get("remote_addr") or "")
    task = str(data.get("task") or "")
    action = str(data.get("resolved_action") or data.get("task_action") or "")
    res: dict[str, Any] = data.get("res") if isinstance(data.get("res"), dict) else {}  # type: ignore[assignment]
    duration = data.get("duration")
    duration = float(duration) if isinstance(duration, int | float) else None
    play, role, task_uuid = (str(data.get(key) or "") for key in ("play", "role", "task_uuid"))
    if kind == "playbook_on_play_start":
        parsed.append(PlayStarted(str(data.get("play") or data.get("name") or "")))
    elif kind == "playbook_on_task_start" and data.get("is_conditional"):
        # ansible-runner reuses this event for handlers and marks them is_conditional (Ansible 1's convention).
        parsed.append(HandlerStarted(str(data.get("uuid") or data.get("task_uuid") or "")))
    elif kind == "runner_on_start":
        parsed.append(TaskStarted(host=host, task=task))
    elif kind == "runner_on_ok":
        status: ResultStatus = "changed" if res.get("changed") else "ok"
        # A debug task's message is meant for the operator (e.g. "PENDING RESTART ..."): keep it.
        note = _note(res) if action in DEBUG_ACTIONS else ""
        parsed.append(
            TaskResult(
                host,
                task,
                action,
                status,
                note,
                duration,
                play=play,
                role=role,
                task_uuid=task_uuid,
                diff=render_diff(res.get("diff")) if status == "changed" else "",
                items=_changed_items(res) if status == "changed" else (),
                censored="censored" in res,
            )
        )
    elif kind == "runner_on_failed":
        status = "ignored" if data.get("ignore_errors") else "failed"
        parsed.append(
            TaskResult(host, task, action, status, _message(res), duration, play=play, role=role, task_uuid=task_uuid)
        )
    elif kind == "runner_on_unreachable":
        parsed.append(
            TaskResult(
                host, task, action, "unreachable", _message(res), duration, play=play, role=role, task_uuid=task_uuid
            )
        )
    elif kind == "runner_on_skipped":
        parsed.append(
            TaskResult(host, task, action, "skipped", "", duration, play=play, role=role, task_uuid=task_uuid)
        )
    elif kind == "playbook_on_stats":
        parsed.append(PlaybookStats(stats_from_runner(data)))
    return parsed


@dataclass
class HostProgress:
    """What the live view shows for one host while a run is going."""

    current_task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    first_seen: float | None = None
    last_seen: float | None = None

    @property
    def duration(self) -> float:
        if self.first_seen is None or self.last_seen is None:
            return 0.0
        return self.last_seen - self.first_seen


@dataclass
class RunTracker:
    """Aggregates typed events into per-host progress and the lists of changed and failed tasks."""

    hosts: dict[str, HostProgress] = field(default_factory=dict)
    changed: list[TaskResult] = field(default_factory=list)
    failed: list[TaskResult] = field(default_factory=list)
    unreachable: list[TaskResult] = field(default_factory=list)
    notes: list[TaskResult] = field(default_factory=list)
    stats: dict[str, HostStats] | None = None
    play: str = ""

    def host(self, name: str) -> HostProgress:
        return self.hosts.setdefault(name, HostProgress())

    def observe(self, event: RunEvent, now: float) -> None:
        if isinstance(event, PlayStarted):
            self.play = event.name
        elif isinstance(event, TaskStarted) and event.host:
            progress = self.host(event.host)
            progress.current_task = event.task
            progress.first_seen = progress.first_seen if progress.first_seen is not None else now
            progress.last_seen = now
        elif isinstance(event, TaskResult) and event.host:
            progress = self.host(event.host)
            progress.first_seen = progress.first_seen if progress.first_seen is not None else now
            progress.last_seen = now
            if event.status in ("ok", "changed", "ignored"):
                progress.ok += 1
                if event.message:
                    self.notes.append(event)
            if event.status == "changed":
                progress.changed += 1
                self.changed.append(event)
            elif event.status == "failed":
                progress.failed += 1
                self.failed.append(event)
            elif event.status == "unreachable":
                progress.unreachable += 1
                self.unreachable.append(event)
            elif event.status == "skipped":
                progress.skipped += 1
        elif isinstance(event, PlaybookStats):
            self.stats = event.hosts
