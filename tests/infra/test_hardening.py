"""The hardening role's effect on a host: what an auditor would check by hand, not which files exist.

Runs unchanged on a molecule container (`molecule test -s hardening`) and on a live fleet (`toolkit verify
hardening`). Expected values are each host's inventory variables over the role's defaults
(tests/infra/toolkit_infra.py). A control the host skips (a dated waiver, a control no container can apply,
a capability the container lacks: the same rules as roles/hardening/tasks/controls.yml) is skipped here too,
with the same reason. The last test scores the host with Lynis; under `toolkit verify` the report is saved
for the run's summary.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from toolkit_infra import (
    ROLES,
    address_of,
    apt_config,
    controller_address,
    expected_vars,
    in_container,
    reachable,
    systemd_config,
)

from toolkit.runner.lynis import REPORTS_ENV, parse_report, scan_script, write_host_report

ROLE = "hardening"


@functools.cache
def controls() -> dict[str, dict[str, Any]]:
    """The role's control catalogue (roles/hardening/vars/main.yml), by ID."""
    data = yaml.safe_load((ROLES / ROLE / "vars" / "main.yml").read_text())
    return {control["id"]: control for control in data["hardening__controls"]}


CAPABILITY_BITS = yaml.safe_load((ROLES / ROLE / "vars" / "main.yml").read_text())["hardening__capability_bits"]


@pytest.fixture(scope="module")
def hardening(host: Any) -> dict[str, Any]:
    return expected_vars(host, ROLE)


@pytest.fixture(scope="module")
def skipped(host: Any, hardening: dict[str, Any]) -> dict[str, str]:
    """{control ID: reason} for the controls this host skips, worked out as the role does."""
    with host.sudo():
        capeff = int(host.check_output("grep -E '^CapEff:' /proc/self/status").split()[-1], 16)
    capabilities = {name for name, bit in CAPABILITY_BITS.items() if capeff >> bit & 1}
    container = in_container(host)
    waivers = {str(w["control"]): w for w in hardening["hardening_waivers"]}
    reasons: dict[str, str] = {}
    for control_id, control in controls().items():
        if not hardening[f"hardening_{control['area']}_enabled"]:
            reasons[control_id] = f"hardening_{control['area']}_enabled is false"
        elif control_id in waivers:
            reasons[control_id] = f"waived until {waivers[control_id]['expires']}: {waivers[control_id]['reason']}"
        elif container and "container" in control:
            reasons[control_id] = str(control["container"])
        elif missing := sorted(set(control.get("caps", [])) - capabilities):
            reasons[control_id] = f"needs {' and '.join(missing)}, which this host lacks"
    return reasons


def require(skipped: dict[str, str], control_id: str) -> None:
    """Skip the calling test when the host skips the control, with the role's reason."""
    assert control_id in controls(), f"unknown control {control_id}"
    if control_id in skipped:
        pytest.skip(f"{control_id}: {skipped[control_id]}")


def root(host: Any, command: str) -> str:
    with host.sudo():
        return str(host.check_output(command))


def installed(host: Any, *packages: str) -> list[str]:
    """The packages among `packages` that are not installed (empty when all are)."""
    query = "dpkg-query -W -f '${Package} ${db:Status-Status}\\n' " + " ".join(map(shlex.quote, packages))
    status = host.run(query).stdout
    present = {line.split()[0] for line in status.splitlines() if line.endswith(" installed")}
    return sorted(set(packages) - present)


# --- ssh ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(host: Any) -> dict[str, str]:
    """sshd's effective settings (`sshd -T`): lower-case keys, the first value of each."""
    settings: dict[str, str] = {}
    for line in root(host, "sshd -T").splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, value)
    return settings


def test_sshd_runs_with_a_valid_configuration(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "ssh")
    assert host.service("ssh").is_running
    assert host.service("ssh").is_enabled
    with host.sudo():
        assert host.run("sshd -t").rc == 0


