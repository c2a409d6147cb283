"""The bootstrap's building blocks: host-key trust on first use, the bounded wait for SSH, target lookup."""

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolkit.bootstrap.hostkeys import HostKey, HostKeyError, known_keys, parse_scan, trust_on_first_use
from toolkit.bootstrap.login import LoginRefused, SshLogin, prove, works
from toolkit.bootstrap.reachability import UnreachableError, wait_for_ssh
from toolkit.bootstrap.target import address_target, ec2_target, is_instance_id
from toolkit.errors import UsageError
from toolkit.exit_codes import ExitCode

# --- host keys ----------------------------------------------------------------------------------------


def new_key(tmp_path: Path, name: str) -> HostKey:
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    keytype, blob = path.with_suffix(".pub").read_text().split()[:2]
    return HostKey(keytype, blob)


def test_the_fingerprint_is_the_one_ssh_keygen_prints(tmp_path: Path) -> None:
    key = new_key(tmp_path, "k")
    printed = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True)
    assert printed.stdout.split()[1] == key.fingerprint


def test_a_new_host_is_learned_then_known(tmp_path: Path) -> None:
    known_hosts = tmp_path / "ssh" / "known_hosts"
    key = new_key(tmp_path, "k")
    first = trust_on_first_use(known_hosts, "10.0.0.5", 22, [key])
    assert first.learned
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    assert known_keys(known_hosts, "10.0.0.5") == [key]
    again = trust_on_first_use(known_hosts, "10.0.0.5", 22, [key])
    assert not again.learned
    assert known_hosts.read_text().count("10.0.0.5") == 1
    # OpenSSH itself accepts the file it would have written.
    found = subprocess.run(["ssh-keygen", "-F", "10.0.0.5", "-f", str(known_hosts)], capture_output=True, text=True)
    assert found.returncode == 0


