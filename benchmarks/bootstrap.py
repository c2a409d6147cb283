#!/usr/bin/env python3
"""Time from a bare lab container to a verified, scraped fleet member, split by bootstrap step.

Each round makes a bare host with `toolkit lab bare` (sshd and one key login, no Python), runs
`toolkit bootstrap ADDRESS --service SERVICE --json`, then bootstraps it again (the no-change re-run), and
removes it. The per-step seconds come from the bootstrap's own JSON. The lab's apt cache is warm for every
round after the first (and for the first too when the lab's hosts were converged before): use --rounds 2
or more and read the last rounds for warm-cache figures; the first round's are printed and marked.

Usage:
  benchmarks/bootstrap.py [--service postgresql] [--rounds 2] [--json]
Needs the lab up with the service's fleet converged (a PostgreSQL primary for a replica, and Prometheus):
  toolkit lab up && toolkit converge site
Exit status: 0 when every bootstrap succeeded, 1 otherwise, 2 on bad usage. Traffic stays on the lab network.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
TOOLKIT = str(Path(sys.executable).parent / "toolkit")
NAME, ADDRESS, LOGIN = "bench-bootstrap-1", "10.242.10.45", "admin"
PRIMARY = "postgresql-1"


def run(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROJECT, capture_output=True, text=True, timeout=timeout, check=False)


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(PROJECT / ".toolkit" / "lab" / "containers.conf")}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=False, timeout=120)


def remove_host(service: str) -> None:
    """The bare host gone, and the fleet as it was: no inventory entry, known key, replica slot or target."""
    podman("rm", "--force", "--time", "2", f"toolkit-lab-{NAME}")
    entries = PROJECT / "inventories" / "lab" / "bootstrap.yml"
    if entries.is_file() and NAME in entries.read_text():
        import yaml

        data = yaml.safe_load(entries.read_text())
        for body in data["all"]["children"].values():
            (body or {}).get("hosts", {}).pop(NAME, None)
        children = {group: body for group, body in data["all"]["children"].items() if (body or {}).get("hosts")}
        if children:
            entries.write_text(yaml.safe_dump({"all": {"children": children}}, sort_keys=False))
        else:
            entries.unlink()
    run("ssh-keygen", "-R", ADDRESS, "-f", str(PROJECT / ".toolkit" / "lab" / "known_hosts"))
    if service == "postgresql":
        slot = NAME.replace("-", "_")
        drop = f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'"
        podman("exec", f"toolkit-lab-{PRIMARY}", "su", "postgres", "-c", f'psql -tAc "{drop}"')
        run(TOOLKIT, "converge", "postgresql")
    run(TOOLKIT, "converge", "prometheus")


def bootstrap(service: str, key: Path) -> dict[str, Any]:
    started = time.monotonic()
    done = run(TOOLKIT, "bootstrap", ADDRESS, "--service", service, "--user", LOGIN, "--key", str(key),
               "--name", NAME, "--json")  # fmt: skip
    wall = time.monotonic() - started
    if not done.stdout.strip():
        raise SystemExit(f"bootstrap printed no JSON (exit {done.returncode}): {done.stderr.strip()[-400:]}")
    document: dict[str, Any] = json.loads(done.stdout)
    document["wall_seconds"] = round(wall, 1)
    return document


def one_round(service: str, workdir: Path, number: int) -> dict[str, Any]:
    key = workdir / f"login_key_{number}"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    made = run(TOOLKIT, "lab", "bare", NAME, "--address", ADDRESS, "--login", LOGIN, "--authorized-key", f"{key}.pub")
    if made.returncode != 0:
        raise SystemExit(f"toolkit lab bare failed: {made.stderr.strip()}")
    try:
        first = bootstrap(service, key)
        again = bootstrap(service, key) if first["exit_code"] == 0 else None
    finally:
        remove_host(service)
    return {"round": number, "first": first, "again": again}


def table(rounds: list[dict[str, Any]]) -> str:
    steps = [step["name"] for step in rounds[0]["first"]["steps"]]
    header = f"{'step':<14}" + "".join(f"{'round ' + str(r['round']):>10}" for r in rounds) + f"{'re-run':>10}"
    lines = [header, "-" * len(header)]
    for name in [*steps, "total"]:
        row = f"{name:<14}"
        for entry in rounds:
            row += f"{seconds(entry['first'], name):>10}"
        row += f"{seconds(rounds[-1]['again'], name):>10}"
        lines.append(row)
    return "\n".join(lines)


def seconds(document: dict[str, Any] | None, step: str) -> str:
    if document is None:
        return "-"
    if step == "total":
        return f"{document['seconds']:.1f}"
    found = [s["seconds"] for s in document["steps"] if s["name"] == step]
    return f"{found[0]:.1f}" if found else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", default="postgresql", choices=["base", "postgresql", "prometheus", "cassandra"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not (PROJECT / "inventories" / "lab" / "hosts.yml").is_file():
        print("the lab is not up: run `toolkit lab up` and `toolkit converge site` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-bootstrap-") as workdir:
        rounds = [one_round(options.service, Path(workdir), n) for n in range(1, options.rounds + 1)]
    ok = all(r["first"]["exit_code"] == 0 and r["again"] and r["again"]["exit_code"] == 0 for r in rounds)
    if options.json:
        print(json.dumps({"service": options.service, "rounds": rounds, "ok": ok}, indent=2))
        return 0 if ok else 1
    print(f"toolkit bootstrap --service {options.service}: bare lab container to verified, scraped host (seconds)")
    print("round 1 may include cold apt-cache fetches; later rounds run with the cache warm.\n")
    print(table(rounds))
    firsts = [r["first"]["seconds"] for r in rounds]
    print(f"\nbootstrap: median {statistics.median(firsts):.1f}s over {len(firsts)} round(s); "
          f"re-run (0 changed expected): {rounds[-1]['again']['seconds'] if rounds[-1]['again'] else '-'}s, "
          f"changed {rounds[-1]['again']['changed'] if rounds[-1]['again'] else '-'}")  # fmt: skip
    for entry in rounds:
        if entry["first"]["exit_code"] != 0:
            print(f"round {entry['round']} failed: {entry['first']['error']}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
