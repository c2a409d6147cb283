"""`toolkit artifact cassandra` without a network: a fake ``mvn`` on PATH writes small jars, a fake ``java`` prints
the command bin/cassandra would run. Covers the pom, mvn's errors, the cache, the tarball and the wrappers.
"""

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import CliOutcome
from toolkit.errors import ToolkitError, UsageError
from toolkit.exit_codes import ExitCode
from toolkit.packaging import cassandra, maven
from toolkit.packaging.cassandra import FIXED_MTIME, TarEntry, build_cassandra, write_tarball
from toolkit.packaging.maven import Artifact, MavenError, MavenMissingError, first_error_line, render_pom

VERSION = cassandra.CASSANDRA_VERSION
JMX = cassandra.JMX_EXPORTER_VERSION
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}

# A stand-in for mvn: reads the generated pom, writes one small jar per dependency (plus what cassandra-all
# pulls in) into -DoutputDirectory, logs each call. FAKE_MVN_FAIL=1 fails the way mvn does on a missing version.
FAKE_MVN = """#!{python}
import os, re, sys, zipfile
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_MVN_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if os.environ.get("FAKE_MVN_FAIL"):
    print("\\x1b[0m\\x1b[0m[ERROR] Failed to execute goal on project gather: Could not resolve dependencies for "
          "project toolkit.packaging:gather:pom:0: Could not find artifact "
          "org.apache.cassandra:cassandra-all:jar:5.0.99 in central (https://repo.example.invalid/maven2) "
          "-> [Help 1]")
    print("[ERROR] ")
    print("[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.")
    sys.exit(1)
pom = Path(args[args.index("--file") + 1]).read_text()
dest = Path(next(a for a in args if a.startswith("-DoutputDirectory=")).split("=", 1)[1])
dest.mkdir(parents=True, exist_ok=True)

def jar(name, entries):
    with zipfile.ZipFile(dest / name, "w") as archive:
        for entry, data in entries.items():
            archive.writestr(zipfile.ZipInfo(entry, date_time=(2020, 1, 1, 0, 0, 0)), data)

for artifact, version in re.findall(r"<artifactId>([^<]+)</artifactId>\\s*<version>([^<]+)</version>", pom):
    if artifact == "gather":
        continue
    if artifact == "cassandra-all":
        jar(f"cassandra-all-{{version}}.jar", {{"META-INF/hotspot_compiler": "dontinline a.B::c ()V\\n", "x": "1"}})
        if not os.environ.get("FAKE_MVN_NO_JAMM"):
            jar("jamm-0.4.0.jar", {{"jamm": "1"}})
        jar("guava-32.0.1-jre.jar", {{"guava": "1"}})
    else:
        jar(f"{{artifact}}-{{version}}.jar", {{artifact: "1"}})
"""

