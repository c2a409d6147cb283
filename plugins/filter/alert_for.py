"""alert_for: a Prometheus rule file with the `for` of some alerts replaced.

The prometheus role's built-in rule files are tuned for a fleet (ToolkitDriftDetected waits 15 minutes); a lab
or a site with its own paging policy shortens or lengthens one alert without forking the whole file. A file
no override touches comes back byte for byte, comments included, so installing it stays a plain copy.
It stays here (not in toolkit/) because it must load in plain ansible and in AWX.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

DOCUMENTATION = r"""
name: alert_for
short_description: Replace the C(for) duration of named alerts in a Prometheus rule file
description:
  - Returns the rule file unchanged when none of its alerts is named in O(overrides).
  - Otherwise returns it re-serialised with each named alert's C(for) set (comments are not kept).
options:
  _input:
    description: The rule file's text (Prometheus's C(groups) format).
    type: str
    required: true
  overrides:
    description: Alert name to a Prometheus duration (C(30s), C(5m), C(1h)); C(0s) fires at once.
    type: dict
    required: true
"""

EXAMPLES = r"""
# A lab where drift runs every minute: its drift alert fires after one minute, not fifteen.
content: >-
  {{ lookup('ansible.builtin.file', 'rules/toolkit.yml', rstrip=false)
     | alert_for({'ToolkitDriftDetected': '1m'}) }}
"""

RETURN = r"""
_value:
  description: The rule file's text.
  type: str
"""

# Prometheus's duration syntax, units largest first (promtool accepts "1h30m").
DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")


def _alerts(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        rule
        for group in document.get("groups") or []
        for rule in group.get("rules") or []
        if isinstance(rule, dict) and "alert" in rule
    ]


def alert_names(text: str) -> list[str]:
    """The alert names a rule file defines."""
    document = yaml.safe_load(text) or {}
    return [str(rule["alert"]) for rule in _alerts(document)]


def alert_for(text: str, overrides: Mapping[str, str]) -> str:
    bad = {name: value for name, value in overrides.items() if not DURATION.match(str(value)) or not str(value)}
    if bad:
        raise ValueError(f"alert_for: not Prometheus durations: {bad}")
    document = yaml.safe_load(text) or {}
    touched = [rule for rule in _alerts(document) if rule["alert"] in overrides]
    if not touched:
        return text
    for rule in touched:
        rule["for"] = str(overrides[rule["alert"]])
    names = ", ".join(sorted({str(rule["alert"]) for rule in touched}))
    dumped = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
    return f"# Built-in rules with the `for` of {names} set by prometheus_alert_for.\n{dumped}"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"alert_for": alert_for, "alert_names": alert_names}
