"""The base role's behaviour on a host: what an operator would check by hand, not which files exist.

Runs unchanged on a molecule container (`molecule test -s base`) and on a live fleet
(`toolkit verify base`, or `pytest --hosts=ansible://all --ansible-inventory=INV --connection=ansible
tests/infra/test_base.py`). Expected values are each host's inventory variables over the role's defaults
(tests/infra/toolkit_infra.py); a phase switched off on a host is skipped there.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from toolkit_infra import apt_config, expected_vars, in_container, require_phase, systemd_config

ROLE = "base"


@pytest.fixture(scope="module")
def base(host: Any) -> dict[str, Any]:
    return expected_vars(host, ROLE)


def ops_users(base: dict[str, Any], state: str) -> list[dict[str, Any]]:
    """base_ops_users entries in one state, with the role's defaults for every field left out."""
    defaults = {"state": "present", "ssh_keys": [], "sudo": True, "shell": "/bin/bash", "groups": []}
    users = [{**defaults, **user} for user in base["base_ops_users"]]
    return [user for user in users if user["state"] == state]


# --- hostname -------------------------------------------------------------------------------------------


def test_hostname_is_base_hostname_and_resolves(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "hostname")
    name = host.check_output("hostname")
    assert name == base["base_hostname"]
    # Something must map the name to an address: /etc/hosts (127.0.1.1, or the container runtime's entry).
    assert host.run(f"getent hosts {shlex.quote(name)}").rc == 0, f"{name} does not resolve on the host"


# --- apt ------------------------------------------------------------------------------------------------


def test_apt_uses_the_proxy_only_when_one_is_set(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "apt")
    proxy = apt_config(host).get("Acquire::http::Proxy")
    if base["base_apt_proxy"]:
        assert proxy == base["base_apt_proxy"]
    else:
        assert proxy is None, f"apt uses proxy {proxy} but base_apt_proxy is empty"


def test_apt_recommends_retries_and_timeouts(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "apt")
    config = apt_config(host)
    recommends = config.get("APT::Install-Recommends", "true").lower() in ("true", "1", "yes")
    assert recommends == base["base_apt_install_recommends"]
    assert config.get("Acquire::Retries") == str(base["base_apt_retries"])
    assert config.get("Acquire::http::Timeout") == str(base["base_apt_timeout"])
    assert config.get("Acquire::https::Timeout") == str(base["base_apt_timeout"])


# --- packages -------------------------------------------------------------------------------------------


def test_baseline_packages_are_installed(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "packages")
    wanted = base["base_packages"] + base["base_extra_packages"]
    query = "dpkg-query -W -f '${Package} ${db:Status-Status}\\n' " + " ".join(map(shlex.quote, wanted))
    status = host.run(query).stdout  # rc 1 when a package is unknown: the comparison below names it
    installed = {line.split()[0] for line in status.splitlines() if line.endswith(" installed")}
    assert sorted(set(wanted) - installed) == []


# --- time -----------------------------------------------------------------------------------------------


def test_timezone_is_base_timezone(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "time")
    zone = base["base_timezone"]
    zone_file = host.check_output(f"realpath -e /usr/share/zoneinfo/{shlex.quote(zone)}")
    # What programs see: the local time's zone abbreviation is the configured zone's (UTC for UTC).
    assert host.check_output("date +%Z") == host.check_output(f"TZ={shlex.quote(zone)} date +%Z")
    assert host.check_output("realpath -e /etc/localtime") == zone_file
    # /etc/timezone may spell it Debian's way (Etc/UTC for UTC): same zone file either way.
    recorded = host.file("/etc/timezone").content_string.strip()
    assert host.check_output(f"realpath -e /usr/share/zoneinfo/{shlex.quote(recorded)}") == zone_file


def test_timesyncd_is_enabled_and_runs_where_systemd_lets_it(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "time")
    timesyncd = host.service("systemd-timesyncd")
    assert timesyncd.is_enabled
    if in_container(host):
        # ConditionVirtualization=!container: systemd never starts it in a container.
        return
    assert timesyncd.is_running