FAKE_JAVA = """#!/bin/bash
if [[ $1 == -version ]]; then
    echo "openjdk version \\"${FAKE_JAVA_VERSION:-17.0.15}\\" 2025-04-15" >&2
    exit 0
fi
printf '%s\\n' "$@"
"""


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH directory holding fake mvn and java; returns the mvn call log."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for name, text in (("mvn", FAKE_MVN.format(python=sys.executable)), ("java", FAKE_JAVA)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "mvn.log"
    log.touch()
    monkeypatch.setenv("FAKE_MVN_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return log


def calls(log: Path) -> int:
    return len(log.read_text().splitlines())


def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


# -------------------------------------------------------------------------------------------------
# The pom and mvn's errors
# -------------------------------------------------------------------------------------------------


def test_pom_depends_on_each_artifact_and_pins_the_dependency_plugin() -> None:
    pom = ET.fromstring(render_pom(cassandra.cassandra_artifacts("5.0.9", "1.0.1")))
    dependencies = pom.findall("m:dependencies/m:dependency", POM_NS)
    found = [
        (d.findtext("m:groupId", namespaces=POM_NS), d.findtext("m:artifactId", namespaces=POM_NS))
        for d in dependencies
    ]
    assert found == [("org.apache.cassandra", "cassandra-all"), ("io.prometheus.jmx", "jmx_prometheus_javaagent")]
    assert [d.findtext("m:version", namespaces=POM_NS) for d in dependencies] == ["5.0.9", "1.0.1"]
    # cassandra-all brings its runtime dependencies; the agent comes alone (wildcard exclusion).
    assert dependencies[0].find("m:exclusions", POM_NS) is None
    exclusion = dependencies[1].find("m:exclusions/m:exclusion", POM_NS)
    assert exclusion is not None and exclusion.findtext("m:groupId", namespaces=POM_NS) == "*"
    plugin = pom.find("m:build/m:pluginManagement/m:plugins/m:plugin", POM_NS)
    assert plugin is not None
    assert plugin.findtext("m:artifactId", namespaces=POM_NS) == "maven-dependency-plugin"
    assert plugin.findtext("m:version", namespaces=POM_NS) == maven.DEPENDENCY_PLUGIN_VERSION
    assert pom.findtext("m:packaging", namespaces=POM_NS) == "pom"


@pytest.mark.parametrize("bad", ["5.0.9</version><x>", "5.0.9 ", "", "../x"])
def test_a_coordinate_cannot_inject_into_the_pom(bad: str) -> None:
    with pytest.raises(ToolkitError, match="invalid Maven coordinate"):
        Artifact("org.apache.cassandra", "cassandra-all", bad)


def test_first_error_line_is_the_cause_without_colours_urls_or_help() -> None:
    output = (
        "\x1b[0m\x1b[0m[ERROR] Failed to execute goal on project gather: Could not resolve dependencies for project "
        "toolkit.packaging:gather:pom:0: Could not find artifact a:b:jar:1 in central (https://repo.example.invalid/x)"
        " -> [Help 1]\n[ERROR] \n[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.\n"
    )
    assert first_error_line(output) == "Could not find artifact a:b:jar:1 in central"
    assert first_error_line("[INFO] fine\n") is None
    remembered = (
        "[ERROR] Failed to execute goal on project gather: Could not resolve dependencies for project t:g:pom:0: "
        "a:b:jar:1 was not found in https://repo.example.invalid/x during a previous attempt. This failure was "
        "cached in the local repository and resolution is not reattempted until the update interval has elapsed"
    )
    assert first_error_line(remembered) == "a:b:jar:1 was not found in its repository during a previous attempt"


def test_missing_mvn_is_a_one_line_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., CliOutcome]
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MavenMissingError):
        maven.mvn_executable()

    outcome = cli("artifact", "cassandra")
    assert outcome.code == ExitCode.USAGE
    assert outcome.out == ""
    assert outcome.err.splitlines()[0].startswith("error: mvn not found on PATH")
    assert "Traceback" not in outcome.err and "gathering" not in outcome.err
    assert not list(Path(os.environ["TOOLKIT_HOME"], "artifacts").glob("*.tar.gz"))


def test_a_resolution_failure_names_mvns_first_error(
    fake_tools: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., CliOutcome]
) -> None:
    monkeypatch.setenv("FAKE_MVN_FAIL", "1")
    outcome = cli("artifact", "cassandra", "--version", "5.0.99")
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert outcome.code == ExitCode.TASK_FAILED
    error = next(line for line in lines if line.startswith("error: "))
    assert "mvn could not gather org.apache.cassandra:cassandra-all:5.0.99" in error
    assert error.endswith("Could not find artifact org.apache.cassandra:cassandra-all:jar:5.0.99 in central")
    assert "http" not in outcome.err and "Traceback" not in outcome.err
    assert calls(fake_tools) == 1


