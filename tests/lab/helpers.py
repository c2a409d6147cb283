"""Helpers for lab tests: run the real `toolkit` CLI and podman as a user would."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[2]
TOOLKIT = Path(sys.executable).parent / "toolkit"
FIXTURE_PLAYBOOKS = PROJECT / "tests" / "fixtures" / "playbooks"
# Services that a plain `toolkit converge SERVICE` (every host, no --check, no extra vars, the lab inventory)
# brought to their desired state earlier in this pytest session. A no-change converge costs a minute or more,
# so module fixtures converge only what is not here (ensure_converged). A later converge of the service with
# extra vars or another inventory takes it out again; a test that disturbs a host by hand repairs it itself.
CONVERGED: set[str] = set()
# Services a successful converge on every lab host installed in this session, as the code says or not (extra
# vars, a changed setting left running): their software is there and serving. See ensure_installed.
INSTALLED: set[str] = set()
PLAIN_CONVERGE_FLAGS = {"--json", "--diff"}
# What `toolkit converge site` converges (playbooks/site.yml), in its order.
SITE = ("base", "hardening", "node_exporter", "postgresql", "cassandra", "prometheus")
REFUSED_BEFORE_ANY_RUN = {2, 5, 6}  # bad input, the lock held, the budget gate closed: no host was touched


def toolkit(
    *args: str, env: dict[str, str] | None = None, timeout: float = 1200, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed toolkit command (non-TTY, as from cron or CI), with `stdin` as its input if given."""
    result = subprocess.run(
        [str(TOOLKIT), *args],
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    _track_converge(args, result.returncode, env)
    return result


def _track_converge(args: tuple[str, ...], returncode: int, env: dict[str, str] | None) -> None:
    if args[:2] == ("lab", "down"):
        CONVERGED.clear()  # the hosts are gone; the next `up` makes new ones (an `up` alone restarts them)
        INSTALLED.clear()
        return
    if len(args) < 2 or args[0] != "converge" or "--check" in args or "-C" in args:
        return
    services, words = SITE if args[1] == "site" else (args[1],), set(args[2:])
    if returncode in REFUSED_BEFORE_ANY_RUN:
        return
    if returncode == 0 and not words & {"-i", "--inventory", "-l", "--limit"}:
        INSTALLED.update(services)
    if env or words & {"-e", "--extra-vars", "-i", "--inventory"} or returncode != 0:
        CONVERGED.difference_update(services)
    elif words <= PLAIN_CONVERGE_FLAGS:
        CONVERGED.update(services)


def ensure_converged(*services: str) -> None:
    """Converge each service on the whole lab unless a plain converge of it already ran in this session."""
    for service in services:
        if service not in CONVERGED:
            result = toolkit("converge", service)
            assert result.returncode == 0, f"converge {service}: {result.stderr}"


def ensure_installed(*services: str) -> None:
    """Converge each service on the whole lab unless a converge of it (plain or not) already succeeded in this
    session: for tests that need a service present and running, not exactly as the code says."""
    for service in services:
        if service not in INSTALLED | CONVERGED:
            result = toolkit("converge", service)
            assert result.returncode == 0, f"converge {service}: {result.stderr}"


def toolkit_background(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(TOOLKIT), *args],
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def parse_json(stdout: str) -> dict[str, Any]:
    document = json.loads(stdout)
    assert isinstance(document, dict)
    return document


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(PROJECT / ".toolkit" / "lab" / "containers.conf")}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=check, timeout=120)


def container(host: str) -> str:
    return f"toolkit-lab-{host}"


