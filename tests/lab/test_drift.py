"""`toolkit drift` on the lab: tampered hosts are found (and only they), fixed by --remediate, recorded.

The service checked is node_exporter (on every host, quick to converge), tampered four ways out of band
(through podman, never through Ansible): a managed config line edited, a directory's mode changed, the
service stopped, the package removed.
"""

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.helpers import (
    CONVERGED,
    PROJECT,
    drift_runs,
    ensure_converged,
    on_host,
    parse_json,
    podman,
    start_cron,
    toolkit,
    toolkit_background,
    wait_until_no_drift_runs,
)

pytestmark = pytest.mark.lab

ARGS_FILE = "/etc/default/prometheus-node-exporter"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
WRITE_ARGS = "node_exporter : Write node_exporter's command-line arguments."
TEXTFILE_MODE = "node_exporter : Create the textfile directory, writable by root and readable by the exporter's group."
START = "node_exporter : Enable and start node_exporter."
INSTALL = "_apt : Install the missing packages of node_exporter"


@pytest.fixture(scope="module")
def fleet(lab):
    """The lab with base and node_exporter converged: nothing drifts."""
    ensure_converged("base", "node_exporter")
    return lab


def drift(*args: str) -> tuple[int, dict, str]:
    result = toolkit("drift", "node_exporter", "--json", *args)
    assert result.stdout, result.stderr
    return result.returncode, parse_json(result.stdout), result.stderr