@pytest.mark.parametrize(("version", "message"), [("5.0", "5.0.x"), ("4.1.9", "5.0.x"), ("latest", "invalid")])
def test_versions_this_recipe_does_not_build_are_usage_errors(fake_tools: Path, version: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_cassandra(Path("/nonexistent"), version)
    assert calls(fake_tools) == 0


def test_jars_without_jamm_are_refused(fake_tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MVN_NO_JAMM", "1")
    with pytest.raises(cassandra.ArtifactError, match="without jamm"):
        build_cassandra(out_dir(tmp_path))
    assert not cassandra.tarball_path(out_dir(tmp_path), VERSION).exists()


# -------------------------------------------------------------------------------------------------
# The cache
# -------------------------------------------------------------------------------------------------


def test_build_then_cached_then_forced_rebuild_gives_the_same_checksum(fake_tools: Path, tmp_path: Path) -> None:
    first = build_cassandra(out_dir(tmp_path))
    assert not first.cached and first.rebuild_reason == f"no cassandra-{VERSION}.tar.gz yet"
    assert first.path == out_dir(tmp_path) / f"cassandra-{VERSION}.tar.gz"
    assert cassandra.checksum_path(first.path).read_text() == f"{first.sha256}  {first.path.name}\n"
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256
    assert calls(fake_tools) == 1

    second = build_cassandra(out_dir(tmp_path))
    assert second.cached and second.sha256 == first.sha256
    assert calls(fake_tools) == 1  # mvn did not run

    forced = build_cassandra(out_dir(tmp_path), force=True)
    assert not forced.cached and forced.rebuild_reason == "--force"
    assert calls(fake_tools) == 2
    first_call, forced_call = fake_tools.read_text().splitlines()
    assert "--update-snapshots" not in first_call.split() and "--update-snapshots" in forced_call.split()
    assert forced.sha256 == first.sha256  # reproducible: same jars, same bytes
    assert sorted(p.name for p in out_dir(tmp_path).iterdir()) == [first.path.name, first.path.name + ".sha256"]


def _corrupt_tarball(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b"x")


def _drop_checksum(path: Path) -> None:
    cassandra.checksum_path(path).unlink()


def _bad_checksum(path: Path) -> None:
    cassandra.checksum_path(path).write_text("nonsense\n")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_tarball, "does not match"),
        (_drop_checksum, "is missing"),
        (_bad_checksum, "is malformed"),
    ],
)
def test_a_tarball_that_does_not_verify_is_rebuilt(
    fake_tools: Path, tmp_path: Path, damage: Callable[[Path], None], reason: str
) -> None:
    first = build_cassandra(out_dir(tmp_path))
    damage(first.path)
    again = build_cassandra(out_dir(tmp_path))
    assert not again.cached and again.rebuild_reason is not None and reason in again.rebuild_reason
    assert again.sha256 == first.sha256
    assert calls(fake_tools) == 2