def test_sshd_uses_only_the_configured_algorithms(
    sshd: dict[str, str], hardening: dict[str, Any], skipped: dict[str, str]
) -> None:
    require(skipped, "ssh")
    assert sshd["ciphers"] == ",".join(hardening["hardening_ssh_ciphers"])
    assert sshd["kexalgorithms"] == ",".join(hardening["hardening_ssh_kex"])
    assert sshd["macs"] == ",".join(hardening["hardening_ssh_macs"])


def test_sshd_refuses_root_passwords_and_empty_passwords(
    sshd: dict[str, str], hardening: dict[str, Any], skipped: dict[str, str]
) -> None:
    require(skipped, "ssh")
    permit_root = {"no": "no", "prohibit-password": "without-password"}.get(
        hardening["hardening_ssh_permit_root_login"], hardening["hardening_ssh_permit_root_login"]
    )
    assert sshd["permitrootlogin"] == permit_root
    assert sshd["passwordauthentication"] == "no"
    assert sshd["kbdinteractiveauthentication"] == "no"
    assert sshd["permitemptypasswords"] == "no"
    assert sshd["hostbasedauthentication"] == "no"
    assert sshd["permituserenvironment"] == "no"
    assert sshd["pubkeyauthentication"] == "yes"
    assert sshd["usepam"] == "yes"


def test_sshd_limits_timeouts_and_forwarding(
    sshd: dict[str, str], hardening: dict[str, Any], skipped: dict[str, str]
) -> None:
    require(skipped, "ssh")
    expected = {
        "port": str(hardening["hardening_ssh_port"]),
        "maxauthtries": str(hardening["hardening_ssh_max_auth_tries"]),
        "maxsessions": str(hardening["hardening_ssh_max_sessions"]),
        "clientaliveinterval": str(hardening["hardening_ssh_client_alive_interval"]),
        "clientalivecountmax": str(hardening["hardening_ssh_client_alive_count_max"]),
        "logingracetime": str(hardening["hardening_ssh_login_grace_time"]),
        "allowtcpforwarding": "yes" if hardening["hardening_ssh_allow_tcp_forwarding"] else "no",
        "allowagentforwarding": "yes" if hardening["hardening_ssh_allow_agent_forwarding"] else "no",
        "x11forwarding": "yes" if hardening["hardening_ssh_x11_forwarding"] else "no",
        "loglevel": hardening["hardening_ssh_log_level"],
        "banner": "/etc/issue.net",
        "compression": "no",
        "tcpkeepalive": "no",
    }
    assert {key: sshd.get(key) for key in expected} == expected


def test_sshd_allow_lists_are_the_configured_ones(
    sshd: dict[str, str], hardening: dict[str, Any], skipped: dict[str, str]
) -> None:
    require(skipped, "ssh")
    # sshd -T prints one line per entry; the first one is enough to tell "set" from "unset".
    if hardening["hardening_ssh_allow_users"]:
        assert sshd.get("allowusers") == hardening["hardening_ssh_allow_users"][0]
    else:
        assert "allowusers" not in sshd
    if hardening["hardening_ssh_allow_groups"]:
        assert sshd.get("allowgroups") == hardening["hardening_ssh_allow_groups"][0]
    else:
        assert "allowgroups" not in sshd


# --- pam ------------------------------------------------------------------------------------------------


def pam_lines(host: Any, stack: str) -> list[str]:
    """The active lines of /etc/pam.d/<stack>, whitespace normalised."""
    content = host.file(f"/etc/pam.d/{stack}").content_string
    return [" ".join(line.split()) for line in content.splitlines() if line.strip() and not line.startswith("#")]


