"""The Prometheus role's rule files: promtool's unit tests (tests/prometheus/*.test.yml) pass, and every alert
has a test in which it fires, so a rule nobody tested cannot be added silently."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
RULES = PROJECT / "roles" / "prometheus" / "files" / "rules"
TESTS = PROJECT / "tests" / "prometheus"


def promtool() -> str:
    # scripts/setup puts it next to the virtualenv's interpreter (extracted from Debian's package).
    found = shutil.which("promtool", path=str(Path(sys.executable).parent)) or shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run scripts/setup")
    return found


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerts_in(path: Path) -> set[str]:
    return {rule["alert"] for group in load(path)["groups"] for rule in group["rules"] if "alert" in rule}


TEST_FILES = sorted(TESTS.glob("*.test.yml"))
RULE_FILES = sorted(RULES.glob("*.yml"))


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda path: path.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", test_file.name], cwd=TESTS, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda path: path.name)
def test_every_alert_fires_in_some_test(rule_file: Path) -> None:
    fired: set[str] = set()
    for test_file in TEST_FILES:
        document = load(test_file)
        if not any((TESTS / name).resolve() == rule_file for name in document["rule_files"]):
            continue
        for case in document["tests"]:
            fired |= {check["alertname"] for check in case.get("alert_rule_test", []) if check.get("exp_alerts")}
    untested = alerts_in(rule_file) - fired
    assert not untested, f"{rule_file.name}: no test in tests/prometheus makes these fire: {sorted(untested)}"


def test_the_role_installs_every_rule_file_it_ships() -> None:
    defaults = load(PROJECT / "roles" / "prometheus" / "defaults" / "main.yml")
    assert sorted(defaults["prometheus_builtin_rule_files"]) == sorted(path.stem for path in RULE_FILES)


def test_a_broken_rule_is_refused_by_promtool(tmp_path: Path) -> None:
    """The role relies on `promtool check rules` refusing bad input (the template's validate)."""
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: up ==\n")
    result = subprocess.run([promtool(), "check", "rules", str(broken)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr
