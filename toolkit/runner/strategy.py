"""Which Ansible strategy a run uses: Mitogen's (the default) or the stock linear one (TOOLKIT_STRATEGY=linear).

Mitogen keeps one Python interpreter per host alive for the whole run and sends modules to it over the SSH
connection, instead of a new interpreter per task: a no-change run over many hosts spends most of its time
starting those interpreters, and Mitogen's run takes about half the time (docs/performance.md). The stock
strategy stays one variable away, because ansible-core deprecates third-party strategy plugins and an
ansible-core upgrade can break Mitogen until it follows.
"""

import os
from collections.abc import Mapping
from pathlib import Path

from toolkit.errors import UsageError

STRATEGIES = ("linear", "mitogen")
DEFAULT = "mitogen"
ENV_VAR = "TOOLKIT_STRATEGY"


def strategy_from_env(environ: Mapping[str, str] | None = None) -> str:
    """TOOLKIT_STRATEGY, checked: unset or empty means the default.

    Raises:
        UsageError: an unknown strategy, or mitogen asked for but not installed.
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower() or DEFAULT
    if value not in STRATEGIES:
        raise UsageError(f"{ENV_VAR}={value!r} is not a strategy toolkit knows (use one of: {', '.join(STRATEGIES)})")
    if value == "mitogen":
        _mitogen_strategy_plugins()  # fail now, not half-way into ansible-playbook
    return value


def strategy_environment(strategy: str) -> dict[str, str]:
    """The environment ansible-playbook needs for the strategy (empty for the stock one)."""
    if strategy == "mitogen":
        # mitogen_linear keeps the linear strategy's semantics (serial batches, handlers, any_errors_fatal).
        return {"ANSIBLE_STRATEGY_PLUGINS": str(_mitogen_strategy_plugins()), "ANSIBLE_STRATEGY": "mitogen_linear"}
    return {}


def _mitogen_strategy_plugins() -> Path:
    try:
        import ansible_mitogen  # type: ignore[import-untyped]
    except ImportError:
        raise UsageError(
            "the mitogen strategy (toolkit's default) needs the mitogen package in toolkit's environment "
            f"(scripts/setup installs it); {ENV_VAR}=linear runs the stock strategy"
        ) from None
    return Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