def test_faillock_guards_authentication_on_both_sides(
    host: Any, hardening: dict[str, Any], skipped: dict[str, str]
) -> None:
    require(skipped, "pam_faillock")
    auth = pam_lines(host, "common-auth")
    preauth = next(i for i, line in enumerate(auth) if "pam_faillock.so preauth" in line)
    unix = next(i for i, line in enumerate(auth) if "pam_unix.so" in line)
    authfail = next(i for i, line in enumerate(auth) if "pam_faillock.so authfail" in line)
    assert preauth < unix < authfail, auth
    assert any("pam_faillock.so" in line for line in pam_lines(host, "common-account"))
    faillock = (line.partition("=") for line in pam_lines(host, "../security/faillock.conf"))
    settings = {key.strip(): value.strip() for key, _, value in faillock}
    assert settings["deny"] == str(hardening["hardening_pam_faillock_deny"])
    assert settings["unlock_time"] == str(hardening["hardening_pam_faillock_unlock_time"])


def test_pwquality_checks_new_passwords(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "pam_pwquality")
    assert any(line.startswith("password requisite pam_pwquality.so") for line in pam_lines(host, "common-password"))
    config = host.file("/etc/security/pwquality.conf").content_string
    assert re.search(rf"^minlen = {hardening['hardening_pam_pwquality_minlen']}$", config, re.M)
    assert re.search(rf"^minclass = {hardening['hardening_pam_pwquality_minclass']}$", config, re.M)


def test_sessions_get_a_private_tmpdir(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "pam_tmpdir")
    assert any("pam_tmpdir.so" in line for line in pam_lines(host, "common-session"))


# --- login ----------------------------------------------------------------------------------------------


def test_login_defs_sets_umask_ageing_and_hashing(
    host: Any, hardening: dict[str, Any], skipped: dict[str, str]
) -> None:
    require(skipped, "login_defs")
    defs = {}
    for line in host.file("/etc/login.defs").content_string.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#"):
            defs[parts[0]] = parts[1]
    rounds = str(hardening["hardening_login_sha_crypt_rounds"])
    assert defs["UMASK"] == str(hardening["hardening_login_umask"])
    assert defs["PASS_MAX_DAYS"] == str(hardening["hardening_login_pass_max_days"])
    assert defs["PASS_MIN_DAYS"] == str(hardening["hardening_login_pass_min_days"])
    assert defs["PASS_WARN_AGE"] == str(hardening["hardening_login_pass_warn_age"])
    assert (defs["ENCRYPT_METHOD"], defs["SHA_CRYPT_MIN_ROUNDS"], defs["SHA_CRYPT_MAX_ROUNDS"]) == (
        "SHA512",
        rounds,
        rounds,
    )
    # The effect on a login shell.
    assert int(host.check_output("bash -lc umask"), 8) == int(str(hardening["hardening_login_umask"]), 8)


def test_idle_interactive_shells_time_out(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "shell_timeout")
    timeout = int(hardening["hardening_login_shell_timeout"])
    # What a login shell gets: TMOUT set, exported and read-only (a user cannot unset it).
    output = host.check_output("bash -lc 'echo ${TMOUT:-unset}; readonly -p | grep -c \" TMOUT=\" || true'")
    value, readonly = output.split()
    if timeout == 0:
        assert value == "unset"
    else:
        assert (value, readonly) == (str(timeout), "1")


def test_regular_users_homes_are_closed_to_others(
    host: Any, hardening: dict[str, Any], skipped: dict[str, str]
) -> None:
    require(skipped, "home_permissions")
    allowed = int(str(hardening["hardening_login_home_mode"]), 8)
    for entry in host.check_output("getent passwd").splitlines():
        name, _, uid, _, _, home, _ = entry.split(":")
        if 1000 <= int(uid) < 60000 and home.startswith("/home/") and host.file(home).is_directory:
            mode = host.file(home).mode
            assert mode & ~allowed & 0o777 == 0, f"{name}'s home {home} has mode {mode:o}, more than {allowed:o}"


# --- sysctl, modules, mounts ----------------------------------------------------------------------------