def test_timesyncd_uses_base_ntp_servers(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "time")
    assert systemd_config(host, "systemd/timesyncd.conf").get("NTP", "").split() == base["base_ntp_servers"]


# --- journald -------------------------------------------------------------------------------------------


def test_journald_settings_are_in_effect(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "journald")
    config = systemd_config(host, "systemd/journald.conf")
    assert config.get("Storage") == base["base_journald_storage"]
    assert config.get("SystemMaxUse") == str(base["base_journald_system_max_use"])
    assert config.get("SystemKeepFree") == str(base["base_journald_system_keep_free"])
    assert config.get("MaxRetentionSec") == str(base["base_journald_max_retention_sec"])


def test_journald_writes_the_journal_to_disk(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "journald")
    if base["base_journald_storage"] != "persistent":
        pytest.skip(f"base_journald_storage is {base['base_journald_storage']}")
    journal_dir = host.file("/var/log/journal")
    assert journal_dir.is_directory
    machine_id = host.file("/etc/machine-id").content_string.strip()
    # journald writes the active system journal here only when storage is persistent and the runtime
    # journal has been flushed; otherwise it is under /run/log/journal.
    assert host.file(f"/var/log/journal/{machine_id}/system.journal").is_file
    assert not host.file(f"/run/log/journal/{machine_id}/system.journal").exists
    files = host.check_output("journalctl --header --system | sed -n 's/^File path: //p'").splitlines()
    assert files and all(path.startswith("/var/log/journal/") for path in files), files


# --- users ----------------------------------------------------------------------------------------------


def test_ops_users_exist_with_their_shell_groups_and_no_password(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "users")
    for user in ops_users(base, "present"):
        account = host.user(user["name"])
        assert account.exists, f"{user['name']} does not exist"
        assert account.shell == user["shell"], user["name"]
        assert set(account.groups) - {account.group} == set(user["groups"]), user["name"]
        # '*': no password to log in with, but not locked (key logins work even without PAM).
        assert account.password == "*", f"{user['name']} has a password or a locked account"


def test_ops_users_have_exactly_their_keys(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "users")
    for user in ops_users(base, "present"):
        home = host.user(user["name"]).home
        keys = host.file(f"{home}/.ssh/authorized_keys")
        if not user["ssh_keys"]:
            assert not keys.exists, f"{user['name']} has an authorized_keys file but no key is listed"
            continue
        # What sshd's StrictModes accepts: owned by the user, not writable by anyone else.
        assert keys.user == user["name"] and keys.mode == 0o600, user["name"]
        assert host.file(f"{home}/.ssh").mode == 0o700, user["name"]
        lines = [line for line in keys.content_string.splitlines() if line.strip() and not line.startswith("#")]
        assert sorted(lines) == sorted(user["ssh_keys"]), f"{user['name']} has keys nobody listed, or misses some"


def test_ops_users_sudo_matches_their_sudo_flag(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "users")
    for user in ops_users(base, "present"):
        rules = host.check_output(f"sudo -l -U {shlex.quote(user['name'])}")
        if user["sudo"]:
            assert "NOPASSWD: ALL" in rules, f"{user['name']} has no passwordless sudo:\n{rules}"
        else:
            assert "NOPASSWD" not in rules, f"{user['name']} has passwordless sudo but sudo is false:\n{rules}"


def test_absent_ops_users_are_gone_with_their_sudo_rule(host: Any, base: dict[str, Any]) -> None:
    require_phase(base, ROLE, "users")
    for user in ops_users(base, "absent"):
        name = user["name"]
        assert host.run(f"getent passwd {shlex.quote(name)}").rc == 2, f"{name} still exists"
        assert not host.file(f"/home/{name}").exists, f"{name}'s home directory is still there"
        leftover = host.run(f"grep -rlw -- {shlex.quote(name)} /etc/sudoers.d").stdout.split()
        assert leftover == [], f"sudoers files still mention {name}: {leftover}"