def test_a_changed_key_is_refused_naming_the_host_and_both_fingerprints(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    old, new = new_key(tmp_path, "old"), new_key(tmp_path, "new")
    trust_on_first_use(known_hosts, "db-1.example", 2222, [old])
    before = known_hosts.read_text()
    with pytest.raises(HostKeyError) as refused:
        trust_on_first_use(known_hosts, "db-1.example", 2222, [new])
    message = refused.value.message
    assert "[db-1.example]:2222" in message and old.fingerprint in message and new.fingerprint in message
    assert "\n" not in message and refused.value.exit_code == ExitCode.TASK_FAILED
    assert known_hosts.read_text() == before, "a refused key is never written"


def test_hashed_entries_and_other_ports_are_matched_as_openssh_does(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    key, other = new_key(tmp_path, "a"), new_key(tmp_path, "b")
    known_hosts.write_text(
        f"# comment\n@revoked * {other.keytype} {other.blob}\n"
        f"10.0.0.7 {key.keytype} {key.blob}\n[10.0.0.8]:2222 {other.keytype} {other.blob}\n"
    )
    subprocess.run(["ssh-keygen", "-H", "-f", str(known_hosts)], check=True, capture_output=True)
    assert "10.0.0.7" not in known_hosts.read_text(), "the file is hashed now"
    assert known_keys(known_hosts, "10.0.0.7") == [key]
    assert known_keys(known_hosts, "10.0.0.8", 2222) == [other]
    assert known_keys(known_hosts, "10.0.0.8") == []


def test_scan_output_is_parsed_without_its_comments() -> None:
    output = "# 10.0.0.5:22 SSH-2.0-OpenSSH_9.2p1\n10.0.0.5 ssh-ed25519 AAAAC3Nza\n\n"
    assert parse_scan(output) == [HostKey("ssh-ed25519", "AAAAC3Nza")]


# --- waiting for SSH ----------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback server that sends the queued greeting to every connection."""
    greeting: list[bytes] = [b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(greeting[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], greeting
    stop.set()
    thread.join()
    listener.close()


def test_sshd_answering_ends_the_wait_with_its_banner(server: tuple[int, list[bytes]]) -> None:
    port, greeting = server
    greeting[0] = b"a pre-banner line\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
    ready = wait_for_ssh("127.0.0.1", port, timeout=5)
    assert ready.banner == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_closed_port_gives_up_at_the_timeout_saying_why() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends
    clock = FakeClock()
    with pytest.raises(UnreachableError) as gave_up:
        wait_for_ssh("127.0.0.1", port, timeout=30, clock=clock, sleep=clock.sleep)
    assert gave_up.value.message == f"127.0.0.1:{port} did not answer SSH within 30s (last attempt: connection refused)"
    assert gave_up.value.exit_code == ExitCode.UNREACHABLE
    assert sum(clock.sleeps) == pytest.approx(30) and max(clock.sleeps) <= 5


def test_a_port_that_is_not_ssh_is_not_ready(server: tuple[int, list[bytes]]) -> None:
    port, greeting = server
    greeting[0] = b"HTTP/1.1 400 Bad Request\r\n\r\n"
    clock = FakeClock()
    with pytest.raises(UnreachableError) as gave_up:
        wait_for_ssh("127.0.0.1", port, timeout=2, clock=clock, sleep=clock.sleep)
    assert "not with an SSH identification line" in gave_up.value.message


# --- the target ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["10.242.10.40", "fd00::5", "db-7.internal.example"])
def test_addresses_and_host_names_are_targets(text: str) -> None:
    assert address_target(text).address == text


@pytest.mark.parametrize("text", ["db_7!", "-x", "a..b", ""])
def test_anything_else_is_a_one_line_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        address_target(text)


def test_instance_ids_are_recognised() -> None:
    assert is_instance_id("i-0123456789abcdef0") and is_instance_id("i-0123abcd")
    assert not is_instance_id("i-012") and not is_instance_id("10.0.0.1")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def launch(region: str, tags: dict[str, str]) -> str:
    import boto3

    client = boto3.client("ec2", region_name=region)
    tag_spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    reply = client.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=tag_spec)
    return str(reply["Instances"][0]["InstanceId"])


def test_an_instance_is_found_in_the_region_that_has_it_with_its_tags(aws: None) -> None:
    instance = launch("eu-west-1", {"service": "postgresql", "env": "lab"})
    target = ec2_target(instance, ["us-east-1", "eu-west-1"])
    assert target.instance_id == instance and target.region == "eu-west-1"
    assert target.tags == {"service": "postgresql", "env": "lab"}
    assert target.address.count(".") == 3


def test_an_unknown_or_stopped_instance_is_a_one_line_error(aws: None) -> None:
    import boto3

    with pytest.raises(UsageError) as missing:
        ec2_target("i-0123456789abcdef0", ["us-east-1", "eu-west-1"])
    assert missing.value.message == "instance i-0123456789abcdef0 not found in us-east-1, eu-west-1"
    instance = launch("us-east-1", {"service": "base"})
    boto3.client("ec2", region_name="us-east-1").stop_instances(InstanceIds=[instance])
    with pytest.raises(UsageError) as stopped:
        ec2_target(instance, ["us-east-1"])
    assert "is stopped, not running" in stopped.value.message


# --- proving the login ----------------------------------------------------------------------------------


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`ssh` and `sshpass` on PATH that record their argv and environment, and refuse unless told otherwise."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "calls"
    script = (
        "#!/bin/sh\n"
        f'echo "$(basename "$0") $* SSHPASS=${{SSHPASS:-}}" >> {record}\n'
        'if [ "$(basename "$0")" = sshpass ]; then shift; exec "$@"; fi\n'
        'if [ -n "${FAKE_SSH_OK:-}" ]; then exit 0; fi\n'
        "echo 'Warning: Permanently added the host key' >&2\n"
        "echo 'admin@10.0.0.5: Permission denied (publickey).' >&2\n"
        "exit 255\n"
    )
    for name in ("ssh", "sshpass"):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return record


def test_a_refused_key_is_one_line_with_the_servers_answer_and_exit_4(fake_ssh: Path, tmp_path: Path) -> None:
    attempt = SshLogin("10.0.0.5", 22, "admin", tmp_path / "known_hosts", key=tmp_path / "wrong_key")
    with pytest.raises(LoginRefused) as refused:
        prove(attempt)
    assert refused.value.exit_code == ExitCode.UNREACHABLE
    message = refused.value.message
    assert message == (
        f"cannot log in to 10.0.0.5 as admin with key {tmp_path / 'wrong_key'}: "
        "admin@10.0.0.5: Permission denied (publickey)."
    )
    call = fake_ssh.read_text()
    assert "StrictHostKeyChecking=yes" in call and "BatchMode=yes" in call and "IdentitiesOnly=yes" in call


def test_a_password_goes_through_the_environment_never_the_command_line(
    fake_ssh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SSH_OK", "1")
    attempt = SshLogin("10.0.0.5", 2222, "debian", tmp_path / "known_hosts", password="hunter2-login")
    assert attempt.command("true")[:2] == ["sshpass", "-e"]
    assert "hunter2-login" not in " ".join(attempt.command("true"))
    prove(attempt)
    sshpass_call, ssh_call = fake_ssh.read_text().splitlines()
    assert sshpass_call.endswith("SSHPASS=hunter2-login"), "sshpass reads it from its environment"
    assert "hunter2-login" not in sshpass_call.removesuffix("SSHPASS=hunter2-login")
    assert "PubkeyAuthentication=no" in ssh_call and "-p 2222" in ssh_call


def test_works_is_false_rather_than_an_error(fake_ssh: Path, tmp_path: Path) -> None:
    assert not works(SshLogin("10.0.0.5", 22, "toolkit", tmp_path / "known_hosts"), "sudo", "-n", "true")