@pytest.mark.parametrize("area", ["kernel", "network"])
def test_sysctls_are_in_effect(host: Any, hardening: dict[str, Any], skipped: dict[str, str], area: str) -> None:
    require(skipped, f"sysctl_{area}")
    wanted = {**hardening[f"hardening_sysctl_{area}"]}
    wanted.update(
        {k: v for k, v in hardening["hardening_sysctl_extra"].items() if k.startswith("net.") == (area == "network")}
    )
    actual = {key: host.check_output(f"sysctl -n {shlex.quote(key)}") for key in wanted}
    assert actual == {key: str(value) for key, value in wanted.items()}


def test_unneeded_kernel_modules_cannot_load(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "modules")
    config = host.check_output("modprobe --showconfig")
    for module in hardening["hardening_modules_disabled"]:
        # modprobe normalises - to _ in module names.
        name = module.replace("-", "_")
        assert f"blacklist {name}" in config, module
        assert f"install {name} /bin/true" in config, module


def test_dev_shm_is_mounted_without_devices_setuid_or_exec(
    host: Any, hardening: dict[str, Any], skipped: dict[str, str]
) -> None:
    require(skipped, "mounts_dev_shm")
    options = host.check_output("findmnt --noheadings --output OPTIONS /dev/shm").split(",")
    assert set(hardening["hardening_mounts_dev_shm_options"]) <= set(options)


# --- auditd, aide ---------------------------------------------------------------------------------------


def test_auditd_runs_with_the_role_rules(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "auditd")
    assert host.service("auditd").is_running and host.service("auditd").is_enabled
    rules = root(host, "auditctl -l")
    for key in ("time-change", "identity", "scope", "logins", "perm_mod", "sshd"):
        assert f"key={key}" in rules or f"-k {key}" in rules, key


def test_aide_has_a_database_and_checks_daily(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "aide")
    with host.sudo():
        assert host.file("/var/lib/aide/aide.db").is_file
        assert host.run("aide --config=/etc/aide/aide.conf --config-check").rc == 0
    assert host.service("dailyaidecheck.timer").is_enabled
    assert host.service("dailyaidecheck.timer").is_running


# --- updates --------------------------------------------------------------------------------------------


def test_security_updates_come_automatically(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "updates_unattended")
    assert installed(host, "unattended-upgrades") == []
    config = apt_config(host)
    assert config.get("APT::Periodic::Update-Package-Lists") == "1"
    assert config.get("APT::Periodic::Unattended-Upgrade") == "1"
    # Only the security repository is upgraded automatically.
    patterns = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern").splitlines()
    # One `Unattended-Upgrade::Origins-Pattern:: "<pattern>";` line per entry (after the list's own line).
    origins = [line.split('"')[1] for line in patterns if line.startswith("Unattended-Upgrade::Origins-Pattern::")]
    assert origins and all("label=Debian-Security" in origin for origin in origins), origins


def test_the_security_repository_is_an_apt_source(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "updates_security_repo")
    assert re.search(r"-security\b", host.check_output("apt-cache policy")), "no security repository in apt"


def test_no_security_update_is_pending(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "updates_pending")
    if not hardening["hardening_updates_apply_pending"]:
        pytest.skip("hardening_updates_apply_pending is false")
    pending = host.check_output("apt-get --simulate --quiet upgrade | awk '/^Inst / && /-security/ { print $2 }'")
    assert pending.split() == []


def test_update_tools_are_installed(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "updates_tools")
    assert installed(host, *hardening["hardening_updates_packages"]) == []


# --- fail2ban, accounting, syslog -----------------------------------------------------------------------


def test_fail2ban_watches_sshd(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "fail2ban")
    assert host.service("fail2ban").is_running and host.service("fail2ban").is_enabled
    status = root(host, "fail2ban-client status sshd")
    assert "Journal matches" in status or "File list" in status, status
    assert root(host, "fail2ban-client get sshd maxretry") == str(hardening["hardening_fail2ban_maxretry"])


