"""The Cassandra recipe: Maven Central jars -> ``cassandra-<version>.tar.gz`` for Debian 12 hosts with Java 17.

Layout of the tarball (one top directory, ``cassandra-<version>/``)::

    VERSION                  the Cassandra version, one line
    MANIFEST.json            versions, recipe id and every other file with its sha256 and size
    bin/cassandra            start wrapper: exec java in the foreground with the options proved on Java 17
    bin/nodetool             nodetool over the node's local-only JMX
    bin/common.sh            what both wrappers share (sourced, not run)
    conf/                    defaults the Ansible role replaces: cassandra.yaml, cassandra-rackdc.properties,
                             logback.xml, logback-tools.xml, jvm.options, cassandra.env, jmx_exporter.yml,
                             hotspot_compiler (taken from the cassandra-all jar)
    lib/*.jar                cassandra-all and its runtime dependencies, as Maven resolves them
    lib/jmx_prometheus_javaagent-<v>.jar   the Prometheus JMX exporter agent (kept off the classpath)

Next to it, ``cassandra-<version>.tar.gz.sha256`` (``sha256sum -c`` format). The archive is reproducible:
sorted entries, fixed mtimes, owner root, gzip without a timestamp, so a rebuild of the same versions gives
the same checksum. docs/cassandra.md explains the JVM options.
"""

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ToolkitError, UsageError
from toolkit.exit_codes import ExitCode
from toolkit.packaging import maven

CASSANDRA_VERSION = "5.0.9"
JMX_EXPORTER_VERSION = "1.0.1"
# Bump when the layout or the build logic changes; changes to the generated files are caught by recipe_id()'s hash.
RECIPE_REVISION = 1
# 2024-01-01T00:00:00Z for every entry: any fixed value makes rebuilds byte-identical.
FIXED_MTIME = 1_704_067_200

_VERSION = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?(-[A-Za-z0-9.]+)?$")
_HOTSPOT_COMPILER = "META-INF/hotspot_compiler"

# ------------------------------------------------------------------------------------------------------
# Generated files. Text only; the wrappers find jars by pattern, so one text serves every version.
# ------------------------------------------------------------------------------------------------------

# The start and nodetool wrappers, and the part they share (bin/common.sh, sourced by both), are the cassandra
# role's launcher (the role installs it for every install method, Apache's tarball and package included):
# one text, read from the role.
LAUNCHER_DIR = Path(__file__).resolve().parents[2] / "roles" / "cassandra" / "files" / "launcher"


def _launcher(name: str) -> str:
    return (LAUNCHER_DIR / name).read_text()


BIN_CASSANDRA = _launcher("cassandra")
BIN_NODETOOL = _launcher("nodetool")
BIN_COMMON = _launcher("common.sh")

CONF_CASSANDRA_YAML = """\
# Defaults for one node on the loopback interface; the Ansible role templates the real file.
# Directories not named here go under $CASSANDRA_DATA_DIR (bin/cassandra passes -Dcassandra.storagedir).
# A real cluster also sets allocate_tokens_for_local_replication_factor (a seed's first start then waits
# 30 s for the ring before allocating its tokens).
cluster_name: toolkit
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: GossipingPropertyFileSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:7000"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: 7000
native_transport_port: 9042
commitlog_sync: periodic
commitlog_sync_period: 10000ms
"""

CONF_RACKDC = """\
# Read by GossipingPropertyFileSnitch (cassandra.yaml's endpoint_snitch); the Ansible role sets them per host.
dc=dc1
rack=rack1
"""

CONF_JVM_OPTIONS = """\
# Appended by bin/cassandra to the options Cassandra needs on Java 17 (those stay in bin/cassandra).
# One option per line; lines that do not start with '-' are ignored. The Ansible role templates this file.
#
# Heap: MAX_HEAP_SIZE (environment or cassandra.env) wins; else -Xms/-Xmx here; else bin/cassandra's formula.
#-Xms4G
#-Xmx4G

# G1, tuned as Cassandra's own jvm17-server.options tunes it.
-XX:+UseG1GC
-XX:+ParallelRefProcEnabled
-XX:MaxTenuringThreshold=1
-XX:G1HeapRegionSize=16m
-XX:G1RSetUpdatingPauseTimePercent=5
-XX:MaxGCPauseMillis=300
-XX:InitiatingHeapOccupancyPercent=70

# Many threads: small stacks. Touch the heap at start so it is resident and predictable.
-Xss256k
-XX:+AlwaysPreTouch
# Stop on OutOfMemoryError rather than run on with possibly corrupt state; keep a heap dump.
-XX:+ExitOnOutOfMemoryError
-XX:+HeapDumpOnOutOfMemoryError
# No hsperfdata mmap file (avoids pauses on a busy disk; jps/jstat will not see the process).
-XX:+PerfDisableSharedMem
# Cassandra's assertions are meant to stay on in production; chronicle's are not.
-ea
-da:net.openhft...
-Djava.net.preferIPv4Stack=true
# Netty allocator defaults Cassandra restores.
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
"""

