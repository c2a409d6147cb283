"""toolkit started from inside another ansible-runner job (Event-Driven Ansible's run_playbook, an AWX job, a
playbook task that runs toolkit) inherits that job's runner settings in its environment.

Left in place they break this process's own runs: ansible-runner would record the enclosing job's awx_display
as the "original" stdout callback and wrap its callback in itself, and facts would go to the other job's
artifacts. They are dropped once, at start, before Ansible reads its configuration.
"""

from collections.abc import MutableMapping

# Set by ansible-runner for every job it starts (ansible_runner/config/_base.py); the first one marks a job.
MARKER = "AWX_ISOLATED_DATA_DIR"
ENCLOSING_RUNNER_VARIABLES = (
    MARKER,
    "ANSIBLE_STDOUT_CALLBACK",
    "ORIGINAL_STDOUT_CALLBACK",
    "ANSIBLE_CALLBACK_PLUGINS",
    "ANSIBLE_LOAD_CALLBACK_PLUGINS",
    "ANSIBLE_CACHE_PLUGIN",
    "ANSIBLE_CACHE_PLUGIN_CONNECTION",
    "ANSIBLE_RETRY_FILES_ENABLED",
    "AD_HOC_COMMAND_ID",
    "RUNNER_OMIT_EVENTS",
    "RUNNER_ONLY_FAILED_EVENTS",
)


def leave_enclosing_runner(environ: MutableMapping[str, str]) -> list[str]:
    """Drop an enclosing ansible-runner job's settings; the names dropped (none outside such a job)."""
    if MARKER not in environ:
        return []
    dropped = [name for name in ENCLOSING_RUNNER_VARIABLES if name in environ]
    for name in dropped:
        del environ[name]
    return dropped