def test_another_recipe_or_exporter_version_is_rebuilt(
    fake_tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_cassandra(out_dir(tmp_path))
    other_exporter = build_cassandra(out_dir(tmp_path), jmx_exporter_version="0.20.0")
    assert not other_exporter.cached
    assert other_exporter.rebuild_reason == f"built with jmx_prometheus_javaagent {JMX}"
    assert build_cassandra(out_dir(tmp_path), jmx_exporter_version="0.20.0").cached

    old_recipe = cassandra.recipe_id()
    monkeypatch.setattr(cassandra, "RECIPE_REVISION", cassandra.RECIPE_REVISION + 1)
    assert cassandra.recipe_id() != old_recipe
    rebuilt = build_cassandra(out_dir(tmp_path), jmx_exporter_version="0.20.0")
    assert not rebuilt.cached and rebuilt.rebuild_reason is not None and old_recipe in rebuilt.rebuild_reason
    assert calls(fake_tools) == 3


def test_the_recipe_id_follows_the_generated_files(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cassandra.recipe_id()
    files = (*cassandra.STATIC_FILES[:-1], (cassandra.STATIC_FILES[-1][0], "changed\n", False))
    monkeypatch.setattr(cassandra, "STATIC_FILES", files)
    assert cassandra.recipe_id() != before


# -------------------------------------------------------------------------------------------------
# The tarball
# -------------------------------------------------------------------------------------------------


def test_write_tarball_is_byte_identical_whatever_the_files_mtimes_and_order(tmp_path: Path) -> None:
    source = tmp_path / "lib.jar"
    source.write_bytes(b"jar bytes")
    entries = [
        TarEntry("top", None),
        TarEntry("top/bin/run", b"#!/bin/sh\n", executable=True),
        TarEntry("top/bin", None),
        TarEntry("top/lib.jar", source),
    ]
    first = write_tarball(entries, tmp_path / "a.tar.gz")
    os.utime(source, (1, 1))
    second = write_tarball(list(reversed(entries)), tmp_path / "b.tar.gz")
    assert first == second
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert (tmp_path / "a.tar.gz").read_bytes()[4:8] == b"\0\0\0\0"  # no gzip timestamp

    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["top", "top/bin", "top/bin/run", "top/lib.jar"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "root", "root", FIXED_MTIME)}
    assert {m.name: stat.S_IMODE(m.mode) for m in members} == {
        "top": 0o755,
        "top/bin": 0o755,
        "top/bin/run": 0o755,
        "top/lib.jar": 0o644,
    }


def test_write_tarball_refuses_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(cassandra.ArtifactError, match="duplicate"):
        write_tarball([TarEntry("a", b"1"), TarEntry("a", b"2")], tmp_path / "x.tar.gz")


def test_the_tarball_layout_and_its_manifest(fake_tools: Path, tmp_path: Path) -> None:
    result = build_cassandra(out_dir(tmp_path))
    top = f"cassandra-{VERSION}"
    with tarfile.open(result.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        contents = {name: tar.extractfile(m).read() for name, m in members.items() if m.isfile()}  # type: ignore[union-attr]
    names = sorted(members)
    assert list(members) == names  # written in sorted order
    assert {
        f"{top}/VERSION",
        f"{top}/MANIFEST.json",
        f"{top}/bin/cassandra",
        f"{top}/bin/nodetool",
        f"{top}/bin/common.sh",
        f"{top}/conf/cassandra.yaml",
        f"{top}/conf/cassandra-rackdc.properties",
        f"{top}/conf/logback.xml",
        f"{top}/conf/jvm.options",
        f"{top}/conf/hotspot_compiler",
        f"{top}/lib/cassandra-all-{VERSION}.jar",
        f"{top}/lib/jamm-0.4.0.jar",
        f"{top}/lib/jmx_prometheus_javaagent-{JMX}.jar",
    } <= set(names)
    assert all(name == top or name.startswith(f"{top}/") for name in names)
    assert stat.S_IMODE(members[f"{top}/bin/cassandra"].mode) == 0o755
    assert contents[f"{top}/VERSION"] == f"{VERSION}\n".encode()
    assert contents[f"{top}/conf/hotspot_compiler"] == b"dontinline a.B::c ()V\n"  # taken from cassandra-all

    manifest = json.loads(contents[f"{top}/MANIFEST.json"])
    assert manifest["version"] == VERSION and manifest["jmx_exporter_version"] == JMX
    assert manifest["recipe"] == cassandra.recipe_id() and manifest["java"] == "17"
    listed = {item["path"]: item for item in manifest["files"]}
    files = {name.removeprefix(f"{top}/") for name in contents} - {"MANIFEST.json"}
    assert set(listed) == files
    for path, item in listed.items():
        data = contents[f"{top}/{path}"]
        assert item["sha256"] == hashlib.sha256(data).hexdigest() and item["size"] == len(data)
    assert "lib/guava-32.0.1-jre.jar" in listed


def test_the_json_document(fake_tools: Path, cli: Callable[..., CliOutcome]) -> None:
    outcome = cli("artifact", "cassandra", "--json")
    assert outcome.code == 0, outcome.err
    document = json.loads(outcome.out)
    assert {"path", "sha256", "version", "cached", "seconds"} <= set(document)
    assert document["version"] == VERSION and document["cached"] is False
    assert Path(document["path"]) == Path(os.environ["TOOLKIT_HOME"]) / "artifacts" / f"cassandra-{VERSION}.tar.gz"
    assert "built " in outcome.err

    again = cli("artifact", "cassandra", "--json")
    assert json.loads(again.out)["cached"] is True and json.loads(again.out)["sha256"] == document["sha256"]
    assert "up to date" in again.err and "nothing to do" in again.err


# -------------------------------------------------------------------------------------------------
# The wrappers, run with a fake java that prints its arguments
# -------------------------------------------------------------------------------------------------


@pytest.fixture
def unpacked(fake_tools: Path, tmp_path: Path) -> Path:
    result = build_cassandra(out_dir(tmp_path))
    with tarfile.open(result.path) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    return tmp_path / "unpacked" / f"cassandra-{VERSION}"


def run(home: Path, tool: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ["PATH"], **env}
    return subprocess.run(
        [str(home / "bin" / tool), *args], env=environment, capture_output=True, text=True, timeout=30, check=False
    )


def test_bin_cassandra_runs_java_17_with_the_proved_options(unpacked: Path) -> None:
    completed = run(unpacked, "cassandra", MAX_HEAP_SIZE="700M", JVM_EXTRA_OPTS="-Dextra.one=1 -Dextra.two=2")
    assert completed.returncode == 0, completed.stderr
    args = completed.stdout.splitlines()
    for required in (
        "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
        "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
        "--add-opens=java.base/java.io=ALL-UNNAMED",
        "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
        "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
        f"-javaagent:{unpacked}/lib/jamm-0.4.0.jar",
        f"-Dcassandra.config=file://{unpacked}/conf/cassandra.yaml",
        f"-Dcassandra.storagedir={unpacked}/data",
        "-Dcassandra.jmx.local.port=7199",
        "-XX:+UseG1GC",  # from conf/jvm.options
        f"-XX:CompileCommandFile={unpacked}/conf/hotspot_compiler",
    ):
        assert required in args
    # MAX_HEAP_SIZE comes after jvm.options (it wins); no computed heap; extra options come last.
    assert [a for a in args if a.startswith(("-Xms", "-Xmx"))] == ["-Xms700M", "-Xmx700M"]
    assert args[-5:-2] == ["-Dextra.one=1", "-Dextra.two=2", "-cp"]
    assert args[-1] == "org.apache.cassandra.service.CassandraDaemon"
    classpath = args[-2].split(":")
    assert classpath[0] == str(unpacked / "conf")
    assert str(unpacked / f"lib/cassandra-all-{VERSION}.jar") in classpath
    assert not [entry for entry in classpath if "jmx_prometheus_javaagent" in entry]
    assert not [a for a in args if "jmx_prometheus_javaagent" in a]  # no exporter unless asked for
    assert (unpacked / "logs").is_dir()


def test_bin_cassandra_reads_cassandra_env_and_the_environment_wins(unpacked: Path, tmp_path: Path) -> None:
    (unpacked / "conf" / "cassandra.env").write_text(
        "# comment\nJMX_PORT=7299\nJMX_EXPORTER_LISTEN='127.0.0.1:7070'\n"
        f'CASSANDRA_LOG_DIR="{tmp_path}/logs"\nMAX_HEAP_SIZE=1G\nJVM_EXTRA_OPTS=$(touch {tmp_path}/pwned)\n'
    )
    (unpacked / "conf" / "jvm.options").write_text(
        "-Xms2G\n-Xmx2G\n  -XX:OnOutOfMemoryError=kill -9 %p  \nnot-an-option\n"
    )
    completed = run(unpacked, "cassandra", MAX_HEAP_SIZE="3G")
    assert completed.returncode == 0, completed.stderr
    args = completed.stdout.splitlines()
    assert "-Dcassandra.jmx.local.port=7299" in args
    agent = f"{unpacked}/lib/jmx_prometheus_javaagent-{JMX}.jar"
    exporter = f"-javaagent:{agent}=127.0.0.1:7070:{unpacked}/conf/jmx_exporter.yml"
    assert exporter in args
    assert f"-Dcassandra.logdir={tmp_path}/logs" in args
    assert "-XX:OnOutOfMemoryError=kill -9 %p" in args and "not-an-option" not in args
    assert [a for a in args if a.startswith("-Xmx")] == ["-Xmx2G", "-Xmx3G"]  # the environment's, last, wins
    assert not (tmp_path / "pwned").exists()  # cassandra.env is read, never run


def test_bin_cassandra_computes_a_heap_when_none_is_set(unpacked: Path) -> None:
    args = run(unpacked, "cassandra").stdout.splitlines()
    heap = [a for a in args if a.startswith(("-Xms", "-Xmx"))]
    assert len(heap) == 2 and heap[0][4:] == heap[1][4:] and heap[0].endswith("M")
    assert 0 < int(heap[0][4:-1]) <= 8192


def test_bin_cassandra_refuses_another_java(unpacked: Path) -> None:
    completed = run(unpacked, "cassandra", FAKE_JAVA_VERSION="11.0.2")
    assert completed.returncode == 1
    assert "Java 17 is required" in completed.stderr and completed.stdout == ""


def test_the_launcher_runs_a_debian_package_layout_through_a_current_link(unpacked: Path, tmp_path: Path) -> None:
    """The role's launcher, outside any release: Debian's layout (the main jar beside lib/), CASSANDRA_HOME a
    link that is resolved at start, the exporter agent kept elsewhere (JMX_EXPORTER_JAR)."""
    share = tmp_path / "usr-share-cassandra"
    (share / "lib").mkdir(parents=True)
    for jar in (unpacked / "lib").glob("*.jar"):
        if jar.name == f"cassandra-all-{VERSION}.jar":
            shutil.copy(jar, share / f"apache-cassandra-{VERSION}.jar")
        elif not jar.name.startswith("jmx_prometheus_javaagent-"):
            shutil.copy(jar, share / "lib" / jar.name)
    agent = tmp_path / "agent" / f"jmx_prometheus_javaagent-{JMX}.jar"
    agent.parent.mkdir()
    shutil.copy(unpacked / "lib" / agent.name, agent)
    current = tmp_path / "current"
    current.symlink_to(share)
    conf = unpacked / "conf"
    launcher = cassandra.LAUNCHER_DIR / "cassandra"
    environment = {
        "PATH": os.environ["PATH"],
        "CASSANDRA_HOME": str(current),
        "CASSANDRA_CONF": str(conf),
        "JMX_EXPORTER_LISTEN": "0.0.0.0:7070",
        "JMX_EXPORTER_JAR": str(agent),
    }
    completed = subprocess.run(
        [str(launcher)], env=environment, capture_output=True, text=True, timeout=30, check=False
    )
    assert completed.returncode == 0, completed.stderr
    args = completed.stdout.splitlines()
    classpath = args[-2].split(":")
    assert str(share / f"apache-cassandra-{VERSION}.jar") in classpath  # resolved: not through current
    assert str(share / "lib" / "jamm-0.4.0.jar") in classpath
    assert not [entry for entry in classpath if "current" in entry or "jmx_prometheus_javaagent" in entry]
    assert f"-javaagent:{agent}=0.0.0.0:7070:{conf}/jmx_exporter.yml" in args
    assert f"-javaagent:{share}/lib/jamm-0.4.0.jar" in args


def test_the_artifacts_wrappers_are_the_roles_launcher(unpacked: Path) -> None:
    for name in ("cassandra", "nodetool", "common.sh"):
        assert (unpacked / "bin" / name).read_bytes() == (cassandra.LAUNCHER_DIR / name).read_bytes()


def test_bin_nodetool_targets_the_local_jmx_port(unpacked: Path) -> None:
    args = run(unpacked, "nodetool", "status", JMX_PORT="7299").stdout.splitlines()
    assert args[-4:] == ["org.apache.cassandra.tools.NodeTool", "-p", "7299", "status"]
    assert "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED" in args
    assert not [a for a in args if "jmx_prometheus_javaagent" in a]
    given = run(unpacked, "nodetool", "-p", "7400", "info").stdout.splitlines()
    assert given[-4:] == ["org.apache.cassandra.tools.NodeTool", "-p", "7400", "info"]


def test_the_gzip_stream_has_no_name(fake_tools: Path, tmp_path: Path) -> None:
    result = build_cassandra(out_dir(tmp_path))
    with gzip.open(result.path) as stream:
        assert stream.read(1)
    assert result.path.read_bytes()[3] & 0x08 == 0  # FNAME flag unset: the temporary path is not recorded


def test_mvn_errors_are_toolkit_errors() -> None:
    assert issubclass(MavenError, ToolkitError) and MavenError.exit_code == ExitCode.TASK_FAILED
    assert MavenMissingError.exit_code == ExitCode.USAGE