def on_host(host: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command inside a lab host, out of band (not through Ansible)."""
    return podman("exec", container(host), "sh", "-c", command, check=False)


def wait_for_file(host: str, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if on_host(host, f"test -e {path}").returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"{path} did not appear on {host} within {timeout}s")


def recorded_stats(artifacts: Path) -> dict[str, dict[str, int]]:
    """ansible-runner's own playbook_on_stats event, read back from the run's artifacts."""
    for event_file in (artifacts / "job_events").glob("*.json"):
        event = json.loads(event_file.read_text())
        if event.get("event") == "playbook_on_stats":
            data = event["event_data"]
            keys = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
            hosts = set().union(*(data.get(k) or {} for k in keys))
            return {h: {k: int((data.get(k) or {}).get(h, 0)) for k in keys} for h in hosts}
    raise AssertionError(f"no playbook_on_stats event in {artifacts}")


def converge_json(
    service: str,
    *args: str,
    extra: dict[str, Any] | None = None,
    tmp_path: Path | None = None,
    timeout: float = 1200,
) -> dict[str, Any]:
    """`toolkit converge SERVICE --json` (extra vars through a file), its document plus exit code and stderr."""
    command = ["converge", service, "--json", *args]
    if extra is not None:
        assert tmp_path is not None, "extra vars need a tmp_path for their file"
        extra_file = tmp_path / "extra.yml"
        extra_file.write_text(yaml.safe_dump(extra))
        command += ["-e", f"@{extra_file}"]
    result = toolkit(*command, timeout=timeout)
    document = parse_json(result.stdout) if result.stdout.strip() else {}
    document["_returncode"] = result.returncode
    document["_stderr"] = result.stderr
    return document


def changed_on(document: dict[str, Any], task: str) -> list[str]:
    """The hosts on which a task (by name) changed something, in the order the run changed them."""
    return [ref["host"] for ref in document["changed_tasks"] if ref["task"].endswith(task)]


PROMETHEUS_ADDRESS = "10.242.10.31"  # prometheus-1, the lab's Prometheus server


def prometheus_api(path: str) -> Any:
    """Prometheus's HTTP API from this controller, through the lab network (as an operator reaches it)."""
    with urllib.request.urlopen(f"http://{PROMETHEUS_ADDRESS}:9090{path}", timeout=10) as response:
        return json.loads(response.read())["data"]


def node_target_health(instance: str) -> str:
    """What the lab's Prometheus says of the host's node exporter: up, down, unknown, or absent."""
    targets = prometheus_api("/api/v1/targets?state=active")["activeTargets"]
    found = [t["health"] for t in targets if t["labels"]["job"] == "node" and t["labels"]["instance"] == instance]
    return str(found[0]) if found else "absent"


def assert_a_streaming_replica_that_prometheus_scrapes(name: str, address: str, primary: str) -> None:
    """The primary streams WAL to the address, and Prometheus scrapes the host's node exporter (within 90 s)."""
    query = f"SELECT state FROM pg_stat_replication WHERE client_addr = '{address}'"
    streaming = on_host(primary, f'su postgres -c "psql -tAc \\"{query}\\""')
    assert streaming.stdout.strip() == "streaming", streaming.stdout + streaming.stderr
    deadline = time.monotonic() + 90
    while (health := node_target_health(name)) != "up":
        assert time.monotonic() < deadline, f"Prometheus reports {name}'s node exporter {health}"
        time.sleep(3)


def forget_bootstrapped_replica(name: str, address: str, primary: str) -> None:
    """After a bootstrapped replica's container is gone: its known host key, its slot on the primary, the
    primary's rules for it and Prometheus's targets, so the lab is the fleet it was before."""
    known_hosts = PROJECT / ".toolkit" / "lab" / "known_hosts"
    subprocess.run(["ssh-keygen", "-R", address, "-f", str(known_hosts)], capture_output=True, check=False)
    slot = name.replace("-", "_")
    on_host(primary, f'su postgres -c "psql -c \\"SELECT pg_drop_replication_slot(\'{slot}\')\\""')
    toolkit("converge", "postgresql", "--limit", "postgresql_primary")
    toolkit("converge", "prometheus")


def start_cron() -> subprocess.Popen[bytes] | None:
    """A cron daemon for the test, or None when one already runs on this controller."""
    daemon = subprocess.Popen(["cron", "-f"], start_new_session=True, stderr=subprocess.PIPE)
    time.sleep(1)
    if daemon.poll() is None:
        return daemon
    message = daemon.stderr.read().decode() if daemon.stderr else ""
    assert "can't lock" in message, f"cron did not start: {message}"
    return None


def drift_runs() -> list[dict[str, Any]]:
    listed = toolkit("runs", "list", "--kind", "drift", "--last", "20", "--json")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout))


def wait_until_no_drift_runs(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(run["status"] == "running" for run in drift_runs()):
        time.sleep(2)
