"""`toolkit lab` itself: status, ssh, and `down` removing exactly what `up` created.

Runs first (tests/lab/conftest.py), so its down/up cycle wipes nothing another module converged.
"""

import json

import pytest

from tests.lab.helpers import PROJECT, podman, toolkit

pytestmark = pytest.mark.lab
LAB_STATE = PROJECT / ".toolkit" / "lab"


def test_status_shows_every_host_running_and_reachable(lab):
    result = toolkit("lab", "status", "--json")
    assert result.returncode == 0, result.stderr
    statuses = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert set(statuses) == set(lab.hosts)
    for name, entry in statuses.items():
        assert entry["container"] == "running", name
        assert entry["systemd"] in ("running", "degraded"), name
        assert entry["reachable"] is True, name


def test_ssh_reaches_the_host_with_strict_host_key_checking(lab):
    host = lab.hosts[0]
    result = toolkit("lab", "ssh", host, "--", "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == host
    # The known_hosts file was filled out of band: every lab host has its key there, under name and address.
    known = (LAB_STATE / "known_hosts").read_text()
    for name in lab.hosts:
        assert f",{name} ssh-ed25519 " in known


def test_ssh_refuses_a_host_whose_key_changed(lab):
    host = lab.hosts[0]
    known = LAB_STATE / "known_hosts"
    original = known.read_text()
    # Another host's key in this host's line: what a man in the middle would present.
    lines = original.splitlines()
    own = next(line for line in lines if f",{host} " in line)
    other_key = next(line for line in lines if f",{host} " not in line).split(" ", 1)[1]
    known.write_text(original.replace(own, own.split(" ", 1)[0] + " " + other_key))
    try:
        result = toolkit("lab", "ssh", host, "--", "true")
    finally:
        known.write_text(original)
    assert result.returncode != 0
    assert "HOST IDENTIFICATION HAS CHANGED" in result.stderr or "Host key verification failed" in result.stderr


def test_missing_podman_is_a_one_line_usage_error(lab):
    # toolkit is started by its full path; nothing else is on PATH, podman included.
    result = toolkit("lab", "status", env={"PATH": "/nonexistent"})
    assert result.returncode == 2
    assert "podman is not installed" in result.stderr and "Traceback" not in result.stderr


def test_down_removes_exactly_what_up_created_and_up_restores_it(lab):
    before = {line for line in podman("ps", "--all", "--format", "{{.Names}}").stdout.split() if line}
    down = toolkit("lab", "down", timeout=300)
    assert down.returncode == 0, down.stderr
    after = {line for line in podman("ps", "--all", "--format", "{{.Names}}").stdout.split() if line}
    assert before - after == {f"toolkit-lab-{host}" for host in lab.hosts}, "down must remove every lab host"
    assert not (after - before), "down created containers"
    assert podman("network", "exists", "toolkit-lab", check=False).returncode != 0
    assert not (PROJECT / "inventories" / "lab" / "hosts.yml").exists()
    assert not (LAB_STATE / "state.json").exists() and not (LAB_STATE / "id_ed25519").exists()
    assert not (LAB_STATE / "secrets").exists(), "down must remove the lab's generated passwords"
    # The image and the package cache's content survive: the next `up` is fast and downloads nothing.
    assert podman("image", "exists", "localhost/toolkit-debian:bookworm", check=False).returncode == 0

    # With the lab down, commands that need it refuse to run, with a hint.
    converge = toolkit("converge", "base")
    assert converge.returncode == 2
    assert "the lab is not up" in converge.stderr and "toolkit lab up" in converge.stderr
    status = toolkit("lab", "status")
    assert status.returncode == 2 and "Traceback" not in status.stderr

    up = toolkit("lab", "up", "--profile", lab.profile, "--json", timeout=600)
    assert up.returncode == 0, up.stderr
    assert sorted(entry["name"] for entry in json.loads(up.stdout)["hosts"]) == sorted(lab.hosts)
