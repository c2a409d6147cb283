"""alert_for: built-in rule files with the `for` of named alerts replaced, everything else untouched."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.plugins.loader import load_plugin

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "roles" / "prometheus" / "files" / "rules"


alert_for = load_plugin("filter/alert_for.py", "alert_for_under_test")


def _for_of(text: str) -> dict[str, str | None]:
    document = yaml.safe_load(text)
    return {r["alert"]: r.get("for") for g in document["groups"] for r in g["rules"] if "alert" in r}


def test_a_file_no_override_touches_comes_back_byte_for_byte() -> None:
    text = (RULES / "node.yml").read_text()
    assert alert_for.alert_for(text, {"ToolkitDriftDetected": "1m"}) == text
    assert alert_for.alert_for(text, {}) == text


def test_only_the_named_alert_changes_and_promtool_accepts_the_result(tmp_path: Path) -> None:
    text = (RULES / "toolkit.yml").read_text()
    tuned = alert_for.alert_for(text, {"ToolkitDriftDetected": "30s"})
    before, after = _for_of(text), _for_of(tuned)
    assert after["ToolkitDriftDetected"] == "30s" and before["ToolkitDriftDetected"] == "15m"
    assert {k: v for k, v in after.items() if k != "ToolkitDriftDetected"} == {
        k: v for k, v in before.items() if k != "ToolkitDriftDetected"
    }
    # Go templates in annotations survive the round trip.
    assert "{{ $labels.service }} on {{ $labels.host }} drifted" in tuned
    promtool = shutil.which("promtool", path=str(Path(sys.executable).parent))
    assert promtool, "scripts/setup installs promtool into the virtualenv"
    (tmp_path / "toolkit.yml").write_text(tuned)
    checked = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "toolkit.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("bad", ["15", "fast", "", "1.5m", "-1m"])
def test_a_value_that_is_not_a_duration_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not Prometheus durations"):
        alert_for.alert_for((RULES / "toolkit.yml").read_text(), {"ToolkitDriftDetected": bad})


def test_alert_names_lists_every_alert_of_a_file() -> None:
    names = alert_for.alert_names((RULES / "toolkit.yml").read_text())
    assert names == [
        "ToolkitConvergeStale",
        "ToolkitDriftDetected",
        "ToolkitDriftCheckStale",
        "ToolkitDriftCheckIncomplete",
    ]