CONF_ENV = """\
# Read by bin/cassandra and bin/nodetool: KEY=value lines (not shell), used for variables the environment
# does not set. The Ansible role templates this file; systemd can read it as an EnvironmentFile too.
#MAX_HEAP_SIZE=4G
#JMX_PORT=7199
#JMX_EXPORTER_LISTEN=127.0.0.1:7070
#CASSANDRA_LOG_DIR=/var/log/cassandra
#CASSANDRA_DATA_DIR=/var/lib/cassandra
#CASSANDRA_PIDFILE=/run/cassandra/cassandra.pid
#JVM_EXTRA_OPTS=
"""

CONF_LOGBACK = """\
<!-- Cassandra's logging: system.log under $CASSANDRA_LOG_DIR (-Dcassandra.logdir) and INFO on stdout
     (the journal under systemd). The Ansible role may template its own. -->
<configuration scan="true" scanPeriod="60 seconds">
  <appender name="SYSTEMLOG" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.SizeAndTimeBasedRollingPolicy">
      <fileNamePattern>${cassandra.logdir}/system.log.%d{yyyy-MM-dd}.%i.gz</fileNamePattern>
      <maxFileSize>50MB</maxFileSize>
      <maxHistory>7</maxHistory>
      <totalSizeCap>2GB</totalSizeCap>
    </rollingPolicy>
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %logger{0} - %msg%n</pattern>
    </encoder>
  </appender>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder>
      <pattern>%-5level [%thread] %logger{0} - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="SYSTEMLOG"/>
    <appender-ref ref="STDOUT"/>
  </root>
</configuration>
"""

CONF_LOGBACK_TOOLS = """\
<!-- nodetool and other tools: warnings and errors on stderr only. -->
<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder>
      <pattern>%-5level %logger{0} - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="WARN">
    <appender-ref ref="STDERR"/>
  </root>
</configuration>
"""

CONF_JMX_EXPORTER = """\
# Prometheus JMX exporter rules, used when JMX_EXPORTER_LISTEN is set: Cassandra's metrics and the JVM's.
# Left out: the ColumnFamily aliases of the Table metrics (duplicates) and the system keyspaces' tables
# (on an idle node: 9 thousand samples instead of 56 thousand, a 0.6 s scrape instead of 2.2 s).
lowercaseOutputName: true
lowercaseOutputLabelNames: true
includeObjectNames:
  - "org.apache.cassandra.metrics:*"
  - "java.lang:*"
excludeObjectNames:
  - "org.apache.cassandra.metrics:type=ColumnFamily,*"
  - "org.apache.cassandra.metrics:type=Table,keyspace=system*,*"
  - "org.apache.cassandra.metrics:type=Keyspace,keyspace=system*,*"
"""

# (path inside cassandra-<version>/, content, executable)
STATIC_FILES: tuple[tuple[str, str, bool], ...] = (
    ("bin/cassandra", BIN_CASSANDRA, True),
    ("bin/nodetool", BIN_NODETOOL, True),
    ("bin/common.sh", BIN_COMMON, False),
    ("conf/cassandra.yaml", CONF_CASSANDRA_YAML, False),
    ("conf/cassandra-rackdc.properties", CONF_RACKDC, False),
    ("conf/jvm.options", CONF_JVM_OPTIONS, False),
    ("conf/cassandra.env", CONF_ENV, False),
    ("conf/logback.xml", CONF_LOGBACK, False),
    ("conf/logback-tools.xml", CONF_LOGBACK_TOOLS, False),
    ("conf/jmx_exporter.yml", CONF_JMX_EXPORTER, False),
)


class ArtifactError(ToolkitError):
    """The build could not produce a correct artifact (the jars are not what the recipe expects)."""

    exit_code = ExitCode.TASK_FAILED


def recipe_id() -> str:
    """The revision plus a hash of everything generated: a cached tarball from another recipe is rebuilt."""
    digest = hashlib.sha256()
    digest.update(f"{RECIPE_REVISION}\n{maven.DEPENDENCY_PLUGIN_VERSION}\n{FIXED_MTIME}\n".encode())
    for name, content, executable in STATIC_FILES:
        digest.update(f"{name}\0{int(executable)}\0".encode() + content.encode() + b"\0")
    return f"{RECIPE_REVISION}.{digest.hexdigest()[:12]}"


def validate_version(version: str, what: str) -> str:
    if not _VERSION.match(version):
        raise UsageError(f"invalid {what} version {version!r}", hint="a release number such as 5.0.9")
    return version


def cassandra_artifacts(version: str, jmx_exporter_version: str) -> tuple[maven.Artifact, maven.Artifact]:
    return (
        maven.Artifact("org.apache.cassandra", "cassandra-all", version),
        maven.Artifact("io.prometheus.jmx", "jmx_prometheus_javaagent", jmx_exporter_version, transitive=False),
    )


# ------------------------------------------------------------------------------------------------------
# Reproducible tarballs.
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TarEntry:
    """One archive member: ``data`` is bytes, a file to copy, or None for a directory."""

    name: str
    data: bytes | Path | None
    executable: bool = False


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_tarball(entries: Iterable[TarEntry], dest: Path) -> str:
    """Write a .tar.gz whose bytes depend only on the entries' names and contents; returns its sha256."""
    ordered = sorted(entries, key=lambda entry: entry.name)
    names = [entry.name for entry in ordered]
    if len(set(names)) != len(names):
        raise ArtifactError(f"duplicate entries in {dest.name}")
    with (
        dest.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in ordered:
            info = tarfile.TarInfo(entry.name)
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if entry.data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            info.mode = 0o755 if entry.executable else 0o644
            if isinstance(entry.data, bytes):
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                info.size = entry.data.stat().st_size
                with entry.data.open("rb") as handle:
                    tar.addfile(info, handle)
    return sha256_file(dest)


# ------------------------------------------------------------------------------------------------------
# The build and its cache.
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    path: Path
    sha256: str
    version: str
    jmx_exporter_version: str
    cached: bool
    seconds: float
    size: int
    rebuild_reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "version": self.version,
            "jmx_exporter_version": self.jmx_exporter_version,
            "cached": self.cached,
            "seconds": round(self.seconds, 2),
            "size_bytes": self.size,
        }


def tarball_path(out_dir: Path, version: str) -> Path:
    return out_dir / f"cassandra-{version}.tar.gz"


def checksum_path(tarball: Path) -> Path:
    return tarball.with_name(tarball.name + ".sha256")


def read_manifest(tarball: Path, version: str) -> dict[str, object] | None:
    """MANIFEST.json from the tarball (the second member, so this reads only the archive's head)."""
    wanted = f"cassandra-{version}/MANIFEST.json"
    try:
        with tarfile.open(tarball, mode="r:gz") as tar:
            for member in tar:
                if member.name == wanted:
                    handle = tar.extractfile(member)
                    if handle is None:
                        return None
                    document = json.loads(handle.read())
                    return document if isinstance(document, dict) else None
    except (OSError, tarfile.TarError, ValueError):
        return None
    return None


def check_cache(out_dir: Path, version: str, jmx_exporter_version: str) -> tuple[str | None, str]:
    """(sha256, why) when the tarball for these versions and this recipe exists and verifies, else (None, why not)."""
    tarball = tarball_path(out_dir, version)
    checksum = checksum_path(tarball)
    if not tarball.is_file():
        return None, f"no {tarball.name} yet"
    if not checksum.is_file():
        return None, f"{checksum.name} is missing"
    recorded = checksum.read_text().split()
    if not recorded or not re.fullmatch(r"[0-9a-f]{64}", recorded[0]):
        return None, f"{checksum.name} is malformed"
    actual = sha256_file(tarball)
    if actual != recorded[0]:
        return None, f"{tarball.name} does not match {checksum.name}"
    manifest = read_manifest(tarball, version)
    if manifest is None:
        return None, f"{tarball.name} has no readable MANIFEST.json"
    if manifest.get("recipe") != recipe_id():
        return None, f"built by recipe {manifest.get('recipe')}, this is recipe {recipe_id()}"
    if manifest.get("jmx_exporter_version") != jmx_exporter_version:
        return None, f"built with jmx_prometheus_javaagent {manifest.get('jmx_exporter_version')}"
    if manifest.get("version") != version:
        return None, f"its manifest says version {manifest.get('version')}"
    return actual, "up to date"