def test_process_accounting_records(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "process_accounting")
    assert host.service("acct").is_enabled
    assert host.run("systemctl is-active acct").stdout.strip() == "active"
    with host.sudo():
        assert host.file("/var/log/account/pacct").is_file


def test_sysstat_collects(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "sysstat")
    assert host.file("/etc/default/sysstat").contains('^ENABLED="true"')
    assert host.service("sysstat").is_enabled
    assert host.service("sysstat-collect.timer").is_enabled and host.service("sysstat-collect.timer").is_running


def test_the_system_log_goes_to_the_remote_server(
    host: Any, hardening: dict[str, Any], skipped: dict[str, str]
) -> None:
    require(skipped, "syslog_remote")
    if not hardening["hardening_syslog_remote_host"]:
        pytest.skip("hardening_syslog_remote_host is empty: no remote logging requested")
    assert host.service("rsyslog").is_running
    with host.sudo():
        assert host.run("rsyslogd -N1").rc == 0
    config = host.file("/etc/rsyslog.d/90-toolkit-remote.conf").content_string
    assert f'target="{hardening["hardening_syslog_remote_host"]}"' in config


# --- banners, cron, core dumps --------------------------------------------------------------------------


def test_legal_banners_are_shown(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "banners")
    for path in ("/etc/issue", "/etc/issue.net", "/etc/motd"):
        assert host.file(path).content_string == hardening["hardening_banner_text"], path


def test_cron_and_at_are_for_root_only(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "cron_permissions")
    if host.file("/etc/crontab").exists:
        assert host.file("/etc/crontab").mode == 0o600
    for directory in ("/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly", "/etc/cron.d"):
        assert host.file(directory).mode == 0o700, directory
    for allow in ("/etc/cron.allow", "/etc/at.allow"):
        with host.sudo():
            assert host.file(allow).content_string == "root\n", allow
    assert not host.file("/etc/cron.deny").exists and not host.file("/etc/at.deny").exists


def test_core_dumps_are_off(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "coredumps")
    assert systemd_config(host, "systemd/coredump.conf").get("Storage") == "none"
    # pam_limits applies limits.d to login sessions: a fresh root login gets a hard core limit of 0.
    assert host.check_output("su - root -s /bin/sh -c 'ulimit -H -c'") == "0"


def test_compilers_are_for_root_and_their_group(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "compilers")
    for compiler in hardening["hardening_compilers"]:
        if not host.file(compiler).exists:
            continue
        target = host.check_output(f"realpath -e {shlex.quote(compiler)}")
        assert host.file(target).mode & 0o007 == 0, f"{compiler} ({target}) can be run by other users"


def test_a_rootkit_scanner_runs_daily(host: Any, skipped: dict[str, str]) -> None:
    require(skipped, "rootkit_scanner")
    assert installed(host, "chkrootkit") == []
    assert host.file("/etc/chkrootkit/chkrootkit.conf").contains('^RUN_DAILY="true"')


# --- firewall -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ruleset(host: Any, skipped: dict[str, str]) -> str:
    require(skipped, "firewall")
    return root(host, "nft list ruleset")


def test_inbound_is_denied_by_default(host: Any, ruleset: str) -> None:
    assert host.service("nftables").is_enabled
    assert host.run("systemctl is-active nftables").stdout.strip() == "active"
    table = ruleset.split("table inet filter {", 1)[1]
    assert re.search(r"chain input \{\s*type filter hook input priority filter; policy drop;", table)
    assert re.search(r"chain forward \{\s*type filter hook forward priority filter; policy drop;", table)
    assert "ct state established,related accept" in table
    assert 'iif "lo" accept' in table


