#!/usr/bin/env python3
"""A no-change run over the fleet, stock Ansible against the project's settings, at two fleet sizes.

The lab's bench profile (`toolkit lab up --profile bench`: 20 small hosts) is converged with `site` once,
untimed; then, for each fleet size (the first N hosts of the inventory, by --limit), each way of running
the same `site` playbook over the same hosts is timed, one after the other, in rounds:

  stock      ansible-playbook with Ansible's stock settings: a config that only says where the project's
             roles and plugins are (forks 5, no pipelining, facts gathered by every play)
  project    ansible-playbook with the project's ansible.cfg (pipelining, 20 forks, smart fact cache)
  toolkit    toolkit converge site (the project's settings and Mitogen's strategy, toolkit's defaults,
             through ansible-runner, history, metrics)
  linear     toolkit converge site with TOOLKIT_STRATEGY=linear (Ansible's stock strategy)
  drift      toolkit drift site (check + diff of every host, triage, history, metrics)
  drift-linear  the same with TOOLKIT_STRATEGY=linear

Every run must report 0 changed (a change would mean the fleet did not match the code: the figures would
not be comparable), and SSH connections are closed before each run, so no way of running inherits
another's connections. For each run: wall time, the controller's CPU time (user + system of every process
the run started) and the peak resident memory of its process tree (sampled every 0.2 s).

Usage: benchmarks/fleet.py [--sizes 6,20] [--rounds 1] [--modes stock,project,toolkit,...] [--json]
Exit status: 0 when toolkit converge is at least --min-speedup (7) times faster than stock at every size
and drift within --max-drift-ratio (1.2) of it; 1 when not; 2 when a run fails or changes something.
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from proctree import rss_kb, tree  # beside this script (sys.path[0])

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODES = ("stock", "project", "toolkit", "linear", "drift", "drift-linear")
STOCK_CFG = f"""# Ansible's stock settings; only where this project's roles and plugins are, so the playbooks load.
[defaults]
roles_path = {PROJECT}/roles
inventory_plugins = {PROJECT}/plugins/inventory
filter_plugins = {PROJECT}/plugins/filter
doc_fragment_plugins = {PROJECT}/plugins/doc_fragments
"""
PLAYBOOK_MODES = ("stock", "project")  # plain ansible-playbook; the others are toolkit commands with --json
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class Measurement:
    mode: str
    hosts: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float


class TreeMemory:
    """Peak summed RSS of a process and all its descendants, read from /proc while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_kb = max(self.peak_kb, sum(rss_kb(pid) for pid in tree(self.pid)))


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def limit_for(size: int) -> str:
    return f"all[0:{size - 1}]"


def close_ssh_connections() -> None:
    """End every SSH control master a previous run left (ControlPersist), so each run connects afresh."""
    subprocess.run(["pkill", "-f", r"ssh: .*\[mux\]"], check=False)
    time.sleep(0.5)


def command_for(mode: str, limit: str, inventory: str, stock_cfg: Path, textfiles: str) -> tuple[list[str], dict]:
    env = dict(os.environ, NO_COLOR="1", ANSIBLE_NOCOLOR="1")
    env.pop("TOOLKIT_STRATEGY", None)
    if mode in PLAYBOOK_MODES:
        env["ANSIBLE_CONFIG"] = str(stock_cfg if mode == "stock" else PROJECT / "ansible.cfg")
        return [str(BIN / "ansible-playbook"), "-i", inventory, "--limit", limit, "playbooks/site.yml"], env
    if mode.endswith("linear"):
        env["TOOLKIT_STRATEGY"] = "linear"
    verb = "drift" if mode.startswith("drift") else "converge"
    toolkit = [str(BIN / "toolkit"), verb, "site", "-i", inventory, "--limit", limit, "--textfile-dir", textfiles]
    return [*toolkit, "--json"], env


def changed_hosts(mode: str, output: str) -> int:
    """How many hosts reported a change (or, for drift, drifted): must be 0 for a no-change run."""
    if mode in PLAYBOOK_MODES:
        return sum(1 for match in RECAP.finditer(output) if int(match.group(3)) or int(match.group(5)))
    document = json.loads(output)
    if mode.startswith("drift"):
        return sum(1 for host in document["hosts"].values() if host["drifted"])
    return sum(1 for stats in document["hosts"].values() if stats.get("changed"))


