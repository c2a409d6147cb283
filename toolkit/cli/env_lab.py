"""``toolkit env up|down NAME --provider lab``: the spec's hosts as lab containers, converged and verified.

The steps are the ones an operator would run by hand, in order, through the same layers: the containers
(toolkit/environments/lab_env.py), `converge site` over the environment's inventory, then every service's
testinfra suite (`verify`), each recorded in the run history. The clock runs from the first step to the
last verdict: the time from nothing to a verified fleet.
"""

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import typer

from toolkit import console
from toolkit.cli.converge import cancel_on_signals
from toolkit.environments.lab_env import LabEnvironment
from toolkit.environments.plan import Step
from toolkit.environments.spec import EnvironmentSpec
from toolkit.exit_codes import ExitCode
from toolkit.lab.lab import HostStatus, status_as_dict
from toolkit.packaging.cassandra import build_cassandra
from toolkit.paths import StatePaths
from toolkit.runner.execute import PlaybookRun, RunSettings, run_playbook
from toolkit.runner.extravars import ExtraVars
from toolkit.runner.inventory import load, resolved_from
from toolkit.runner.testinfra import VerifyResult, run_suites
from toolkit.services import available_services, hosts_pattern_for, infra_suite_for, playbook_for

# Where clients reach each service (the lab's ports: the roles' defaults).
SERVICE_PORTS: dict[str, tuple[tuple[str, int], ...]] = {
    "postgresql_primary": (("postgresql", 5432),),
    "postgresql_replica": (("postgresql (read-only)", 5432),),
    "cassandra": (("cql", 9042),),
    "prometheus": (("prometheus", 9090), ("alertmanager", 9093)),
}


@dataclass
class LabUpReport:
    environment: str
    hosts: list[HostStatus] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    converge: dict[str, Any] | None = None
    verify: list[VerifyResult] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())

    def endpoints(self) -> list[dict[str, Any]]:
        return [
            {"host": h.name, "service": service, "address": f"{h.address}:{port}"}
            for h in self.hosts
            for group in h.groups
            for service, port in SERVICE_PORTS.get(group, ())
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": "lab",
            "environment": self.environment,
            "exit_code": int(self.exit_code),
            "seconds_to_verified": round(self.seconds, 1) if self.exit_code == ExitCode.OK else None,
            "steps": {step: round(seconds, 1) for step, seconds in self.steps.items()},
            "hosts": status_as_dict(self.hosts),
            "endpoints": self.endpoints(),
            "converge": self.converge,
            "verify": [result.to_dict() for result in self.verify],
        }


def verify_services() -> list[str]:
    """Every service with its own testinfra suite (site's is their union, so it is not run again)."""
    return [s for s in available_services() if s != "site" and infra_suite_for(s)]


def lab_up(spec: EnvironmentSpec, state: StatePaths, settings: RunSettings, verbose: int) -> LabUpReport:
    report = LabUpReport(spec.name)
    environment = LabEnvironment(spec.name, state)
    started = time.monotonic()
    console.info(f"env up {spec.name} (lab): {len(spec.hosts)} host(s)…")
    report.hosts = environment.up_from(spec)
    report.steps["hosts"] = time.monotonic() - started
    console.print_lab_status(report.hosts)

    extra: dict[str, Any] = {}
    if spec.hosts_of("cassandra"):
        # What `toolkit artifact cassandra` does (cached: seconds once built), into this state directory.
        started = time.monotonic()
        built = build_cassandra(state.artifacts, on_step=lambda message: console.info(f"{message}…"))
        extra["cassandra_artifact_dir"] = str(built.path.parent)
        report.steps["artifact"] = time.monotonic() - started

    started = time.monotonic()
    loaded = load(environment.inventory_dir)
    resolved = resolved_from(loaded, None)
    run = PlaybookRun(
        kind="converge",
        target="site",
        playbook=playbook_for("site"),
        inventory=resolved,
        extra_vars=ExtraVars(inline=extra),
        verbosity=verbose,
        color=console.err.is_terminal and not os.environ.get("NO_COLOR"),
        note=f"env up {spec.name} --provider lab",
    )
    with cancel_on_signals() as cancel, console.RunView("converge site", resolved.hosts, verbose=verbose) as view:
        result = run_playbook(run, settings, observer=view.handle, cancel=cancel)
    report.steps["converge"] = time.monotonic() - started
    console.print_run_summary(result)
    report.converge = result.to_dict()
    if result.exit_code != ExitCode.OK:
        report.exit_code = result.exit_code
        return report

    for service in verify_services():
        in_scope = loaded.manager.get_hosts(hosts_pattern_for(service))
        if not in_scope:
            continue  # a spec without the service
        scoped = resolved_from(replace(loaded, selected=list(in_scope)), None)
        started = time.monotonic()
        console.info(f"verify {service} on {len(scoped.hosts)} host(s)")
        verdict = run_suites(service, infra_suite_for(service), scoped, state, settings.keep_runs)
        report.steps[f"verify {service}"] = time.monotonic() - started
        console.print_verify_summary(verdict)
        report.verify.append(verdict)
        if verdict.exit_code != ExitCode.OK and report.exit_code == ExitCode.OK:
            report.exit_code = verdict.exit_code
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


def finish(report: LabUpReport, json_output: bool) -> NoReturn:
    if json_output:
        console.emit_json(report.to_dict())
    else:
        console.print_lab_environment_up(report.environment, report.endpoints(), report.steps, report.exit_code)
    raise typer.Exit(int(report.exit_code))
