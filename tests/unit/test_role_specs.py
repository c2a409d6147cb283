"""scripts/check-role-specs: passes on the project's roles, and fails, naming each problem, on broken ones."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check-role-specs"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def write_role(roles: Path, name: str, defaults: str, specs: str | None) -> Path:
    role = roles / name
    (role / "defaults").mkdir(parents=True)
    (role / "defaults" / "main.yml").write_text(textwrap.dedent(defaults))
    if specs is not None:
        (role / "meta").mkdir()
        (role / "meta" / "argument_specs.yml").write_text(textwrap.dedent(specs))
    return role


GOOD_SPECS = """\
    argument_specs:
      main:
        options:
          demo_name: {type: str, default: "{{ inventory_hostname }}"}
          demo_port: {type: int, default: 8080}
          demo_mode: {type: str, default: fast, choices: [fast, safe]}
          demo_users: {type: list, elements: dict, default: []}
          demo_token: {type: str, required: true}
    """
GOOD_DEFAULTS = """\
    demo_name: "{{ inventory_hostname }}"
    demo_port: 8080
    demo_mode: fast
    demo_users: []
    """


def test_the_project_roles_pass() -> None:
    result = check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "agree in" in result.stdout


def test_a_consistent_role_passes(tmp_path: Path) -> None:
    write_role(tmp_path, "demo", GOOD_DEFAULTS, GOOD_SPECS)
    result = check("--roles-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_role_fails_and_names_every_mismatch(tmp_path: Path) -> None:
    write_role(
        tmp_path,
        "broken",
        """\
        broken_port: 9090        # spec says 8080
        broken_enabled: 1        # spec type bool, default true: 1 is neither
        broken_mode: turbo       # not one of the choices
        broken_extra: x          # not in the spec
        broken_tags: [a, 2]      # list of str with an int
        broken_nodefault: y      # spec has no default
        """,
        """\
        argument_specs:
          main:
            options:
              broken_port: {type: int, default: 8080}
              broken_enabled: {type: bool, default: true}
              broken_mode: {type: str, default: turbo, choices: [fast, safe]}
              broken_tags: {type: list, elements: str, default: [a, 2]}
              broken_nodefault: {type: str}
              broken_missing: {type: str, default: z}
        """,
    )
    result = check("--roles-dir", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    expected = [
        "broken_port defaults to 9090 in defaults/main.yml but 8080 in the specs",
        "broken_enabled defaults to 1 in defaults/main.yml but True in the specs",
        "broken_enabled's default is a int, spec type is bool",
        "broken_mode's default 'turbo' is not one of the choices",
        "broken_extra is in defaults/main.yml but not in the argument specs",
        "broken_missing is in the argument specs but not in defaults/main.yml",
        "broken_tags's default element 1 is a int, spec type is str",
        "broken_nodefault has no `default` in the argument specs",
    ]
    for fragment in expected:
        assert any(fragment in line for line in lines), f"missing {fragment!r} in:\n{result.stdout}"
    assert all(line.startswith("broken: ") for line in lines)


def test_a_role_with_defaults_but_no_specs_fails(tmp_path: Path) -> None:
    write_role(tmp_path, "nospecs", GOOD_DEFAULTS, None)
    result = check("--roles-dir", str(tmp_path))
    assert result.returncode == 1
    assert "nospecs: has defaults but no argument_specs" in result.stdout


@pytest.mark.parametrize("content", ["argument_specs: [", "argument_specs:\n  other: {}\n"])
def test_unreadable_specs_are_an_input_error(tmp_path: Path, content: str) -> None:
    role = write_role(tmp_path, "bad", GOOD_DEFAULTS, None)
    (role / "meta").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(content)
    result = check("--roles-dir", str(tmp_path))
    assert result.returncode == 2
    assert "check-role-specs:" in result.stderr


def test_an_unknown_role_name_is_an_input_error(tmp_path: Path) -> None:
    result = check("--roles-dir", str(tmp_path), "nope")
    assert result.returncode == 2
