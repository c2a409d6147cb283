"""Bringing the lab up and down, and reporting on it.

`up` is idempotent: it creates only what is missing and starts what is stopped. `down` removes
exactly what `up` created (found by label and by the state file), except the package cache's content.
"""

import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import LabError
from toolkit.lab import inventory, profiles
from toolkit.lab.aptcache import AptCache
from toolkit.lab.podman import Podman
from toolkit.lab.profiles import LabHost
from toolkit.sshkeys import ensure_key
from toolkit.timestamps import utc_iso

BOOT_TIMEOUT = 90.0
# sshd reports active a little before a restarted container's network answers: `up` retries SSH this long.
SSH_TIMEOUT = 30.0
# Capabilities lab hosts get on top of podman's defaults, so the hardening role's controls apply as on a VM
# (docs/hardening.md#containers): NET_ADMIN for nftables and fail2ban, SYS_PACCT for process accounting,
# DAC_READ_SEARCH and AUDIT_WRITE for AIDE's unprivileged checker. They act in the container's own namespaces.
CAPABILITIES = ("NET_ADMIN", "SYS_PACCT", "DAC_READ_SEARCH", "AUDIT_WRITE")
# The hardening role's network sysctls (hardening_sysctl_network's defaults; a unit test keeps them equal).
# /proc/sys is read-only inside a container, so the role cannot set them there: the runtime sets them in the
# host's network namespace at creation, as the role does itself on a VM. Kernel-wide settings stay the host's.
NETWORK_SYSCTLS = (
    "net.ipv4.ip_forward=0",
    "net.ipv4.conf.all.accept_redirects=0",
    "net.ipv4.conf.default.accept_redirects=0",
    "net.ipv4.conf.all.secure_redirects=0",
    "net.ipv4.conf.default.secure_redirects=0",
    "net.ipv4.conf.all.send_redirects=0",
    "net.ipv4.conf.default.send_redirects=0",
    "net.ipv4.conf.all.accept_source_route=0",
    "net.ipv4.conf.default.accept_source_route=0",
    "net.ipv4.conf.all.log_martians=1",
    "net.ipv4.conf.default.log_martians=1",
    "net.ipv4.conf.all.rp_filter=1",
    "net.ipv4.conf.default.rp_filter=1",
    "net.ipv4.icmp_echo_ignore_broadcasts=1",
    "net.ipv4.icmp_ignore_bogus_error_responses=1",
    "net.ipv4.tcp_syncookies=1",
    "net.ipv6.conf.all.accept_redirects=0",
    "net.ipv6.conf.default.accept_redirects=0",
    "net.ipv6.conf.all.accept_source_route=0",
    "net.ipv6.conf.default.accept_source_route=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
)


LOGIN_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# Turns a lab container into a bare host: Python purged (apt removes what depends on it), the lab's own
# `toolkit` login removed, and one login, whose credential (a key or a password) the next script reads from
# stdin: never from a command line, where `ps` would show it.
BARE_SCRIPT = """
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get purge -y -qq --allow-remove-essential python3 python3-minimal python3.11 python3.11-minimal \\
    libpython3.11-minimal libpython3.11-stdlib >/dev/null
apt-get autoremove -y -qq --purge >/dev/null
if command -v python3 >/dev/null 2>&1; then echo "python3 is still installed" >&2; exit 1; fi
userdel --remove toolkit 2>/dev/null || true
rm -f /etc/sudoers.d/toolkit
id @LOGIN@ >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --password '*' @LOGIN@
"""

# A cloud image's default user: a key, and sudo without a password.
BARE_KEY_LOGIN = """
install -d -m 0700 -o @LOGIN@ -g @LOGIN@ /home/@LOGIN@/.ssh
cat > /home/@LOGIN@/.ssh/authorized_keys
chown @LOGIN@:@LOGIN@ /home/@LOGIN@/.ssh/authorized_keys
chmod 0600 /home/@LOGIN@/.ssh/authorized_keys
echo '@LOGIN@ ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-bootstrap-login
chmod 0440 /etc/sudoers.d/90-bootstrap-login
"""

