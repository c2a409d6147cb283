#!/usr/bin/env python3
"""Where a recorded run spent its time: the costliest tasks, roles and plays, from its job events.

Every toolkit run keeps ansible-runner's events under .toolkit/runs/<id>/artifacts/<id>/job_events. A task's
wall time is from its start to the next task's start (under the linear strategy every host finishes a task
before the next one begins, so that is what the task cost the run); its host time is the sum of the
per-host durations Ansible recorded (what it cost the hosts and the controller's forks).

Usage: benchmarks/profile_run.py [RUN_ID] [--top 15] [--json]   (default: the newest run)
"""

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
RUNS = PROJECT / ".toolkit" / "runs"
HOST_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")


@dataclass
class TaskCost:
    play: str
    role: str
    task: str
    wall: float = 0.0
    host_seconds: float = 0.0
    results: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def label(self) -> str:
        return f"{self.role or '(play)'} : {self.task}"


def events_of(run_id: str) -> list[dict]:
    directory = RUNS / run_id / "artifacts" / run_id / "job_events"
    if not directory.is_dir():
        raise SystemExit(f"no recorded events for run {run_id!r} in {directory}")
    files = sorted(directory.glob("*.json"), key=lambda path: int(path.name.split("-", 1)[0]))
    return [json.loads(path.read_text()) for path in files]


def when(event: dict) -> float:
    return datetime.fromisoformat(event["created"]).timestamp()


def task_costs(events: list[dict]) -> tuple[list[TaskCost], float]:
    tasks: list[TaskCost] = []
    by_uuid: dict[str, TaskCost] = {}
    current: tuple[TaskCost, float] | None = None
    play = ""
    for event in events:
        data = event.get("event_data", {})
        kind = event["event"]
        starts = kind in ("playbook_on_play_start", "playbook_on_task_start", "playbook_on_handler_task_start")
        if starts and current is not None:
            current[0].wall += when(event) - current[1]
            current = None
        if kind == "playbook_on_play_start":
            play = data.get("play", "")
        elif kind in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            cost = TaskCost(play, data.get("role", ""), data.get("task", ""))
            tasks.append(cost)
            by_uuid[data.get("task_uuid", "")] = cost
            current = (cost, when(event))
        elif kind in HOST_EVENTS and data.get("task_uuid") in by_uuid:
            cost = by_uuid[data["task_uuid"]]
            cost.host_seconds += float(data.get("duration") or 0)
            cost.results[kind.removeprefix("runner_on_")] += 1
        elif kind == "playbook_on_stats" and current is not None:
            current[0].wall += when(event) - current[1]
            current = None
    total = when(events[-1]) - when(events[0]) if events else 0.0
    return tasks, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id", nargs="?")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    run_id = args.run_id or max((path.name for path in RUNS.iterdir() if path.is_dir()), default=None)
    if run_id is None:
        raise SystemExit(f"no runs in {RUNS}")
    tasks, total = task_costs(events_of(run_id))
    roles: dict[str, float] = defaultdict(float)
    for task in tasks:
        roles[task.role or f"(play) {task.play}"] += task.wall
    skipped = sum(1 for task in tasks if task.results and set(task.results) == {"skipped"})
    print(f"run {run_id}: {total:.1f} s, {len(tasks)} tasks ({skipped} skipped on every host)")
    print(f"\n{'wall':>7} {'share':>6} {'host s':>7}  task")
    for task in sorted(tasks, key=lambda t: t.wall, reverse=True)[: args.top]:
        print(f"{task.wall:>6.1f}s {task.wall / total:>6.1%} {task.host_seconds:>7.1f}  {task.label}"[:160])
    print(f"\n{'wall':>7} {'share':>6}  role")
    for role, wall in sorted(roles.items(), key=lambda item: item[1], reverse=True):
        print(f"{wall:>6.1f}s {wall / total:>6.1%}  {role}")
    if args.json:
        rows = [
            {"role": t.role, "task": t.task, "wall_s": round(t.wall, 3), "host_s": round(t.host_seconds, 3)}
            for t in tasks
        ]
        print(json.dumps({"run_id": run_id, "total_s": round(total, 3), "tasks": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
