#!/usr/bin/env python3
"""What `toolkit heal serve` costs and how fast it acts: start-up, memory, notification -> finished converge.

Runs the real rulebook (rulebooks/heal.yml under ansible-rulebook and its JVM) on loopback against a scratch
project whose hosts are local connections and whose `base` playbook does nothing, so the figures are the
remediation path's own: webhook, rule engine, run_playbook, the nested `toolkit converge`, the history row.
Each round posts one drift alert for another host and waits for its converge to finish.

Usage:
  benchmarks/heal.py [--rounds 5] [--json]
Needs nothing but scripts/setup (ansible-rulebook and a Java runtime). Exit status: 0, or 1 when a round did not
converge within a minute, 2 on bad usage. Traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from proctree import tree_rss_mb  # beside this script (sys.path[0])

PROJECT = Path(__file__).resolve().parents[1]
TOOLKIT = PROJECT / ".venv" / "bin" / "toolkit"
TOKEN = "benchmark-heal-token-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scratch_project(root: Path, hosts: int) -> Path:
    (root / "playbooks").mkdir(parents=True)
    shutil.copytree(PROJECT / "rulebooks", root / "rulebooks")
    shutil.copy(PROJECT / "playbooks" / "_heal.yml", root / "playbooks" / "_heal.yml")
    (root / "playbooks" / "base.yml").write_text(
        "- name: Base\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Nothing\n      ansible.builtin.meta: noop\n"
    )
    (root / "ansible.cfg").write_text("[defaults]\n")
    inventory = root / "inventory.yml"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    members = {f"bench-{i:02d}": None for i in range(1, hosts + 1)}
    inventory.write_text(yaml.safe_dump({"all": {"vars": local, "children": {"bench": {"hosts": members}}}}))
    return inventory


def post(url: str, host: str) -> None:
    labels = {"alertname": "ToolkitDriftDetected", "host": host, "service": "base"}
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{host="{host}"}}',
        "status": "firing",
        "commonLabels": labels,
        "groupLabels": labels,
        "alerts": [{"status": "firing", "labels": labels}],
    }
    request = urllib.request.Request(
        f"{url}/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def finished_converges(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database) as db:
        try:
            return int(db.execute("SELECT count(*) FROM runs WHERE finished_at IS NOT NULL").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="toolkit-heal-bench-") as scratch:
        root, home = Path(scratch) / "project", Path(scratch) / "home"
        inventory = scratch_project(root, args.rounds)
        port = free_port()
        env = {
            **os.environ,
            "TOOLKIT_PROJECT": str(root),
            "TOOLKIT_HOME": str(home),
            "TOOLKIT_PLAYBOOK_DIR": str(root / "playbooks"),
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            "TOOLKIT_HEAL_TOKEN": TOKEN,
        }
        started = time.perf_counter()
        server = subprocess.Popen(
            [str(TOOLKIT), "heal", "serve", "-i", str(inventory), "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if server.poll() is not None or time.perf_counter() - started > 120:
                        print("toolkit heal serve did not start", file=sys.stderr)
                        return 1
                    time.sleep(0.05)
            startup = time.perf_counter() - started
            idle_rss = tree_rss_mb(server.pid)
            latencies: list[float] = []
            peak_rss = idle_rss
            database = home / "toolkit.db"
            for round_number in range(1, args.rounds + 1):
                sent = time.perf_counter()
                post(f"http://127.0.0.1:{port}", f"bench-{round_number:02d}")
                while finished_converges(database) < round_number:
                    peak_rss = max(peak_rss, tree_rss_mb(server.pid))
                    if time.perf_counter() - sent > 60:
                        print(f"round {round_number}: no converge within 60 s", file=sys.stderr)
                        return 1
                    time.sleep(0.05)
                latencies.append(time.perf_counter() - sent)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    figures: dict[str, Any] = {
        "startup_seconds": round(startup, 2),
        "idle_rss_mb": round(idle_rss, 1),
        "peak_rss_mb": round(peak_rss, 1),
        "notification_to_finished_converge_seconds": [round(x, 2) for x in latencies],
        "median_seconds": round(statistics.median(latencies), 2),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"start-up (spawn -> webhook listening)   {figures['startup_seconds']:.2f} s")
        print(f"resident memory, idle / peak            {idle_rss:.0f} MB / {peak_rss:.0f} MB (whole process tree)")
        print(
            "notification -> converge finished      "
            + ", ".join(f"{x:.2f}" for x in latencies)
            + f" s (median {figures['median_seconds']:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
