"""``toolkit artifact``: build what roles install, into the state directory's artifacts/ (cached by version)."""

from typing import Annotated

import typer

from toolkit import console
from toolkit.cli.options import JsonOption
from toolkit.packaging.cassandra import CASSANDRA_VERSION, JMX_EXPORTER_VERSION, build_cassandra
from toolkit.paths import state_paths

app = typer.Typer(help="Build the artifacts roles install (kept in .toolkit/artifacts/, rebuilt only when needed).")


def _size(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


@app.command()
def cassandra(
    version: Annotated[str, typer.Option("--version", help="Cassandra version (5.0.x).")] = CASSANDRA_VERSION,
    jmx_exporter_version: Annotated[
        str, typer.Option("--jmx-exporter-version", help="io.prometheus.jmx:jmx_prometheus_javaagent version.")
    ] = JMX_EXPORTER_VERSION,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if a verified tarball exists.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Cassandra from Maven Central jars: cassandra-VERSION.tar.gz with bin/cassandra for Java 17, and its .sha256."""
    result = build_cassandra(
        state_paths().artifacts,
        version,
        jmx_exporter_version,
        force=force,
        on_step=lambda message: console.info(f"{message}…"),
    )
    if result.cached:
        console.info(
            f"{result.path.name} is up to date (sha256 {result.sha256[:16]}…, {_size(result.size)}): nothing to do;"
            " --force rebuilds"
        )
    else:
        why = f" ({result.rebuild_reason})" if result.rebuild_reason else ""
        console.info(f"built {result.path}{why} in {result.seconds:.1f}s: {_size(result.size)}, sha256 {result.sha256}")
    if json_output:
        console.emit_json(result.as_dict())
