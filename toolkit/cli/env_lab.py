"""``toolkit env up|down NAME --provider lab``: the spec's hosts as lab containers, converged and verified.

The containers come from toolkit/environments/lab_env.py; from their inventory on, the environment is
configured as every provider's is (env_configure.py): `converge site`, then every service's testinfra suite,
each recorded in the run history. The clock runs from the first step to the last verdict: the time from
nothing to a verified fleet.
"""

import time

from toolkit import console
from toolkit.cli.env_configure import EnvUpReport, Member, converge_and_verify
from toolkit.environments.lab_env import LabEnvironment
from toolkit.environments.plan import Step
from toolkit.environments.spec import EnvironmentSpec
from toolkit.lab.lab import status_as_dict
from toolkit.paths import StatePaths
from toolkit.runner.execute import RunSettings
from toolkit.runner.inventory import load


def lab_up(
    spec: EnvironmentSpec, state: StatePaths, settings: RunSettings, verbose: int, *, verify: bool = True
) -> EnvUpReport:
    report = EnvUpReport("lab", spec.name)
    environment = LabEnvironment(spec.name, state)
    started = time.monotonic()
    console.info(f"env up {spec.name} (lab): {len(spec.hosts)} host(s)…")
    statuses = environment.up_from(spec)
    report.steps["hosts"] = time.monotonic() - started
    report.hosts = status_as_dict(statuses)
    report.members = [Member(s.name, s.address, s.groups) for s in statuses]
    console.print_lab_status(statuses)
    loaded = load(environment.inventory_dir)
    converge_and_verify(report, spec, loaded, state, settings, verbose=verbose, verify=verify)
    return report


def lab_down(name: str, state: StatePaths, purge_cache: bool) -> list[str]:
    return LabEnvironment(name, state).down(purge_cache=purge_cache)


def as_steps(removed: list[str]) -> list[Step]:
    """`down`'s list ("container X", "network Y", "apt-cacher-ng", paths) as teardown steps for the report."""
    steps = []
    for item in removed:
        kind, _, name = item.partition(" ")
        steps.append(Step("delete", kind, name) if kind in ("container", "network") else Step("delete", "file", item))
    return steps