def promtool_check(path: Path) -> None:
    promtool = shutil.which("promtool", path=str(Path(sys.executable).parent)) or shutil.which("promtool")
    assert promtool, "promtool comes from scripts/setup"
    checked = subprocess.run([promtool, "check", "metrics"], input=path.read_text(), capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_tampering_is_found_on_the_right_hosts_fixed_by_remediate_and_recorded(fleet, tmp_path):
    a, b, c = "postgresql-1", "cassandra-1", "cassandra-2"
    assert on_host(a, f"sed -i 's/^ARGS=\"/ARGS=\"--collector.processes /' {ARGS_FILE}").returncode == 0
    assert on_host(a, f"chmod 0777 {TEXTFILE_DIR}").returncode == 0
    assert on_host(b, "systemctl stop prometheus-node-exporter").returncode == 0
    removed = on_host(c, "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q prometheus-node-exporter")
    assert removed.returncode == 0, removed.stderr

    code, found, stderr = drift("--textfile-dir", str(tmp_path))
    assert code == 3, stderr
    assert {(d["host"], d["task"]) for d in found["drift"]} == {
        (a, WRITE_ARGS),
        (a, TEXTFILE_MODE),
        (b, START),
        (c, INSTALL),
    }
    diffs = {(d["host"], d["task"]): d["diff"] for d in found["drift"]}
    assert '-ARGS="--collector.processes ' in diffs[(a, WRITE_ARGS)]
    assert "-mode: 0777" in diffs[(a, TEXTFILE_MODE)] and "+mode: 0750" in diffs[(a, TEXTFILE_MODE)]
    assert "prometheus-node-exporter" in diffs[(c, INSTALL)]
    metrics = tmp_path / "toolkit_drift_node_exporter.prom"
    promtool_check(metrics)
    text = metrics.read_text()
    assert f'toolkit_drift_resources{{target="node_exporter",host="{a}",service="node_exporter"}} 2' in text
    assert 'toolkit_drift_resources{target="node_exporter",host="prometheus-1",service="node_exporter"} 0' in text

    code, fixed, stderr = drift("--remediate", "--textfile-dir", str(tmp_path))
    assert code == 0, stderr
    assert sorted(fixed["remediation"]["hosts"]) == sorted([a, b, c])
    assert fixed["remediation"]["recheck"]["drift"] == []
    # Fixed on the hosts themselves, not only in toolkit's eyes.
    assert on_host(b, "systemctl is-active prometheus-node-exporter").stdout.strip() == "active"
    assert on_host(a, f"stat -c %a {TEXTFILE_DIR}").stdout.strip() == "750"
    assert on_host(a, f"grep -c -- --collector.processes {ARGS_FILE}").stdout.strip() == "0"
    assert on_host(c, "dpkg-query -W -f='${Status}' prometheus-node-exporter").stdout == "install ok installed"
    assert 'toolkit_drift_resources{target="node_exporter",host="postgresql-1",service="node_exporter"} 0' in (
        metrics.read_text()
    )

    code, again, stderr = drift()
    assert code == 0 and again["drift"] == [], stderr

    # History: each resource with the first seen the check reported, resolved by the re-check as remediated.
    history = json.loads(toolkit("drift", "history", "--json", "--last", "500").stdout)
    recheck = fixed["remediation"]["recheck"]["run_id"]
    resolved = {(r["host"], r["task"]): r for r in history if r["resolved_run"] == recheck}
    assert set(resolved) == {(a, WRITE_ARGS), (a, TEXTFILE_MODE), (b, START), (c, INSTALL)}
    first_seen = {(d["host"], d["task"]): d["first_seen"] for d in found["drift"]}
    for key, record in resolved.items():
        assert record["resolution"] == "remediated"
        assert record["first_seen"] == first_seen[key] <= record["resolved_at"]


def test_an_ignore_entry_silences_exactly_its_match_until_it_expires(fleet, tmp_path):
    host = "cassandra-3"
    today = dt.datetime.now(dt.UTC).date()
    ignore = tmp_path / "drift-ignore.yml"

    def ignore_until(day: dt.date) -> None:
        ignore.write_text(
            "ignores:\n"
            f"  - host: {host}\n"
            "    task: 'node_exporter : Enable and start*'\n"
            "    reason: CHG-42 exporter stopped during a disk migration\n"
            f"    expires: {day.isoformat()}\n"
        )

    assert on_host(host, "systemctl stop prometheus-node-exporter").returncode == 0
    on_host("prometheus-1", f"chmod 0700 {TEXTFILE_DIR}")
    try:
        ignore_until(today + dt.timedelta(days=1))
        code, silenced, stderr = drift("--ignore-file", str(ignore))
        assert code == 3, stderr  # prometheus-1's change is not covered by the entry
        assert [(d["host"], d["task"]) for d in silenced["ignored"]] == [(host, START)]
        assert [(d["host"], d["task"]) for d in silenced["drift"]] == [("prometheus-1", TEXTFILE_MODE)]
        assert "CHG-42" in stderr

        ignore_until(today - dt.timedelta(days=1))
        code, expired, stderr = drift("--ignore-file", str(ignore))
        assert code == 3, stderr
        assert {(d["host"], d["task"]) for d in expired["drift"]} == {(host, START), ("prometheus-1", TEXTFILE_MODE)}
        assert [(d["host"], d["task"]) for d in expired["expired_ignores"]] == [(host, START)]
        assert "expired on" in stderr
    finally:
        assert toolkit("converge", "node_exporter", "--limit", f"{host},prometheus-1").returncode == 0


def test_a_host_stopped_during_drift_exits_4_never_0(fleet, tmp_path):
    victim = "postgresql-2"
    started = time.time()
    run = toolkit_background("drift", "node_exporter", "--json", "--textfile-dir", str(tmp_path))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _drift_running_since(started):
            time.sleep(0.2)
        podman("stop", "--time", "1", f"toolkit-lab-{victim}")
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
        assert toolkit("lab", "up", "--profile", fleet.profile).returncode == 0
    assert run.returncode == 4, stderr
    document = parse_json(stdout)
    assert document["hosts"][victim]["unreachable"] is True
    assert f"not checked (unreachable): {victim}" in stderr
    text = (tmp_path / "toolkit_drift_node_exporter.prom").read_text()
    assert f'toolkit_drift_host_unreachable{{target="node_exporter",host="{victim}"}} 1' in text
    assert 'toolkit_drift_last_run_exit_code{target="node_exporter"} 4' in text


def _drift_running_since(started: float) -> bool:
    runs = PROJECT / ".toolkit" / "runs"
    return any(p.stat().st_mtime >= started for p in runs.iterdir()) if runs.is_dir() else False


def test_two_overlapping_drift_runs_never_both_execute(fleet):
    first = toolkit_background("drift", "node_exporter")
    second = toolkit_background("drift", "node_exporter")
    outcomes = sorted([first.wait(timeout=600), second.wait(timeout=600)])
    assert outcomes == [0, 5], (
        first.stderr.read() if first.stderr else "",
        second.stderr.read() if second.stderr else "",
    )


def test_the_schedule_runs_drift_and_its_metrics_parse(fleet, tmp_path):
    """cron is the backend on this controller (PID 1 is not systemd): a real cron daemon runs the job."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    installed = toolkit(
        "drift", "schedule", "install", "node_exporter", "--every", "1m", "--backend", "cron",
        env={"TOOLKIT_TEXTFILE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    daemon = start_cron()
    try:
        scheduled = _wait_for_scheduled_run(since=started, timeout=180)
    finally:
        assert toolkit("drift", "schedule", "remove", "node_exporter").returncode == 0
        wait_until_no_drift_runs(timeout=300)  # a job outlives cron: let it release the lock first
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)
    assert scheduled["kind"] == "drift" and scheduled["exit_code"] == 0, scheduled
    metrics = tmp_path / "toolkit_drift_node_exporter.prom"
    promtool_check(metrics)
    assert 'toolkit_drift_last_run_exit_code{target="node_exporter"} 0' in metrics.read_text()


def _wait_for_scheduled_run(since: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in drift_runs():
            if run["note"] == "scheduled" and run["started_at"] >= since and run["status"] != "running":
                return run
        time.sleep(5)
    raise AssertionError(f"no scheduled drift run finished within {timeout}s of {since}")


def test_a_host_without_the_hardening_packages_drifts_rather_than_failing_the_check(fleet):
    """Check mode on a host whose hardening packages are gone: services and handlers of packages not installed are
    reported through the install, never as failed tasks (a failed check would hide the drift: exit 1)."""
    host = "prometheus-1"
    purged = on_host(host, "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q fail2ban acct auditd")
    CONVERGED.discard("hardening")  # the host is no longer as the site converge left it
    assert purged.returncode == 0, purged.stderr
    result = toolkit("drift", "hardening", "--limit", host, "--json")
    document = parse_json(result.stdout)
    assert document["failed"] == [], document["failed"]
    assert result.returncode == 3, result.stderr
    assert "_apt : Install the missing packages of the hardening areas" in {d["task"] for d in document["drift"]}
