#!/usr/bin/env python3
"""toolkit's own overhead against a bare ``ansible_runner.run`` of the same playbook on the same hosts.

Measured side by side in one run, rounds alternating so that drift in the hosts' load hits both:

  bare-process     python -c 'ansible_runner.run(...)' in a fresh interpreter (the minimum a wrapper pays)
  toolkit-cli      `toolkit converge SERVICE` (inventory check, lock, history, live view, scrub, summary)
  bare-library     ansible_runner.run(...) inside this process
  toolkit-library  toolkit.runner.execute.run_playbook(...) inside this process

Usage: benchmarks/runner_overhead.py [--service base] [--rounds 5] [--inventory inventories/lab]
The service should already be converged (a no-change run is what deploys-many-times-a-day pay).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

BARE_SCRIPT = """
import sys, tempfile, ansible_runner
with tempfile.TemporaryDirectory() as pdd:
    r = ansible_runner.run(private_data_dir=pdd, project_dir=sys.argv[3], playbook=sys.argv[1],
                           inventory=sys.argv[2], quiet=True, envvars=dict(ANSIBLE_HOST_KEY_CHECKING="True",
                           ANSIBLE_CONFIG=sys.argv[3] + "/ansible.cfg"), fact_cache_type="ansible.cfg")
    sys.exit(0 if r.status == "successful" else 1)
"""


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", default="base")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inventory", default=str(PROJECT / "inventories" / "lab"))
    args = parser.parse_args()

    import ansible_runner

    from toolkit.paths import playbooks_dir, state_paths
    from toolkit.runner.execute import PlaybookRun, RunSettings, run_playbook
    from toolkit.runner.inventory import resolve

    playbook = playbooks_dir() / f"{args.service}.yml"
    inventory = Path(args.inventory).resolve()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    os.environ["PATH"] = env["PATH"]

    def bare_process() -> None:
        cmd = [sys.executable, "-c", BARE_SCRIPT, str(playbook), str(inventory), str(PROJECT)]
        subprocess.run(cmd, check=True, env=env, cwd=PROJECT)

    def toolkit_cli() -> None:
        cmd = [str(bin_dir / "toolkit"), "converge", args.service, "-i", str(inventory)]
        subprocess.run(cmd, check=True, env=env, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def bare_library() -> None:
        with tempfile.TemporaryDirectory() as pdd:
            result = ansible_runner.run(
                private_data_dir=pdd,
                project_dir=str(PROJECT),
                playbook=str(playbook),
                inventory=str(inventory),
                quiet=True,
                envvars={"ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg")},
                fact_cache_type="ansible.cfg",
            )
            assert result.status == "successful", result.status

    def toolkit_library() -> None:
        run = PlaybookRun(kind="benchmark", target=args.service, playbook=playbook, inventory=resolve(inventory))
        result = run_playbook(run, RunSettings.from_env(state_paths()), cancel=threading.Event())
        assert result.exit_code == 0, result.to_dict()

    variants: dict[str, Callable[[], None]] = {
        "bare-process": bare_process,
        "toolkit-cli": toolkit_cli,
        "bare-library": bare_library,
        "toolkit-library": toolkit_library,
    }
    for action in variants.values():  # warm-up: ControlPersist sockets, fact cache, page cache
        action()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, action in variants.items():
            samples[name].append(timed(action))

    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"playbook {args.service} on {inventory}, {args.rounds} rounds (median seconds)")
    for name, values in samples.items():
        print(f"  {name:<16} median {median[name]:6.2f}s  min {min(values):6.2f}s  max {max(values):6.2f}s")
    cli_ratio = median["toolkit-cli"] / median["bare-process"]
    lib_ratio = median["toolkit-library"] / median["bare-library"]
    print(
        f"ratio toolkit-cli / bare-process         = {cli_ratio:.3f}  "
        f"(+{median['toolkit-cli'] - median['bare-process']:.2f}s)"
    )
    print(
        f"ratio toolkit-library / bare-library     = {lib_ratio:.3f}  "
        f"(+{median['toolkit-library'] - median['bare-library']:.2f}s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
