"""The `toolkit` command: registers every command group and owns the error boundary.

Only ``main()`` turns errors into exit codes: a ToolkitError prints one line (and a hint);
anything unexpected prints one line, writes the traceback to the state directory's debug log and
exits 1 (``--debug`` shows it instead).
"""

import os
import sys
import traceback
from typing import Annotated

import typer

from toolkit import __version__, console
from toolkit.errors import ToolkitError
from toolkit.exit_codes import ExitCode

app = typer.Typer(
    name="toolkit",
    help="Converge, verify and inspect Cassandra, PostgreSQL and Prometheus fleets with Ansible.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="TOOLKIT_DEBUG", help="Show tracebacks of internal errors.")
    ] = False,
) -> None:
    if debug:
        os.environ["TOOLKIT_DEBUG"] = "1"


def _register() -> None:
    # Imported here so `toolkit --version` does not pay for ansible-runner's import.
    from toolkit.cli import artifact, bootstrap, converge, drift, env, heal, inventory, lab, report, runs, slo, verify

    app.command(name="converge")(converge.converge)
    app.command(name="verify")(verify.verify)
    app.command(name="inventory")(inventory.inventory)
    app.command(name="bootstrap")(bootstrap.bootstrap)
    app.command(name="report")(report.report)
    app.add_typer(drift.app, name="drift")
    app.add_typer(lab.app, name="lab")
    app.add_typer(runs.app, name="runs")
    app.add_typer(artifact.app, name="artifact")
    app.add_typer(slo.app, name="slo")
    app.add_typer(heal.app, name="heal")
    app.add_typer(env.app, name="env")


def _report_internal_error(exc: BaseException) -> None:
    if os.environ.get("TOOLKIT_DEBUG"):
        traceback.print_exception(exc)
        return
    from toolkit.paths import state_paths

    try:
        log = state_paths().home / "debug.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            traceback.print_exception(exc, file=handle)
        where = f"traceback in {log}"
    except Exception:
        where = "rerun with --debug for the traceback"
    console.error(f"internal error: {type(exc).__name__}: {exc}", hint=f"{where}; please report it")


def main() -> None:
    from toolkit.runner.nested import leave_enclosing_runner

    leave_enclosing_runner(os.environ)
    _register()
    try:
        # Non-standalone so errors reach the handlers below; typer.Exit(code) comes back as the return value.
        returned = app(standalone_mode=False)
    except ToolkitError as exc:
        console.error(exc.message, exc.hint)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        console.error("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
    except SystemExit:
        raise
    except Exception as exc:
        # typer >= 0.29 vendors click (typer._click): its Abort and usage errors are not click's classes.
        if isinstance(exc, typer.Abort):
            console.error("interrupted")
            sys.exit(int(ExitCode.INTERRUPTED))
        if isinstance(exc, typer.TyperException):
            # A bare `toolkit` (NoArgsIsHelpError) has already printed the help; others print one error.
            show = getattr(exc, "show", None)
            if callable(show) and type(exc).__name__ != "NoArgsIsHelpError":
                show()
            sys.exit(int(ExitCode.USAGE))
        _report_internal_error(exc)
        sys.exit(int(ExitCode.TASK_FAILED))
    sys.exit(returned if isinstance(returned, int) else 0)
