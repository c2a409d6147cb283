"""``toolkit verify SERVICE``: run the service's testinfra suite against its hosts."""

from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import InventoryOption, JsonOption, LimitOption, resolve_inventory
from toolkit.errors import UsageError
from toolkit.paths import state_paths
from toolkit.runner.execute import RunSettings
from toolkit.runner.testinfra import run_suites
from toolkit.services import available_services, hosts_pattern_for, infra_suite_for


def verify(
    service: Annotated[str, typer.Argument(help="The service whose suite to run (tests/infra/test_SERVICE.py).")],
    inventory: InventoryOption = None,
    limit: LimitOption = None,
    json_output: JsonOption = False,
) -> None:
    """Verify SERVICE on real hosts with its testinfra suite (the same files molecule verifies with)."""
    if service not in available_services():
        raise UsageError(f"unknown service {service!r}; valid: {', '.join(available_services())}")
    suites = infra_suite_for(service)
    if not suites:
        raise UsageError(f"no testinfra suite for {service!r} (expected tests/infra/test_{service}.py)")
    resolved = resolve_inventory(inventory, limit, scope=hosts_pattern_for(service))
    console.info(f"verify {service} on {len(resolved.hosts)} host(s): {', '.join(s.name for s in suites)}")
    settings = RunSettings.from_env(state_paths())
    result = run_suites(service, suites, resolved, settings.state, settings.keep_runs)
    console.print_verify_summary(result)
    if json_output:
        console.emit_json(result.to_dict())
    raise typer.Exit(int(result.exit_code))
