"""-e parsing: what is accepted, what is a one-line usage error, and how inline values reach Ansible."""

import json
import stat
from pathlib import Path

import pytest

from toolkit.errors import UsageError
from toolkit.exit_codes import ExitCode
from toolkit.runner.extravars import ExtraVars, extra_vars_arguments, parse_extra_vars


def usage_error(items: list[str]) -> UsageError:
    with pytest.raises(UsageError) as raised:
        parse_extra_vars(items)
    error = raised.value
    # The CLI prints the message as one line: a newline would break that (and scripts grepping stderr).
    assert "\n" not in error.message
    assert error.exit_code == ExitCode.USAGE
    return error


def test_key_value_pairs_become_inline_vars_and_the_last_repeat_wins() -> None:
    extra = parse_extra_vars(["base_timezone=UTC", "url=http://x/?a=b", "empty=", "base_timezone=Europe/Paris"])
    assert extra.inline == {"base_timezone": "Europe/Paris", "url": "http://x/?a=b", "empty": ""}
    assert extra.files == ()
    assert not extra.is_empty()


def test_no_items_is_empty() -> None:
    assert parse_extra_vars([]).is_empty()


def test_a_yaml_mapping_file_is_passed_by_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "vars.yml").write_text("base_timezone: UTC\nbase_users: [alice]\n")
    (tmp_path / "blank.yml").write_text("# only a comment: loads as None, which Ansible accepts\n")
    monkeypatch.chdir(tmp_path)
    extra = parse_extra_vars(["@vars.yml", "@blank.yml"])
    assert extra.files == (tmp_path / "vars.yml", tmp_path / "blank.yml")
    assert all(path.is_absolute() for path in extra.files)  # the run's cwd is the project, not ours
    assert extra.inline == {}


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yml"
    path.write_text("- a\n- b\n")
    assert "must hold a mapping" in usage_error([f"@{path}"]).message


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("a: 1\nb: 2\n  c: 3\n")
    message = usage_error([f"@{path}"]).message
    assert "not valid YAML (line 3)" in message
    assert str(path) in message


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    assert "no such file" in usage_error([f"@{tmp_path / 'nope.yml'}"]).message


def test_an_at_sign_without_a_file_is_refused() -> None:
    assert "needs a file name" in usage_error(["@"]).message


def test_a_vaulted_file_is_passed_through_unparsed(tmp_path: Path) -> None:
    # Not a YAML mapping (it is a scalar once loaded): accepted only because it is never parsed.
    path = tmp_path / "secrets.yml"
    path.write_text("$ANSIBLE_VAULT;1.1;AES256\n6162636465666768\n")
    assert parse_extra_vars([f"@{path}"]).files == (path,)


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("novalue", "expected key=value or @file"),
        ("=value", "expected key=value or @file"),
        ("1abc=x", "is not a valid variable name"),
        ("my-var=x", "is not a valid variable name"),
        ("a b=x", "is not a valid variable name"),
        ('{"a": 1}', "inline JSON is not supported"),
        (' {"a": 1}', "inline JSON is not supported"),
        ("multi\nline", "expected key=value or @file"),
    ],
)
def test_malformed_items_are_one_line_usage_errors(item: str, fragment: str) -> None:
    assert fragment in usage_error(["ok=1", item]).message


@pytest.mark.parametrize(
    "name",
    [
        "db_password",
        "PASSWD",
        "client_secret",
        "auth_token",
        "aws_credentials",
        "private_thing",
        "api_key",
        "apikey",
        "aws_access_key",
        "ssh_key",
        "encryption_key",
        "key",
    ],
)
def test_secret_named_values_are_secret(name: str) -> None:
    assert parse_extra_vars([f"{name}=hunter22", "base_timezone=UTC"]).secret_values() == ["hunter22"]


def test_other_values_and_empty_secrets_are_not_secret() -> None:
    extra = parse_extra_vars(
        [
            "base_timezone=UTC",
            "port=5432",
            "username=alice",
            "db_password=",
            "cassandra_keyspace=ks",
            "host_key_checking=True",
        ]
    )
    assert extra.secret_values() == []


def test_files_only_need_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    extra = ExtraVars(files=(tmp_path / "a.yml",))
    with extra_vars_arguments(extra) as args:
        assert args == ["-e", f"@{tmp_path / 'a.yml'}"]
        assert list(runtime.iterdir()) == []


def test_inline_vars_go_through_a_private_file_that_is_gone_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # memory-backed storage is preferred
    extra = ExtraVars(inline={"db_password": "hunter22", "port": "5432"}, files=(tmp_path / "a.yml",))
    with extra_vars_arguments(extra) as args:
        # Files first, then the inline file: inline values win, as they would on ansible-playbook's command line.
        assert args[:3] == ["-e", f"@{tmp_path / 'a.yml'}", "-e"]
        handed = Path(args[3].removeprefix("@"))
        assert handed.parent == runtime
        assert stat.S_IMODE(handed.stat().st_mode) == 0o600
        assert json.loads(handed.read_text()) == {"db_password": "hunter22", "port": "5432"}
    assert not handed.exists()
    assert list(runtime.iterdir()) == []


def test_the_private_file_is_removed_when_the_run_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(RuntimeError), extra_vars_arguments(ExtraVars(inline={"a": "1"})) as args:
        handed = Path(args[-1].removeprefix("@"))
        raise RuntimeError("the run blew up")
    assert not handed.exists()
