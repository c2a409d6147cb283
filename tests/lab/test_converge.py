"""End to end on the lab: converge and verify `base`, and every documented exit code, on real hosts.

These run the installed `toolkit` command against podman containers that boot systemd and sshd,
reached over real SSH. They share the session's lab (tests/lab/conftest.py) and run in file order:
first converge, then the idempotence and verify checks that depend on it.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.helpers import (
    FIXTURE_PLAYBOOKS,
    on_host,
    parse_json,
    podman,
    recorded_stats,
    toolkit,
    toolkit_background,
    wait_for_file,
)

pytestmark = pytest.mark.lab
FIXTURES = {"TOOLKIT_PLAYBOOK_DIR": str(FIXTURE_PLAYBOOKS)}


def test_converge_base_converges_every_host(lab):
    result = toolkit("converge", "base", "--json")
    assert result.returncode == 0, result.stderr
    document = parse_json(result.stdout)
    assert set(document["hosts"]) == set(lab.hosts)
    assert document["exit_code"] == 0 and document["status"] == "successful"
    # The counts in --json are ansible-runner's own, host by host (checked on this run rather than on one of
    # their own: a converge of every host is slow).
    stats = recorded_stats(Path(document["artifacts"]))
    assert set(stats) == set(document["hosts"])
    for host, counts in stats.items():
        ours = document["hosts"][host]
        assert (ours["ok"], ours["changed"], ours["failed"], ours["unreachable"], ours["skipped"]) == (
            counts["ok"],
            counts["changed"],
            counts["failures"],
            counts["dark"],
            counts["skipped"],
        )


def test_second_converge_changes_nothing_and_says_so(lab):
    result = toolkit("converge", "base", "--json")
    assert result.returncode == 0, result.stderr
    document = parse_json(result.stdout)
    assert {host: stats["changed"] for host, stats in document["hosts"].items()} == dict.fromkeys(lab.hosts, 0)
    assert document["changed_tasks"] == []
    assert "no changes on any of" in result.stderr and "(idempotent)" in result.stderr


def test_check_mode_on_a_converged_fleet_reports_nothing_to_change(lab):
    result = toolkit("converge", "base", "--check", "--diff", "--json")
    assert result.returncode == 0, result.stderr
    assert parse_json(result.stdout)["totals"]["changed"] == 0


def test_verify_base_passes_on_every_host(lab):
    result = toolkit("verify", "base", "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    document = parse_json(result.stdout)
    assert set(document["hosts"]) == set(lab.hosts)
    assert all(verdict["passed"] > 0 and verdict["failed"] == 0 for verdict in document["hosts"].values())


def test_drift_is_caught_by_check_and_verify_then_repaired_by_converge(lab):
    host = sorted(lab.hosts)[0]
    on_host(host, "ln -sf /usr/share/zoneinfo/Europe/Paris /etc/localtime")
    try:
        checked = toolkit("converge", "base", "--check", "--limit", host, "--json")
        assert checked.returncode == 0, checked.stderr
        assert parse_json(checked.stdout)["hosts"][host]["changed"] >= 1
        verified = toolkit("verify", "base", "--limit", host, "--json")
        assert verified.returncode == 1, verified.stdout
        assert parse_json(verified.stdout)["hosts"][host]["failed"] >= 1
    finally:
        repaired = toolkit("converge", "base", "--limit", host)
    assert repaired.returncode == 0, repaired.stderr
    assert toolkit("verify", "base", "--limit", host).returncode == 0


def test_a_failed_task_exits_1(lab):
    result = toolkit("converge", "fail", "--json", env=FIXTURES)
    assert result.returncode == 1
    document = parse_json(result.stdout)
    assert {ref["host"] for ref in document["failed_tasks"]} == set(lab.hosts)
    assert all("planned failure" in ref["message"] for ref in document["failed_tasks"])


def test_a_host_stopped_mid_run_exits_4_naming_the_host(lab):
    victim = sorted(lab.hosts)[-1]
    on_host(victim, "rm -f /tmp/toolkit-slow-started")
    run = toolkit_background("converge", "slow", "--json", "-e", "slow_seconds=15", env=FIXTURES)
    try:
        wait_for_file(victim, "/tmp/toolkit-slow-started")
        podman("stop", "--time", "2", f"toolkit-lab-{victim}")
        stdout, stderr = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
        assert toolkit("lab", "up", "--profile", lab.profile).returncode == 0
    assert run.returncode == 4, stderr
    document = parse_json(stdout)
    assert document["exit_code"] == 4
    assert [ref["host"] for ref in document["unreachable"]] == [victim]
    assert f"unreachable: {victim}" in stderr


def test_a_held_lock_exits_5_naming_the_holder(lab):
    host = sorted(lab.hosts)[0]
    on_host(host, "rm -f /tmp/toolkit-slow-started")
    holder = toolkit_background("converge", "slow", "-e", "slow_seconds=10", env=FIXTURES)
    try:
        wait_for_file(host, "/tmp/toolkit-slow-started")
        second = toolkit("converge", "base")
    finally:
        holder.communicate(timeout=300)
    assert second.returncode == 5
    assert f"pid {holder.pid}" in second.stderr and "converge slow" in second.stderr
    assert "Traceback" not in second.stderr


def test_ctrl_c_cancels_the_run_and_exits_130(lab):
    host = sorted(lab.hosts)[0]
    on_host(host, "rm -f /tmp/toolkit-slow-started")
    run = toolkit_background("converge", "slow", "--json", "-e", "slow_seconds=30", env=FIXTURES)
    wait_for_file(host, "/tmp/toolkit-slow-started")
    started = time.monotonic()
    run.send_signal(signal.SIGINT)
    stdout, _ = run.communicate(timeout=120)
    assert run.returncode == 130
    assert time.monotonic() - started < 25, "cancel must not wait for the slow task to finish"
    document = parse_json(stdout)
    assert document["status"] == "canceled"
    shown = parse_json(toolkit("runs", "show", document["run_id"], "--json").stdout)
    assert shown["status"] == "canceled" and shown["exit_code"] == 130


def test_a_planted_secret_appears_nowhere(lab, tmp_path):
    vaulted_secret, cli_secret, vault_password = "VAULTED-6f1d2c-secret", "CLI-93ab7e-secret", "vault-pw-5c2e"
    password_file = tmp_path / "vault-pass"
    password_file.write_text(vault_password)
    secrets_file = tmp_path / "secrets.yml"
    secrets_file.write_text(f"fixture_vaulted_secret: {vaulted_secret}\n")
    vault = Path(sys.executable).parent / "ansible-vault"
    subprocess.run([str(vault), "encrypt", "--vault-password-file", str(password_file), str(secrets_file)], check=True)
    assert vaulted_secret not in secrets_file.read_text()

    result = toolkit(
        "converge",
        "secret",
        "--json",
        "-vvv",
        "-e",
        f"@{secrets_file}",
        "-e",
        f"fixture_db_password={cli_secret}",
        "--vault-password-file",
        str(password_file),
        env={**FIXTURES, "AWS_SECRET_ACCESS_KEY": "ENV-4d5e6f-secret"},
    )
    assert result.returncode == 0, result.stderr
    host = sorted(lab.hosts)[0]
    # The secrets were really used on the hosts...
    assert on_host(host, "cat /root/toolkit-fixture-vaulted").stdout.strip() == vaulted_secret
    assert on_host(host, "cat /root/toolkit-fixture-cli").stdout.strip() == cli_secret
    # ...and appear nowhere toolkit writes: --json, the live output, the runs directory, the history.
    state = Path(__file__).resolve().parents[2] / ".toolkit"
    written = [result.stdout, result.stderr]
    for path in [*state.joinpath("runs").rglob("*"), state / "toolkit.db"]:
        if path.is_file():
            written.append(path.read_bytes().decode(errors="replace"))
    for secret in (vaulted_secret, cli_secret, vault_password, "ENV-4d5e6f-secret"):
        assert not [text for text in written if secret in text], f"{secret} leaked"


def test_bad_input_runs_nothing(lab):
    runs = Path(__file__).resolve().parents[2] / ".toolkit" / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    for args, needle in (
        (("converge", "nosuch"), "unknown service"),
        (("converge", "base", "--limit", "no-such-host"), "matches no host"),
        (("converge", "base", "-e", "novalue"), "expected key=value"),
        (("converge", "base", "-i", "/nonexistent/inventory.yml"), "does not exist"),
    ):
        result = toolkit(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr
    after = set(runs.iterdir()) if runs.exists() else set()
    assert after == before, "a rejected command must not start a run"
