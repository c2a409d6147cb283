"""resolve(): the inventory is parsed in-process before anything runs; bad input is a one-line usage error."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.unit.conftest import Project
from toolkit.errors import UsageError
from toolkit.exit_codes import ExitCode
from toolkit.runner.inventory import resolve

GROUPS = {"web": ["web-1", "web-2", "web-10"], "db": ["db-1"]}


def usage_error(source: Path, limit: str | None = None) -> UsageError:
    with pytest.raises(UsageError) as raised:
        resolve(source, limit)
    assert "\n" not in raised.value.message
    assert raised.value.exit_code == ExitCode.USAGE
    return raised.value


def test_a_missing_inventory_is_a_usage_error(tmp_path: Path) -> None:
    assert usage_error(tmp_path / "nope.yml").message == f"inventory {tmp_path / 'nope.yml'} does not exist"


@contextmanager
def stderr_on_fd2() -> Iterator[None]:
    """sys.stderr writing to fd 2, as in the CLI. pytest swaps in its own file object (again at the start of
    each test's call phase, hence not a fixture), which would bypass the fd-level redirection resolve() uses
    to fold Ansible's chatter into its one-line error."""
    saved = sys.stderr
    with open(2, "w", closefd=False) as stream:
        sys.stderr = stream
        try:
            yield
        finally:
            sys.stderr = saved


def test_malformed_yaml_is_a_usage_error_with_the_yaml_problem(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.yml"
    source.write_text("all:\n  hosts:\n    web-1:\n   bad: [\n")
    with stderr_on_fd2():
        message = usage_error(source).message
    assert message.startswith(f"cannot parse inventory {source}: ")
    assert "YAML parsing failed" in message
    # Ansible's warnings and tracebacks go to fd 2 while parsing: they are folded into the one line instead.
    assert capfd.readouterr().err == ""


def test_an_inventory_without_hosts_is_a_usage_error_hinting_at_the_lab(tmp_path: Path) -> None:
    source = tmp_path / "empty.yml"
    source.write_text("all:\n  children:\n    web:\n      hosts: {}\n")
    error = usage_error(source)
    assert error.message == f"inventory {source} has no hosts"
    assert error.hint is not None
    assert "toolkit lab up" in error.hint


def test_a_limit_matching_nothing_is_a_usage_error_listing_hosts(project: Project) -> None:
    source = project.inventory(GROUPS)
    error = usage_error(source, "cassandra")
    assert error.message == f"--limit 'cassandra' matches no host in {source}"
    assert error.hint == "hosts: db-1, web-1, web-10, web-2"


def test_a_good_inventory_resolves_the_limited_hosts(project: Project) -> None:
    source = project.inventory(GROUPS)
    assert resolve(source, "web").hosts == ("web-1", "web-2", "web-10")
    assert resolve(source, "web:!web-2").hosts == ("web-1", "web-10")
    assert resolve(source, "db-1,web-10").hosts == ("db-1", "web-10")
    everything = resolve(source)
    assert sorted(everything.hosts) == ["db-1", "web-1", "web-10", "web-2"]
    assert everything.limit is None


def test_the_resolved_source_is_absolute_and_is_the_lock_key(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.inventory(GROUPS)
    monkeypatch.chdir(project.root)
    resolved = resolve(Path("inventories/hosts.yml"), "db")
    assert resolved.source == project.root / "inventories" / "hosts.yml"
    # Two spellings of one inventory must take the same lock.
    assert resolved.lock_key == str(project.root / "inventories" / "hosts.yml")
    assert resolved.limit == "db"


def test_an_inventory_directory_with_group_vars_resolves(project: Project) -> None:
    # The shape of inventories/lab: hosts.yml plus group_vars/ in one folder.
    project.inventory(GROUPS)
    (project.root / "inventories" / "group_vars").mkdir()
    (project.root / "inventories" / "group_vars" / "all.yml").write_text("toolkit_env: test\n")
    assert resolve(project.root / "inventories", "db").hosts == ("db-1",)


def test_a_scope_keeps_only_the_services_hosts(project: Project) -> None:
    source = project.inventory(GROUPS)
    assert resolve(source, scope="db").hosts == ("db-1",)
    assert resolve(source, limit="*-1", scope="web:db").hosts == ("web-1", "db-1")


def test_a_limit_outside_the_scope_is_a_usage_error_naming_both(project: Project) -> None:
    source = project.inventory(GROUPS)
    with pytest.raises(UsageError) as raised:
        resolve(source, limit="web-1", scope="db")
    assert raised.value.message == f"--limit 'web-1' matches no host in {source} (within 'db')"


def test_a_scope_matching_nothing_is_a_usage_error(project: Project) -> None:
    with pytest.raises(UsageError) as raised:
        resolve(project.inventory(GROUPS), scope="cassandra")
    assert raised.value.message.startswith("no host of ") and raised.value.message.endswith("is in 'cassandra'")
