#!/usr/bin/env python3
"""What an hourly drift check costs next to the no-change converge of the same hosts (target: at most 1.2x).

For each service: one converge first (untimed: the fleet must match the code, or the two would not do
the same work), then rounds alternating `toolkit converge SERVICE` (no change) and `toolkit drift SERVICE`
(check + diff, triage, history, metrics), so that a drift in the hosts' load hits both. Prints each
round, the medians, and drift/converge as a ratio; the wall time includes everything the command does.

Usage: benchmarks/drift_vs_converge.py [--services base,node_exporter] [--rounds 3] [--inventory DIR] [--json]
Exit status: 0 when every ratio is within --max-ratio (1.2), 1 otherwise, 2 when a run fails or drifts.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TOOLKIT = str(Path(sys.executable).parent / "toolkit")


def run(*args: str, ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    result = subprocess.run([TOOLKIT, *args], cwd=PROJECT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode not in ok:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise SystemExit(f"`toolkit {' '.join(args)}` exited {result.returncode}: {tail}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", default="base,node_exporter")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inventory", default=str(PROJECT / "inventories" / "lab"))
    parser.add_argument("--max-ratio", type=float, default=1.2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("NO_COLOR", "1")
    textfiles = tempfile.mkdtemp(prefix="drift-bench-")  # keep the benchmark's metrics out of the real ones
    rows = []
    for service in [s.strip() for s in args.services.split(",") if s.strip()]:
        common = ("-i", args.inventory, "--textfile-dir", textfiles)
        run("converge", service, *common)
        converge, drift = [], []
        for round_number in range(1, args.rounds + 1):
            converge.append(run("converge", service, *common))
            drift.append(run("drift", service, *common))
            print(
                f"{service:<14} round {round_number}: converge {converge[-1]:6.1f} s   drift {drift[-1]:6.1f} s",
                file=sys.stderr,
            )
        row = {
            "service": service,
            "converge_median_s": round(statistics.median(converge), 2),
            "drift_median_s": round(statistics.median(drift), 2),
        }
        row["ratio"] = round(row["drift_median_s"] / row["converge_median_s"], 3)
        rows.append(row)
    print(f"\n{'service':<14} {'converge (no change)':>21} {'drift':>9} {'drift/converge':>15}")
    for row in rows:
        print(
            f"{row['service']:<14} {row['converge_median_s']:>19.1f} s {row['drift_median_s']:>7.1f} s"
            f" {row['ratio']:>14.2f}x"
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0 if all(row["ratio"] <= args.max_ratio for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