def measure(mode: str, size: int, args: argparse.Namespace, stock_cfg: Path, textfiles: str) -> Measurement:
    command, env = command_for(mode, limit_for(size), args.inventory, stock_cfg, textfiles)
    close_ssh_connections()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(process.pid)
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - start
    peak = memory.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        tail = " | ".join((stderr or stdout).strip().splitlines()[-4:])
        fail(f"{mode} on {size} hosts exited {process.returncode}: {tail}")
    changed = changed_hosts(mode, stdout)
    if changed:
        fail(f"{mode} on {size} hosts: {changed} host(s) changed or drifted; converge site first")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measurement(mode, size, seconds, cpu, peak)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="6,20", help="fleet sizes (the first N inventory hosts)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--inventory", default=str(PROJECT / "inventories" / "lab"))
    parser.add_argument("--skip-converge", action="store_true", help="the fleet is converged already")
    parser.add_argument("--min-speedup", type=float, default=7.0)
    parser.add_argument("--max-drift-ratio", type=float, default=1.2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(modes) - set(MODES):
        fail(f"unknown mode(s): {', '.join(sorted(unknown))} (known: {', '.join(MODES)})")
    sizes = sorted(int(size) for size in args.sizes.split(","))
    textfiles = tempfile.mkdtemp(prefix="fleet-bench-")  # keep the benchmark's metrics out of the real ones
    with tempfile.TemporaryDirectory(prefix="fleet-bench-cfg-") as scratch:
        stock_cfg = Path(scratch) / "ansible.cfg"
        stock_cfg.write_text(STOCK_CFG)
        if not args.skip_converge:
            print(f"converging site on the first {sizes[-1]} hosts (untimed)…", file=sys.stderr)
            converge = subprocess.run(
                [str(BIN / "toolkit"), "converge", "site", "-i", args.inventory, "--limit", limit_for(sizes[-1])],
                cwd=PROJECT,
                check=False,
                capture_output=True,
                text=True,
            )
            if converge.returncode != 0:
                fail(f"the untimed converge exited {converge.returncode}: {converge.stderr.strip().splitlines()[-1:]}")
        results: list[Measurement] = []
        for size in sizes:
            for round_number in range(1, args.rounds + 1):
                for mode in modes:
                    result = measure(mode, size, args, stock_cfg, textfiles)
                    results.append(result)
                    print(
                        f"{size:>3} hosts round {round_number} {mode:<14} {result.seconds:7.1f} s"
                        f"  cpu {result.cpu_seconds:7.1f} s  peak {result.peak_rss_mb:6.0f} MB",
                        file=sys.stderr,
                    )
    return report(results, modes, sizes, args)


def report(results: list[Measurement], modes: list[str], sizes: list[int], args: argparse.Namespace) -> int:
    def median(mode: str, size: int, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in results if r.mode == mode and r.hosts == size)

    rows = []
    print(f"\n{'hosts':>5} {'mode':<14} {'wall':>8} {'vs stock':>9} {'cpu':>8} {'peak RSS':>9}")
    for size in sizes:
        for mode in modes:
            wall = median(mode, size, "seconds")
            row = {
                "hosts": size,
                "mode": mode,
                "wall_s": round(wall, 2),
                "cpu_s": round(median(mode, size, "cpu_seconds"), 2),
                "peak_rss_mb": round(median(mode, size, "peak_rss_mb"), 1),
            }
            if "stock" in modes:
                row["speedup_vs_stock"] = round(median("stock", size, "seconds") / wall, 2)
            rows.append(row)
            speedup = f"{row['speedup_vs_stock']:>8.2f}x" if "speedup_vs_stock" in row else f"{'-':>9}"
            print(f"{size:>5} {mode:<14} {wall:>6.1f} s {speedup} {row['cpu_s']:>6.1f} s {row['peak_rss_mb']:>6.0f} MB")
    verdicts = []
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"\ngrowth from {small} to {large} hosts ({large / small:.2f}x the hosts):")
        for mode in modes:
            growth = median(mode, large, "seconds") / median(mode, small, "seconds")
            print(f"  {mode:<14} {growth:.2f}x the time")
    for size in sizes:
        if {"stock", "toolkit"} <= set(modes):
            speedup = median("stock", size, "seconds") / median("toolkit", size, "seconds")
            verdicts.append(speedup >= args.min_speedup)
            print(f"{size} hosts: toolkit converge {speedup:.2f}x faster than stock (target {args.min_speedup}x)")
        for converge, drift in (("toolkit", "drift"), ("linear", "drift-linear")):
            if {converge, drift} <= set(modes):
                ratio = median(drift, size, "seconds") / median(converge, size, "seconds")
                verdicts.append(ratio <= args.max_drift_ratio)
                print(f"{size} hosts: {drift} / {converge} = {ratio:.2f} (target <= {args.max_drift_ratio})")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