def test_ssh_is_open_to_the_admin_networks_only(ruleset: str, hardening: dict[str, Any]) -> None:
    port = hardening["hardening_ssh_port"]
    rules = [line.strip() for line in ruleset.splitlines() if f"dport {port} " in line]
    sources = sorted(re.findall(r"saddr \{? ?([^}]+?) ?\}? tcp", " ".join(rules)))
    opened = sorted(s.strip() for chunk in sources for s in chunk.split(","))
    assert opened == sorted(
        str(ipaddress.ip_network(s, strict=False)) for s in hardening["hardening_firewall_ssh_sources"]
    )


def test_each_listed_service_has_its_rules(ruleset: str, hardening: dict[str, Any]) -> None:
    for service in hardening["hardening_firewall_allow"]:
        for rule in service["rules"]:
            comment = f"{service['name']}: {rule['comment']}" if rule.get("comment") else service["name"]
            line = next((line for line in ruleset.splitlines() if f'comment "{comment}"' in line), "")
            assert f"{rule.get('proto', 'tcp')} dport {rule['port']} accept" in line, (comment, line)


def test_listed_ports_answer_and_unlisted_ones_are_dropped(host: Any, ruleset: str, hardening: dict[str, Any]) -> None:
    """From this controller: what the firewall opens to it answers; other listening ports time out."""
    address = address_of(host)
    controller = controller_address(address)
    listening = {
        int(match) for match in re.findall(r"\s(?:0\.0\.0\.0|\*|\[::\]):(\d+)\s", host.check_output("ss -Hltn"))
    }
    opened_here = (
        {int(hardening["hardening_ssh_port"])}
        if any(controller in ipaddress.ip_network(s, strict=False) for s in hardening["hardening_firewall_ssh_sources"])
        else set()
    )
    for service in hardening["hardening_firewall_allow"]:
        for rule in service["rules"]:
            if (
                rule.get("proto", "tcp") == "tcp"
                and "-" not in str(rule["port"])
                and any(
                    ipaddress.ip_address(controller).version == ipaddress.ip_network(s, strict=False).version
                    and controller in ipaddress.ip_network(s, strict=False)
                    for s in rule["sources"]
                )
            ):
                opened_here.add(int(rule["port"]))
    mentioned = set()
    for low, high in re.findall(r"dport (\d+)(?:-(\d+))?", ruleset):
        mentioned.update(range(int(low), int(high or low) + 1))
    expect_open = sorted(opened_here & listening)
    expect_dropped = sorted(listening - mentioned)
    if not expect_open and not expect_dropped:
        pytest.skip("no listening port to probe from this controller")
    assert {port: reachable(address, port) for port in expect_open} == dict.fromkeys(expect_open, True)
    assert {port: reachable(address, port) for port in expect_dropped} == dict.fromkeys(expect_dropped, False)


# --- lynis ----------------------------------------------------------------------------------------------


def host_name(host: Any) -> str:
    return str(getattr(host, "inventory_host", host).backend.get_hostname())


def test_lynis_scores_the_host(host: Any, hardening: dict[str, Any], skipped: dict[str, str]) -> None:
    require(skipped, "lynis")
    with host.sudo():
        scan = host.run(scan_script())
    report = parse_report(scan.stdout)
    if os.environ.get(REPORTS_ENV):
        write_host_report(Path(os.environ[REPORTS_ENV]), host_name(host), report)
    minimum = int(hardening["hardening_lynis_min_index"])
    today = dt.datetime.now(dt.UTC).date().isoformat()
    waived = {str(w["test"]): str(w["expires"]) for w in hardening["hardening_lynis_waivers"]}
    expired = [f"{test} (expired {expires})" for test, expires in waived.items() if expires < today]
    assert expired == [], f"expired Lynis waivers: {expired}"
    unwaived = [str(w) for w in report.warnings if w.test not in waived]
    assert unwaived == [], f"Lynis warnings: {unwaived}"
    assert report.hardening_index is not None and report.hardening_index >= minimum, (
        f"Lynis hardening index {report.hardening_index} < {minimum}; suggestions: "
        + "; ".join(str(s) for s in report.suggestions)
    )
