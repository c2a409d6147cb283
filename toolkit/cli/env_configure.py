"""The half of `toolkit env up` that every provider shares: `converge site` over the environment's inventory,
then every service's testinfra suite on its hosts, timed and reported as one document.

The lab (env_lab.py) and AWS (env_aws.py) differ only in how the hosts come to exist and answer SSH; from
the inventory on, an environment is configured the same way an operator would by hand: `toolkit converge
site -i INVENTORY`, then `toolkit verify SERVICE -i INVENTORY` per service, each recorded in the run history.
"""

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import typer

from toolkit import console
from toolkit.cli.converge import cancel_on_signals
from toolkit.environments.spec import EnvironmentSpec
from toolkit.exit_codes import ExitCode
from toolkit.packaging.cassandra import build_cassandra
from toolkit.paths import StatePaths
from toolkit.runner.execute import PlaybookRun, RunSettings, run_playbook
from toolkit.runner.extravars import ExtraVars
from toolkit.runner.inventory import LoadedInventory, resolved_from
from toolkit.runner.testinfra import VerifyResult, run_suites
from toolkit.services import available_services, hosts_pattern_for, infra_suite_for, playbook_for

# Where clients reach each service (the roles' default ports).
SERVICE_PORTS: dict[str, tuple[tuple[str, int], ...]] = {
    "postgresql_primary": (("postgresql", 5432),),
    "postgresql_replica": (("postgresql (read-only)", 5432),),
    "cassandra": (("cql", 9042),),
    "prometheus": (("prometheus", 9090), ("alertmanager", 9093)),
}


@dataclass(frozen=True)
class Member:
    """A host of the environment as the inventory has it: what its endpoints are made of."""

    name: str
    address: str
    groups: tuple[str, ...]


@dataclass
class EnvUpReport:
    provider: str
    environment: str
    hosts: list[dict[str, Any]] = field(default_factory=list)  # the provider's view of each host, as JSON
    members: list[Member] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    converge: dict[str, Any] | None = None
    verify: list[VerifyResult] = field(default_factory=list)
    verified: bool = False
    exit_code: ExitCode = ExitCode.OK
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # the provider's own keys (aws: region, plans, ...)

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())

    def fail(self, exit_code: ExitCode, error: str | None = None) -> None:
        """The first failure decides the exit code; later ones only add to the report."""
        if self.exit_code == ExitCode.OK:
            self.exit_code = exit_code
            self.error = error

    def endpoints(self) -> list[dict[str, Any]]:
        return [
            {"host": m.name, "service": service, "address": f"{m.address}:{port}"}
            for m in self.members
            for group in m.groups
            for service, port in SERVICE_PORTS.get(group, ())
        ]

    def to_dict(self) -> dict[str, Any]:
        ok = self.exit_code == ExitCode.OK
        return {
            "provider": self.provider,
            "environment": self.environment,
            **self.details,
            "exit_code": int(self.exit_code),
            "error": self.error,
            "seconds": round(self.seconds, 1),
            "seconds_to_verified": round(self.seconds, 1) if ok and self.verified else None,
            "steps": {step: round(seconds, 1) for step, seconds in self.steps.items()},
            "hosts": self.hosts,
            "endpoints": self.endpoints(),
            "converge": self.converge,
            "verify": [result.to_dict() for result in self.verify],
        }


def verify_services() -> list[str]:
    """Every service with its own testinfra suite (site's is their union, so it is not run again)."""
    return [s for s in available_services() if s != "site" and infra_suite_for(s)]


def converge_and_verify(
    report: EnvUpReport,
    spec: EnvironmentSpec,
    loaded: LoadedInventory,
    state: StatePaths,
    settings: RunSettings,
    *,
    verbose: int,
    verify: bool = True,
    extra: dict[str, Any] | None = None,
) -> None:
    """The Cassandra artifact (when the spec has Cassandra), `converge site`, then each service's suite, over
    the environment's inventory as the provider loaded it."""
    variables = dict(extra or {})
    if spec.hosts_of("cassandra"):
        # What `toolkit artifact cassandra` does (cached: seconds once built), into this state directory.
        started = time.monotonic()
        built = build_cassandra(state.artifacts, on_step=lambda message: console.info(f"{message}…"))
        variables["cassandra_artifact_dir"] = str(built.path.parent)
        report.steps["artifact"] = time.monotonic() - started

    started = time.monotonic()
    resolved = resolved_from(loaded, None)
    run = PlaybookRun(
        kind="converge",
        target="site",
        playbook=playbook_for("site"),
        inventory=resolved,
        extra_vars=ExtraVars(inline=variables),
        verbosity=verbose,
        color=console.err.is_terminal and not os.environ.get("NO_COLOR"),
        note=f"env up {spec.name} --provider {report.provider}",
    )
    with cancel_on_signals() as cancel, console.RunView("converge site", resolved.hosts, verbose=verbose) as view:
        result = run_playbook(run, settings, observer=view.handle, cancel=cancel)
    report.steps["converge"] = time.monotonic() - started
    console.print_run_summary(result)
    report.converge = result.to_dict()
    if result.exit_code != ExitCode.OK:
        report.fail(result.exit_code, "converge site failed")
        return
    if not verify:
        return

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
        if verdict.exit_code != ExitCode.OK:
            report.fail(verdict.exit_code, f"verify {service} failed")
    report.verified = report.exit_code == ExitCode.OK


def finish(report: EnvUpReport, json_output: bool) -> NoReturn:
    if json_output:
        console.emit_json(report.to_dict())
    else:
        if report.error and report.exit_code != ExitCode.OK:
            console.error(report.error)
        console.print_environment_ready(
            report.environment, report.endpoints(), report.steps, int(report.exit_code), verified=report.verified
        )
    raise typer.Exit(int(report.exit_code))
