#!/usr/bin/env python3
"""What one task costs a run, by kind of task, under the stock linear strategy and under Mitogen's.

A no-change run is a sum of tasks, and tasks do not cost the same: one that only runs on the controller (an
assert, a skipped task) is cheap under either strategy, one that starts a module on every host is not, and
Mitogen changes the second kind far more than the first. This benchmark times playbooks of N identical tasks
of one kind over the first hosts of the lab (ansible-playbook with the project's ansible.cfg), once per
strategy, side by side, and prints the cost of one task (and of one loop item) for the whole fleet. It is
what the advice in docs/performance.md ("fewer module runs, not fewer asserts") rests on.

  skipped   a command whose `when` is false        assert    an assert that holds
  command   a command that changes nothing          file      a file task that changes nothing
  loop      a file task over 5 items (cost per item)

Usage: benchmarks/task_costs.py [--hosts 6] [--tasks 50] [--inventory inventories/lab]
(needs lab hosts: `toolkit lab up --profile bench`; nothing on them changes.)
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOOP_ITEMS = 5
KINDS = {
    "skipped": "    - name: Skipped {i}\n      ansible.builtin.command: /bin/true\n      when: false\n",
    "assert": "    - name: Assert {i}\n      ansible.builtin.assert:\n        that: [1 == 1]\n        quiet: true\n",
    "command": "    - name: Command {i}\n      ansible.builtin.command: /bin/true\n      changed_when: false\n",
    "file": "    - name: File {i}\n      ansible.builtin.file:\n        path: /etc\n        state: directory\n",
    "loop": (
        "    - name: Loop {i}\n      ansible.builtin.file:\n        path: /etc\n        state: directory\n"
        f"      loop: {list(range(LOOP_ITEMS))}\n"
    ),
}


def playbook(kind: str, tasks: int) -> str:
    body = "".join(KINDS[kind].format(i=i) for i in range(tasks))
    return f"- hosts: all\n  gather_facts: false\n  become: true\n  tasks:\n{body}"


def mitogen_environment() -> dict[str, str]:
    import ansible_mitogen  # type: ignore[import-untyped]

    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}


def run(path: Path, strategy: str, args: argparse.Namespace) -> float:
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_DEPRECATION_WARNINGS="False")
    env.pop("ANSIBLE_STRATEGY", None)
    if strategy == "mitogen":
        env.update(mitogen_environment())
    command = [str(BIN / "ansible-playbook"), "-i", args.inventory, "--limit", f"all[0:{args.hosts - 1}]", str(path)]
    subprocess.run(["pkill", "-f", r"ssh: .*\[mux\]"], check=False)  # every run connects afresh
    start = time.perf_counter()
    done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    changed = [int(count) for count in re.findall(r"\bchanged=(\d+)", done.stdout)]
    if done.returncode != 0 or any(changed):
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise SystemExit(f"error: {path.stem} under {strategy} failed or changed something: {tail}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=50, help="tasks per playbook (loop: a fifth of them)")
    parser.add_argument("--inventory", default=str(PROJECT / "inventories" / "lab"))
    args = parser.parse_args()
    print(f"{'kind':<9} {'per task, linear':>17} {'per task, Mitogen':>18} {'Mitogen / linear':>17}")
    with tempfile.TemporaryDirectory() as directory:
        for kind in KINDS:
            tasks = max(1, args.tasks // LOOP_ITEMS) if kind == "loop" else args.tasks
            path = Path(directory) / f"{kind}.yml"
            path.write_text(playbook(kind, tasks))
            # An empty play measures what every run pays whatever its tasks (start-up, inventory, connections).
            empty = Path(directory) / "empty.yml"
            empty.write_text(playbook("skipped", 0).replace("  tasks:\n", "  tasks: []\n"))
            per = {}
            for strategy in ("linear", "mitogen"):
                base = run(empty, strategy, args)
                per[strategy] = (run(path, strategy, args) - base) / (tasks * (LOOP_ITEMS if kind == "loop" else 1))
            unit = "item" if kind == "loop" else "task"
            print(
                f"{kind:<9} {per['linear'] * 1000:>12.0f} ms/{unit:<4} {per['mitogen'] * 1000:>13.0f} ms/{unit:<4}"
                f" {per['mitogen'] / per['linear']:>16.2f}x"
            )
    print(f"({args.hosts} hosts, {args.tasks} tasks per playbook; the cost of one task for all the hosts together)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