# A hand-installed server's first user: a password, for SSH and for sudo alike.
BARE_PASSWORD_LOGIN = """
sed 's/^/@LOGIN@:/' | chpasswd
echo '@LOGIN@ ALL=(ALL) ALL' > /etc/sudoers.d/90-bootstrap-login
chmod 0440 /etc/sudoers.d/90-bootstrap-login
printf 'PasswordAuthentication yes\\n' > /etc/ssh/sshd_config.d/50-bootstrap-login.conf
systemctl reload ssh
"""


@dataclass(frozen=True)
class HostStatus:
    name: str
    address: str
    groups: tuple[str, ...]
    container: str  # running, exited, missing, ...
    systemd: str  # running, degraded, starting, offline, ...
    reachable: bool


@dataclass(frozen=True)
class LabPaths:
    state_dir: Path
    inventory_file: Path

    @property
    def key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def secrets(self) -> Path:
        """Lab-only passwords, generated on first use by Ansible's password lookup (never in git)."""
        return self.state_dir / "secrets"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def containers_conf(self) -> Path:
        return self.state_dir / "containers.conf"

    @property
    def apt_cache(self) -> Path:
        return self.state_dir / "apt-cache"


def apt_cache_enabled() -> bool:
    return os.environ.get("TOOLKIT_LAB_APT_CACHE", "1") not in ("0", "false", "no", "off")


def ssh_base_command(paths: LabPaths) -> list[str]:
    return [
        "ssh",
        "-i",
        str(paths.key),
        "-o",
        f"UserKnownHostsFile={paths.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
    ]


def _process_exists(pid: str) -> bool:
    return pid.isdigit() and int(pid) > 0 and Path(f"/proc/{pid}").exists()


