#!/usr/bin/env python3
"""What the lab's shared package cache (apt-cacher-ng on the lab gateway) saves, measured side by side.

For each variant the lab is brought up from nothing and `base` converged once (the run that installs
packages), then the lab is taken down again:

  no-cache    TOOLKIT_LAB_APT_CACHE=0: every host downloads every package from the mirror
  cold-cache  the cache starts empty (--purge-cache before): the first host to ask downloads, the rest share
  warm-cache  the cache kept from the run before: nothing is downloaded from the mirror

Prints lab-up and converge seconds per variant, the bytes the hosts received and how many of them came
from the mirror (apt-cacher-ng's log; without the cache every byte comes from the mirror), and the ratios
against no-cache.

Usage: benchmarks/lab_apt_cache.py [--profile full|minimal]
It takes the lab down before and after: do not run it while you use the lab.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TOOLKIT = str(Path(sys.executable).parent / "toolkit")
CACHE_LOG = PROJECT / ".toolkit" / "lab" / "apt-cache" / "log" / "apt-cacher.log"


def toolkit(*args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run([TOOLKIT, *args], cwd=PROJECT, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"toolkit {' '.join(args)} failed ({completed.returncode}):\n{completed.stderr}")
    return time.perf_counter() - started


def cache_traffic(offset: int) -> tuple[int, int]:
    """Bytes apt-cacher-ng fetched from the mirror (I, in) and sent to the hosts (O, out) since ``offset``."""
    fetched = served = 0
    if not CACHE_LOG.exists():
        return 0, 0
    with CACHE_LOG.open() as log:
        log.seek(offset)
        for line in log:
            fields = line.split("|")
            if len(fields) >= 3 and fields[2].isdigit():
                if fields[1] == "I":
                    fetched += int(fields[2])
                elif fields[1] == "O":
                    served += int(fields[2])
    return fetched, served


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full", choices=["full", "minimal"])
    args = parser.parse_args()
    base_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    variants = [
        ("no-cache", {"TOOLKIT_LAB_APT_CACHE": "0"}, False),
        ("cold-cache", {}, True),
        ("warm-cache", {}, False),
    ]
    rows = []
    toolkit("lab", "down", env=base_env)
    for name, extra, purge in variants:
        env = {**base_env, **extra}
        if purge:
            toolkit("lab", "down", "--purge-cache", env=env)
        offset = CACHE_LOG.stat().st_size if CACHE_LOG.exists() else 0
        up = toolkit("lab", "up", "--profile", args.profile, env=env)
        converge = toolkit("converge", "base", env=env)
        fetched, served = cache_traffic(offset)
        toolkit("lab", "down", env=env)
        rows.append((name, up, converge, fetched, served))
        print(f"  {name:<11} lab up {up:6.1f}s  converge base {converge:6.1f}s", file=sys.stderr)

    print(f"lab profile {args.profile}: lab up, then the first `toolkit converge base` (installs the packages)")
    print(f"  {'variant':<11} {'lab up':>8} {'converge':>9} {'total':>8} {'to hosts':>10} {'from mirror':>12}")
    for name, up, converge, fetched, served in rows:
        through_cache = name != "no-cache"
        to_hosts = f"{served / 1e6:8.1f}MB" if through_cache else f"{'(direct)':>10}"
        from_mirror = f"{fetched / 1e6:10.1f}MB" if through_cache else f"{'all':>12}"
        print(f"  {name:<11} {up:7.1f}s {converge:8.1f}s {up + converge:7.1f}s {to_hosts} {from_mirror}")
    baseline = rows[0][1] + rows[0][2]
    for name, up, converge, _, _ in rows[1:]:
        print(f"ratio {name} / no-cache (total) = {(up + converge) / baseline:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
