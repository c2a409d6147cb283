"""Helpers for lab tests: run the real `toolkit` CLI and podman as a user would."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[2]
TOOLKIT = Path(sys.executable).parent / "toolkit"
FIXTURE_PLAYBOOKS = PROJECT / "tests" / "fixtures" / "playbooks"


def toolkit(*args: str, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    """Run the installed toolkit command (non-TTY, as from cron or CI)."""
    return subprocess.run(
        [str(TOOLKIT), *args],
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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
    service: str, *args: str, extra: dict[str, Any] | None = None, tmp_path: Path | None = None
) -> dict[str, Any]:
    """`toolkit converge SERVICE --json` (extra vars through a file), its document plus exit code and stderr."""
    command = ["converge", service, "--json", *args]
    if extra is not None:
        assert tmp_path is not None, "extra vars need a tmp_path for their file"
        extra_file = tmp_path / "extra.yml"
        extra_file.write_text(yaml.safe_dump(extra))
        command += ["-e", f"@{extra_file}"]
    result = toolkit(*command)
    document = parse_json(result.stdout) if result.stdout.strip() else {}
    document["_returncode"] = result.returncode
    document["_stderr"] = result.stderr
    return document


def changed_on(document: dict[str, Any], task: str) -> list[str]:
    """The hosts on which a task (by name) changed something, in the order the run changed them."""
    return [ref["host"] for ref in document["changed_tasks"] if ref["task"].endswith(task)]