class Lab:
    def __init__(self, paths: LabPaths, network: profiles.LabNetwork = profiles.LAB_NETWORK) -> None:
        self.paths = paths
        self.network = network
        self._podman: Podman | None = None

    @property
    def podman(self) -> Podman:
        if self._podman is None:
            self._podman = Podman(self.paths.containers_conf)
        return self._podman

    @property
    def owner(self) -> str:
        """The checkout this lab belongs to (its state directory), written on every container it makes."""
        return str(self.paths.state_dir.resolve())

    def _foreign_owner(self) -> tuple[str, list[str]] | None:
        """Another checkout's live lab on this machine: its state directory and its containers.

        Lab addresses, container names and the package cache are machine-wide, so two checkouts cannot each
        have a lab. A container whose owner's state is gone (a deleted clone) is an orphan, not foreign:
        `down` here may remove it; so is one whose processes were killed (see _container_state).
        """
        labelled = self.podman.json("ps", "--all", "--filter", f"label={profiles.LABEL}=1", "--format", "json") or []
        foreign: dict[str, list[str]] = {}
        for entry in labelled:
            owner = (entry.get("Labels") or {}).get(profiles.OWNER_LABEL)
            alive = _process_exists(str(entry.get("Pid", "")))
            if owner and owner != self.owner and alive and (Path(owner) / "state.json").exists():
                foreign.setdefault(owner, []).extend(entry.get("Names") or [])
        if not foreign:
            return None
        owner, names = sorted(foreign.items())[0]
        return owner, sorted(names)

    def _refuse_foreign_lab(self, action: str) -> None:
        if self.network != profiles.LAB_NETWORK:
            return  # another network's hosts are found by its own label: the lab's owner is no concern of theirs
        found = self._foreign_owner()
        if found is None:
            return
        owner, names = found
        checkout = Path(owner).parent.parent if Path(owner).name == "lab" else Path(owner)
        raise LabError(
            f"cannot {action}: the lab on this machine belongs to another checkout ({owner}: {', '.join(names)})",
            hint=f"run `toolkit lab down` in {checkout} first",
        )

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.paths.state_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def hosts(self) -> list[LabHost]:
        state = self.state()
        if state is None:
            raise LabError("the lab is not up", hint="toolkit lab up")
        return profiles.hosts_of(str(state["profile"]))

    def host(self, name: str) -> LabHost:
        hosts = self.hosts()
        for host in hosts:
            if host.name == name:
                return host
        raise LabError(f"no lab host {name!r}; hosts: {', '.join(h.name for h in hosts)}")

    # -- up ------------------------------------------------------------------------------------
    def require_image(self) -> None:
        """Refuse before any state is written: without the image no host can be made (`down` would be needed)."""
        if not self.podman.exists("image", profiles.IMAGE):
            raise LabError(f"the lab image {profiles.IMAGE} is not built", hint="run scripts/setup")

    def up(self, profile: str) -> list[HostStatus]:
        state = self.state()
        if state is not None and state.get("profile") != profile:
            raise LabError(
                f"the lab is up with profile {state.get('profile')!r}, not {profile!r}",
                hint="toolkit lab down first, then toolkit lab up --profile " + profile,
            )
        self._refuse_foreign_lab("bring the lab up")
        self.require_image()
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_state(profile)  # before creating anything, so `down` can always clean up
        return self.bring_up(profiles.hosts_of(profile))

    def bring_up(self, hosts: list[LabHost], *, toolkit_env: str = "lab") -> list[HostStatus]:
        """Create what is missing of the network and the hosts' containers, start what is stopped, and write
        the inventory once every host answers over SSH. The caller has checked the image (require_image) and
        written the state file."""
        podman = self.podman
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_key()
        network = self.network
        if not podman.exists("network", network.name):
            podman.run(
                "network", "create", "--subnet", network.subnet, "--gateway", network.gateway,
                "--label", network.label, network.name,
            )  # fmt: skip
        for host in hosts:
            self._ensure_container(host)
        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            list(pool.map(self._wait_for_boot, hosts))
        public_key = self.paths.key.with_suffix(".pub").read_text()
        lines = []
        for host in hosts:
            self._authorize(host, public_key)
            lines.append(self._host_key_line(host))
        self.paths.known_hosts.write_text("".join(lines))
        apt_proxy = None
        if apt_cache_enabled():
            cache = AptCache(self.paths.apt_cache, network.gateway)
            cache.start()
            apt_proxy = cache.url
        self.paths.secrets.mkdir(mode=0o700, exist_ok=True)
        inventory.write(
            self.paths.inventory_file,
            inventory.render(
                hosts,
                key=self.paths.key,
                known_hosts=self.paths.known_hosts,
                apt_proxy=apt_proxy,
                secrets_dir=self.paths.secrets,
                network=network,
                toolkit_env=toolkit_env,
            ),
        )
        statuses = self._wait_until_reachable()
        unreachable = [s.name for s in statuses if not s.reachable]
        if unreachable:
            raise LabError(
                f"lab hosts not reachable over SSH: {', '.join(unreachable)}",
                hint="toolkit lab status; toolkit lab down && toolkit lab up",
            )
        return statuses

    def _wait_until_reachable(self) -> list[HostStatus]:
        deadline = time.monotonic() + SSH_TIMEOUT
        statuses = self.status()
        while any(not s.reachable for s in statuses) and time.monotonic() < deadline:
            time.sleep(1)
            statuses = self.status()
        return statuses

    def _ensure_key(self) -> None:
        ensure_key(self.paths.key, "toolkit-lab")

    def _write_state(self, profile: str) -> None:
        state = {"profile": profile, "network": self.network.name, "created": utc_iso()}
        previous = self.state()
        if previous and previous.get("created"):
            state["created"] = previous["created"]
        self.paths.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def _container_state(self, host: LabHost) -> str:
        """podman's state of the host's container, or "missing", or "dead".

        "dead" is a container podman still calls running (or stopping) whose processes are gone: killed
        outside podman, as when the machine's session ends. podman can neither exec in it nor start it.
        """
        found = self.podman.run(
            "container", "inspect", "--format", "{{.State.Status}} {{.State.Pid}}", host.container, check=False
        )
        if found.returncode != 0:
            return "missing"
        status, _, pid = found.stdout.strip().partition(" ")
        if status in ("running", "stopping") and not _process_exists(pid):
            return "dead"
        return status

    def _ensure_container(self, host: LabHost, *, bare: bool = False) -> None:
        state = self._container_state(host)
        if state == "running":
            return
        if state == "dead":
            # podman can neither exec in it nor restart it: a fresh one from the image replaces it (unconverged).
            self.podman.run("rm", "--force", "--time", "1", host.container)
            state = "missing"
        if state != "missing":
            self.podman.run("start", host.container)
            return
        self.podman.run(
            "run",
            "--detach",
            "--name",
            host.container,
            "--hostname",
            host.name,
            "--network",
            self.network.name,
            "--ip",
            host.address,
            "--mac-address",
            host.mac_address,
            "--systemd",
            "always",
            *(argument for capability in CAPABILITIES for argument in ("--cap-add", capability)),
            *(argument for sysctl in NETWORK_SYSCTLS for argument in ("--sysctl", sysctl)),
            "--label",
            self.network.label,
            "--label",
            f"{profiles.LABEL}.{'bare' if bare else 'host'}={host.name}",
            "--label",
            f"{profiles.OWNER_LABEL}={self.owner}",
            profiles.IMAGE,
            "/sbin/init",
        )

    def _systemd_state(self, host: LabHost) -> str:
        answer = self.podman.exec(host.container, "systemctl", "is-system-running")
        return answer.stdout.strip() or "offline"

    def _wait_for_boot(self, host: LabHost) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        state = "offline"
        while time.monotonic() < deadline:
            state = self._systemd_state(host)
            keys = self.podman.exec(host.container, "test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub")
            sshd = self.podman.exec(host.container, "systemctl", "is-active", "ssh")
            if state in ("running", "degraded") and keys.returncode == 0 and sshd.stdout.strip() == "active":
                return
            time.sleep(0.5)
        raise LabError(
            f"{host.name} did not boot within {BOOT_TIMEOUT:.0f}s (systemd: {state})",
            hint=f"podman logs {host.container}",
        )

    def _authorize(self, host: LabHost, public_key: str) -> None:
        script = (
            "install -d -m 0700 -o toolkit -g toolkit /home/toolkit/.ssh && "
            "cat > /home/toolkit/.ssh/authorized_keys && "
            "chown toolkit:toolkit /home/toolkit/.ssh/authorized_keys && chmod 0600 /home/toolkit/.ssh/authorized_keys"
        )
        done = self.podman.exec(host.container, "sh", "-c", script, stdin=public_key)
        if done.returncode != 0:
            raise LabError(f"could not install the lab key on {host.name}: {done.stderr.strip()}")

    def _host_key_line(self, host: LabHost) -> str:
        # Read out of band through podman: trusted without a trust-on-first-use SSH connection.
        key = self.podman.exec(host.container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()
        if len(key) < 2:
            raise LabError(f"{host.name} has no SSH host key")
        return f"{host.address},{host.name} {key[0]} {key[1]}\n"

    # -- bare hosts ----------------------------------------------------------------------------
    def add_bare(
        self, name: str, address: str, login: str, public_key: str | None = None, password: str | None = None
    ) -> LabHost:
        """A host as a new machine arrives: sshd and one login with sudo, no Python, not in any inventory.

        What `toolkit bootstrap` starts from. With a public key, the login has that key and passwordless
        sudo, as the default user of Debian's cloud images has; with a password, it logs in and uses sudo
        with that password, as the first user of a hand-installed server does. Idempotent: a running bare
        host is left as it is.

        Raises:
            LabError: the lab is not up, or the name or address is taken or outside the lab network.
        """
        if self.state() is None or not self.podman.exists("network", self.network.name):
            raise LabError("the lab is not up", hint="toolkit lab up")
        host = profiles.bare_host(name, address, self.network)
        if not LOGIN_NAME.match(login):
            raise LabError(f"{login!r} is not a login name")
        if (public_key is None) == (password is None):
            raise LabError("a bare host needs exactly one of an authorized key and a password")
        if public_key is not None and not public_key.strip().startswith(("ssh-", "ecdsa-")):
            raise LabError("the authorized key is not an OpenSSH public key line")
        if password is not None and (not password or "\n" in password):
            raise LabError("the password must be one non-empty line")
        if self._container_state(host) == "running":
            return host
        self._ensure_container(host, bare=True)
        self._wait_for_boot(host)
        script = BARE_SCRIPT + (BARE_KEY_LOGIN if public_key is not None else BARE_PASSWORD_LOGIN)
        secret = public_key if public_key is not None else f"{password}\n"
        done = self.podman.exec(host.container, "sh", "-c", script.replace("@LOGIN@", login), stdin=secret)
        if done.returncode != 0:
            raise LabError(f"could not make {name} bare: {(done.stderr or done.stdout).strip()[-300:]}")
        return host

    # -- status --------------------------------------------------------------------------------
    def _reachable(self, host: LabHost) -> bool:
        if not self.paths.key.exists() or not self.paths.known_hosts.exists():
            return False
        command = [
            *ssh_base_command(self.paths),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            f"toolkit@{host.address}",
            "sudo",
            "-n",
            "true",
        ]
        try:
            return subprocess.run(command, capture_output=True, timeout=15, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _status_of(self, host: LabHost) -> HostStatus:
        container = self._container_state(host)
        running = container == "running"
        return HostStatus(
            name=host.name,
            address=host.address,
            groups=host.groups,
            container=container,
            systemd=self._systemd_state(host) if running else "offline",
            reachable=running and self._reachable(host),
        )

    def status(self) -> list[HostStatus]:
        hosts = self.hosts()
        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            return list(pool.map(self._status_of, hosts))

    # -- down ----------------------------------------------------------------------------------
    def down(self, purge_cache: bool = False) -> list[str]:
        """Remove the lab. Returns what was removed (empty when nothing was up)."""
        removed: list[str] = []
        podman = self.podman
        self._refuse_foreign_lab("take the lab down")
        labelled = podman.json("ps", "--all", "--filter", f"label={self.network.label}", "--format", "json") or []
        names = [entry["Names"][0] for entry in labelled if entry.get("Names")]
        if names:
            podman.run("rm", "--force", "--time", "2", *names, timeout=180)
            removed += [f"container {name}" for name in names]
        if podman.exists("network", self.network.name):
            podman.run("network", "rm", self.network.name)
            removed.append(f"network {self.network.name}")
        cache = AptCache(self.paths.apt_cache, self.network.gateway)
        if cache.stop():
            removed.append("apt-cacher-ng")
        if purge_cache and self.paths.apt_cache.exists():
            cache.purge()
            removed.append("package cache")
        for path in (
            self.paths.inventory_file,
            self.paths.inventory_file.with_name("bootstrap.yml"),  # hosts `toolkit bootstrap` added
            self.paths.known_hosts,
            self.paths.key,
            self.paths.key.with_suffix(".pub"),
            self.paths.state_file,
        ):
            if path.exists():
                path.unlink()
                removed.append(str(path))
        if self.paths.secrets.exists():
            shutil.rmtree(self.paths.secrets)
            removed.append(str(self.paths.secrets))
        return removed


def status_as_dict(statuses: list[HostStatus]) -> list[dict[str, Any]]:
    return [asdict(status) for status in statuses]