def _entries(version: str, jmx_exporter_version: str, jars: list[Path]) -> list[TarEntry]:
    """Every member of the tarball, MANIFEST.json included (it lists the others with their sha256)."""
    top = f"cassandra-{version}"
    files: list[TarEntry] = [TarEntry(f"{top}/VERSION", f"{version}\n".encode())]
    files += [TarEntry(f"{top}/{name}", content.encode(), executable) for name, content, executable in STATIC_FILES]
    cassandra_jar = next(jar for jar in jars if jar.name == f"cassandra-all-{version}.jar")
    with zipfile.ZipFile(cassandra_jar) as archive:
        if _HOTSPOT_COMPILER in archive.namelist():
            files.append(TarEntry(f"{top}/conf/hotspot_compiler", archive.read(_HOTSPOT_COMPILER)))
    files += [TarEntry(f"{top}/lib/{jar.name}", jar) for jar in jars]

    listed = []
    for entry in sorted(files, key=lambda item: item.name):
        if isinstance(entry.data, bytes):
            digest, size = hashlib.sha256(entry.data).hexdigest(), len(entry.data)
        elif isinstance(entry.data, Path):
            digest, size = sha256_file(entry.data), entry.data.stat().st_size
        else:
            continue
        listed.append({"path": entry.name.removeprefix(f"{top}/"), "sha256": digest, "size": size})
    manifest = {
        "name": "cassandra",
        "version": version,
        "jmx_exporter_version": jmx_exporter_version,
        "java": "17",
        "recipe": recipe_id(),
        "maven": [artifact.coordinate for artifact in cassandra_artifacts(version, jmx_exporter_version)],
        "files": listed,
    }
    files.append(TarEntry(f"{top}/MANIFEST.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()))
    directories = [TarEntry(top, None)] + [TarEntry(f"{top}/{name}", None) for name in ("bin", "conf", "lib")]
    return directories + files


def build_cassandra(
    out_dir: Path,
    version: str = CASSANDRA_VERSION,
    jmx_exporter_version: str = JMX_EXPORTER_VERSION,
    *,
    force: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build (or find cached) ``cassandra-<version>.tar.gz`` and its ``.sha256`` in ``out_dir``."""
    started = time.monotonic()
    say = on_step or (lambda _message: None)
    validate_version(version, "Cassandra")
    validate_version(jmx_exporter_version, "jmx_prometheus_javaagent")
    if not version.startswith("5.0."):
        raise UsageError(
            f"this recipe builds Cassandra 5.0.x on Java 17, not {version}",
            hint="its JVM options are proved for 5.0 (docs/cassandra.md)",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    tarball = tarball_path(out_dir, version)
    checksum = checksum_path(tarball)

    reason = "--force"
    if not force:
        digest, reason = check_cache(out_dir, version, jmx_exporter_version)
        if digest is not None:
            return BuildResult(
                tarball,
                digest,
                version,
                jmx_exporter_version,
                cached=True,
                seconds=time.monotonic() - started,
                size=tarball.stat().st_size,
            )

    maven.mvn_executable()  # no mvn: say so before announcing the build
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as work:
        jar_dir = Path(work) / "jars"
        say(f"gathering cassandra-all {version} and jmx_prometheus_javaagent {jmx_exporter_version} with mvn")
        jars = maven.gather(cassandra_artifacts(version, jmx_exporter_version), jar_dir, update=force)
        if not any(jar.name.startswith("jamm-") for jar in jars):
            raise ArtifactError(f"cassandra-all {version} resolved without jamm: bin/cassandra expects it")
        say(f"writing {tarball.name} ({len(jars)} jars)")
        staged = Path(work) / tarball.name
        digest = write_tarball(_entries(version, jmx_exporter_version, jars), staged)
        checksum.unlink(missing_ok=True)
        os.replace(staged, tarball)
        staged_checksum = Path(work) / checksum.name
        staged_checksum.write_text(f"{digest}  {tarball.name}\n")
        os.replace(staged_checksum, checksum)
    return BuildResult(
        tarball,
        digest,
        version,
        jmx_exporter_version,
        cached=False,
        seconds=time.monotonic() - started,
        size=tarball.stat().st_size,
        rebuild_reason=reason,
    )
