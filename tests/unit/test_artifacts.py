"""Run directories: creation, rotation, and scrubbing secrets out of what ansible-runner leaves behind."""

import json
import re
import stat
from pathlib import Path

from toolkit.runner import artifacts
from toolkit.runner.artifacts import REDACTED, RunDirectory

# Contains a quote and a backslash, so its JSON-escaped forms differ from the raw value.
SECRET = 'Pa"ss\\w0rd-7781'


def escaped(value: str, times: int = 1) -> str:
    for _ in range(times):
        value = json.dumps(value)[1:-1]
    return value


def test_create_makes_a_private_directory_per_run(tmp_path: Path) -> None:
    first = artifacts.create(tmp_path / "runs")
    second = artifacts.create(tmp_path / "runs")
    assert first.run_id != second.run_id
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", first.run_id)
    assert stat.S_IMODE(first.private_data_dir.stat().st_mode) == 0o700
    assert first.artifacts == tmp_path / "runs" / first.run_id / "artifacts" / first.run_id


def make_runs(runs: Path, names: list[str]) -> None:
    for name in names:
        (runs / name).mkdir(parents=True)


def test_rotate_keeps_the_newest_including_the_current_one(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_runs(runs, [f"2026010{day}T000000Z-aaaaaa" for day in range(1, 7)])
    current = "20260106T000000Z-aaaaaa"
    (runs / "not-a-run.txt").write_text("files are left alone")

    deleted = artifacts.rotate(runs, keep=3, current=current)

    assert deleted == ["20260101T000000Z-aaaaaa", "20260102T000000Z-aaaaaa", "20260103T000000Z-aaaaaa"]
    assert sorted(p.name for p in runs.iterdir()) == [
        "20260104T000000Z-aaaaaa",
        "20260105T000000Z-aaaaaa",
        current,
        "not-a-run.txt",
    ]


def test_rotate_never_deletes_the_current_run_even_if_it_sorts_oldest(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_runs(runs, ["20260101T000000Z-aaaaaa", "20260102T000000Z-aaaaaa", "20260103T000000Z-aaaaaa"])
    deleted = artifacts.rotate(runs, keep=1, current="20260101T000000Z-aaaaaa")
    assert sorted(deleted) == ["20260102T000000Z-aaaaaa", "20260103T000000Z-aaaaaa"]
    assert [p.name for p in runs.iterdir()] == ["20260101T000000Z-aaaaaa"]


def test_rotate_does_nothing_below_the_limit_or_without_a_directory(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert artifacts.rotate(runs, keep=3, current="x") == []
    make_runs(runs, ["a", "b"])
    assert artifacts.rotate(runs, keep=3, current="b") == []
    assert artifacts.rotate(runs, keep=0, current="b") == []  # 0 is not "delete everything"
    assert sorted(p.name for p in runs.iterdir()) == ["a", "b"]


def make_run_dir(tmp_path: Path) -> RunDirectory:
    """A run directory as ansible-runner leaves it, with a secret in every place it can end up."""
    run = RunDirectory("run1", tmp_path / "runs" / "run1")
    run.artifacts.mkdir(parents=True)
    environment = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "ANSIBLE_CONFIG": "/srv/ansible.cfg",
        "ANSIBLE_VAULT_PASSWORD": SECRET,  # allow-listed prefix, secret name: kept but redacted
        "TOOLKIT_HOME": "/state",
        "LC_ALL": "C.UTF-8",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value",  # not allow-listed: dropped
        "SHELL": "/bin/bash",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
    }
    command = {"command": ["ansible-playbook", "-e", "@/dev/shm/x.json", "base.yml"], "cwd": "/srv", "env": environment}
    (run.artifacts / "command").write_text(json.dumps(command))
    (run.private_data_dir / "env").mkdir()
    (run.private_data_dir / "env" / "envvars").write_text(f"DB_PASSWORD: {SECRET}\n")
    events = run.artifacts / "job_events"
    events.mkdir()
    res = {"msg": f"login failed for {SECRET}"}
    stdout = f"fatal: [web-1]: FAILED! => {json.dumps(res)}"  # Ansible's rendering: the secret escaped once
    event = {"event": "runner_on_failed", "stdout": stdout, "event_data": {"res": res}}  # the file: escaped twice
    (events / "1-abc.json").write_text(json.dumps(event))
    (run.artifacts / "stdout").write_text(f"TASK [Connect as {SECRET}]\nfatal: [web-1]: FAILED! => {json.dumps(res)}\n")
    (run.artifacts / "binary").write_bytes(b"\xff\xfe\x00" + SECRET.encode())
    return run


def every_text(run: RunDirectory) -> dict[Path, str]:
    return {
        path: path.read_text(errors="replace")
        for path in run.private_data_dir.rglob("*")
        if path.is_file() and path.name != "binary"
    }


def test_make_run_dir_really_plants_every_form_of_the_secret(tmp_path: Path) -> None:
    # Guards the next test: if the fixture stopped planting a form, scrubbing it would prove nothing.
    texts = "".join(every_text(make_run_dir(tmp_path)).values())
    for form in (SECRET, escaped(SECRET), escaped(SECRET, 2)):
        assert form in texts, form


def test_scrub_removes_every_form_of_every_secret_from_every_file(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path)
    artifacts.scrub(run, [SECRET, "aws-secret-value"])

    assert not (run.private_data_dir / "env").exists()
    for path, text in every_text(run).items():
        for form in (SECRET, escaped(SECRET), escaped(SECRET, 2), "aws-secret-value", "w0rd-7781"):
            assert form not in text, f"{form!r} survived in {path}"
    # Redaction happens inside JSON strings: the event files must still be valid JSON.
    event = json.loads((run.artifacts / "job_events" / "1-abc.json").read_text())
    assert event["event_data"]["res"]["msg"] == f"login failed for {REDACTED}"
    assert REDACTED in (run.artifacts / "stdout").read_text()
    # Binary files are skipped rather than crashing the scrub.
    assert (run.artifacts / "binary").read_bytes().startswith(b"\xff\xfe\x00")


def test_scrub_reduces_the_recorded_environment_to_the_allow_list(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path)
    artifacts.scrub(run, [])
    recorded = json.loads((run.artifacts / "command").read_text())
    assert recorded["env"] == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "ANSIBLE_CONFIG": "/srv/ansible.cfg",
        "ANSIBLE_VAULT_PASSWORD": REDACTED,
        "TOOLKIT_HOME": "/state",
        "LC_ALL": "C.UTF-8",
    }
    assert recorded["command"] == ["ansible-playbook", "-e", "@/dev/shm/x.json", "base.yml"]


def test_scrub_without_a_command_file_still_deletes_env(tmp_path: Path) -> None:
    run = RunDirectory("run2", tmp_path / "run2")
    (run.private_data_dir / "env").mkdir(parents=True)
    artifacts.scrub(run, [])
    assert not (run.private_data_dir / "env").exists()


def test_short_values_are_never_redacted() -> None:
    # "abc" would otherwise be replaced inside every word that contains it.
    assert artifacts.redact("abc and abcd", ["abc"]) == "abc and abcd"
    assert artifacts.redact("abc and abcd", ["abcd"]) == f"abc and {REDACTED}"


def test_redact_replaces_the_longest_secret_first() -> None:
    assert artifacts.redact("token=abcdefgh", ["abcd", "abcdefgh"]) == f"token={REDACTED}"


def test_redact_covers_the_json_escaped_form_of_non_ascii_values() -> None:
    secret = "pässwörd"
    text = json.dumps({"msg": secret})  # ensure_ascii: p\u00e4ssw\u00f6rd
    assert secret not in text
    assert artifacts.redact(text, [secret]) == json.dumps({"msg": REDACTED})


def test_secret_env_values_are_picked_by_name() -> None:
    environ = {
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "TOOLKIT_VAULT_PASSWORD": "vault-pass",
        "GITHUB_TOKEN": "gh-token",
        "PATH": "/usr/bin",
        "EMPTY_PASSWORD": "",
    }
    assert sorted(artifacts.secret_env_values(environ)) == ["aws-secret", "gh-token", "vault-pass"]
