"""The bootstrap, step by step: each step timed, reported as it starts and ends, the first failure ends it.

Steps (docs/bootstrap.md): target, ssh, host key, login, inventory, access, base, hardening, node_exporter,
service, verify, prometheus. Playbook steps go through the runner core (a history row each, kind
``bootstrap``); verify is the service's testinfra suite, as ``toolkit verify`` runs it.

This module shows nothing itself: the caller's StepListener does (the CLI's console), so it stays usable from
other front ends and testable without a terminal.
"""

import dataclasses
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from toolkit.bootstrap import hostkeys, login, reachability, register
from toolkit.bootstrap.placement import SERVICE_GROUPS, Placement, place
from toolkit.bootstrap.target import Target
from toolkit.errors import ToolkitError, UsageError
from toolkit.exit_codes import ExitCode
from toolkit.paths import playbooks_dir
from toolkit.runner import inventory as inventory_layer
from toolkit.runner.events import RunEvent
from toolkit.runner.execute import PlaybookRun, RunSettings, run_playbook
from toolkit.runner.extravars import ExtraVars
from toolkit.runner.inventory import ResolvedInventory
from toolkit.runner.result import RunResult
from toolkit.runner.testinfra import VerifyResult, run_suites
from toolkit.services import infra_suite_for

Observer = Callable[[RunEvent], None]


@dataclass(frozen=True)
class Login:
    """How the bare host is reached the first time (before the admin account exists)."""

    user: str
    key: Path | None = None
    password: str | None = None  # never logged: passed as a secret extra var, scrubbed from artifacts


@dataclass(frozen=True)
class BootstrapRequest:
    target: Target
    service: str
    inventory: Path
    login: Login
    name: str | None = None
    group: str | None = None
    host_vars: dict[str, Any] = field(default_factory=dict)
    port: int = 22
    ssh_timeout: float = 300
    lock_login_password: bool = False
    verbosity: int = 0
    color: bool = False
    endpoint_url: str | None = None  # AWS endpoint (tests)


@dataclass
class StepRecord:
    name: str
    status: str  # ok | changed | failed | skipped
    seconds: float
    changed: int = 0
    detail: str = ""
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "changed": self.changed,
            "detail": self.detail,
            "run_id": self.run_id,
        }


@dataclass
class BootstrapResult:
    target: str
    service: str
    inventory: str
    placement: Placement | None = None
    steps: list[StepRecord] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK
    error: str = ""
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return sum(step.changed for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        placement = self.placement
        return {
            "kind": "bootstrap",
            "target": self.target,
            "service": self.service,
            "inventory": self.inventory,
            "host": placement.name if placement else None,
            "address": placement.address if placement else None,
            "group": placement.group if placement else None,
            "status": "successful" if self.exit_code == ExitCode.OK else "failed",
            "exit_code": int(self.exit_code),
            "changed": self.changed,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "steps": [step.to_dict() for step in self.steps],
        }


class StepListener(Protocol):
    def step_started(self, name: str, description: str) -> None: ...

    def step_finished(self, record: StepRecord) -> None: ...

    def playbook_view(self, title: str, hosts: tuple[str, ...]) -> AbstractContextManager[Observer]: ...


class StepFailed(Exception):
    def __init__(self, exit_code: ExitCode, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.run_id = run_id


@dataclass(frozen=True)
class Connection:
    """What the inventory says later runs connect with: the account the access step creates."""

    admin_user: str
    admin_key: Path | None
    known_hosts: Path

    def public_key(self) -> str:
        if self.admin_key is None:
            raise UsageError(
                "the inventory sets no ansible_ssh_private_key_file, so there is no key to authorize",
                hint="set it in the inventory's group_vars (all)",
            )
        public = Path(f"{self.admin_key}.pub")
        if public.is_file():
            return public.read_text().strip()
        found = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(self.admin_key)], capture_output=True, text=True, check=False, timeout=30
        )
        if found.returncode != 0:
            raise UsageError(f"cannot read the public half of {self.admin_key}: {found.stderr.strip()}")
        return found.stdout.strip()


def known_hosts_from(common_args: str) -> Path | None:
    """The UserKnownHostsFile in ansible_ssh_common_args (``-o UserKnownHostsFile=PATH`` or ``-o X PATH``)."""
    words = common_args.replace("=", " ").split()
    for index, word in enumerate(words[:-1]):
        if word == "UserKnownHostsFile":
            return Path(words[index + 1]).expanduser()
    return None


def connection_of(variables: dict[str, Any], fallback_known_hosts: Path) -> Connection:
    key = variables.get("ansible_ssh_private_key_file") or variables.get("ansible_private_key_file")
    known = known_hosts_from(str(variables.get("ansible_ssh_common_args", "")))
    return Connection(
        admin_user=str(variables.get("ansible_user") or "root"),
        admin_key=Path(str(key)).expanduser() if key else None,
        known_hosts=known or fallback_known_hosts,
    )


class Bootstrap:
    def __init__(
        self,
        request: BootstrapRequest,
        settings: RunSettings,
        listener: StepListener,
        cancel: threading.Event | None = None,
    ) -> None:
        self.request = request
        self.settings = settings
        self.listener = listener
        self.cancel = cancel or threading.Event()
        self.result = BootstrapResult(
            target=request.target.instance_id or request.target.address,
            service=request.service,
            inventory=str(request.inventory),
        )
        self._connection: Connection | None = None
        self._first_contact = False
        self._as_admin = False
        self._admin_public_key = ""

    # --- the sequence -------------------------------------------------------------------------------------

    def run(self) -> BootstrapResult:
        started = time.monotonic()
        try:
            self._prepare()
            self._step("ssh", "wait for sshd to answer", self._wait_for_ssh)
            self._step("host key", "trust on first use; refuse a changed key", self._trust_host_key)
            self._step("login", "prove the credentials before anything changes", self._login)
            self._step("inventory", "add the host to its inventory", self._register)
            self._step("access", "Python, the admin account, sudo", self._access)
            for service in ("base", "hardening", "node_exporter"):
                self._playbook_step(service, f"playbooks/{service}.yml on the host", service, self.placement.name)
            if self.placement.group is not None:
                self._playbook_step(
                    "service",
                    f"playbooks/{self.request.service}.yml",
                    self.request.service,
                    self.placement.service_limit,
                )
            self._step("verify", f"tests/infra suite of {self.request.service}", self._verify)
            self._prometheus()
        except StepFailed as failure:
            self.result.exit_code = failure.exit_code
            self.result.error = str(failure)
        except ToolkitError as error:
            self.result.exit_code = error.exit_code
            self.result.error = error.message + (f" ({error.hint})" if error.hint else "")
        self.result.seconds = time.monotonic() - started
        return self.result

    @property
    def placement(self) -> Placement:
        assert self.result.placement is not None
        return self.result.placement

    @property
    def connection(self) -> Connection:
        assert self._connection is not None
        return self._connection

    def _step(self, name: str, description: str, action: Callable[[], StepRecord]) -> None:
        if self.cancel.is_set():
            raise StepFailed(ExitCode.INTERRUPTED, "interrupted")
        self.listener.step_started(name, description)
        started = time.monotonic()
        try:
            record = action()
        except StepFailed as failure:
            record = StepRecord(name, "failed", time.monotonic() - started, detail=str(failure), run_id=failure.run_id)
            self._finish(record)
            raise
        except ToolkitError as error:
            record = StepRecord(name, "failed", time.monotonic() - started, detail=error.message)
            self._finish(record)
            raise StepFailed(error.exit_code, f"{name}: {error.message}") from None
        record.name = name
        record.seconds = time.monotonic() - started
        self._finish(record)

    def _finish(self, record: StepRecord) -> None:
        self.result.steps.append(record)
        self.listener.step_finished(record)

    # --- steps --------------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Placement and connection from the inventory, before anything touches the host (bad input: no change)."""
        request = self.request
        loaded = inventory_layer.load(request.inventory)
        # str(): Ansible's names are tagged str subclasses, which yaml.safe_dump refuses to write.
        groups = {
            str(group.name): [str(host.name) for host in group.get_hosts()] for group in loaded.manager.groups.values()
        }
        name = request.name or request.target.tags.get("Name") or request.target.address
        existing = loaded.manager.get_host(name)
        if existing is not None and str(existing.vars.get("ansible_host", name)) != request.target.address:
            raise UsageError(
                f"the inventory has a host {name} at {existing.vars.get('ansible_host')}, not {request.target.address}",
                hint="pick another name with --name",
            )
        # A re-run keeps the group the host already has (a former primary stays one).
        kept = None
        if existing is not None and request.group is None:
            service_groups = SERVICE_GROUPS.get(request.service, ())
            kept = next((str(g.name) for g in existing.get_groups() if g.name in service_groups), None)
        placement = place(
            name=name,
            address=request.target.address,
            service=request.service,
            existing_groups={group: [h for h in hosts if h != name] for group, hosts in groups.items()},
            group=request.group or kept,
            hostvars={**({"ansible_port": request.port} if request.port != 22 else {}), **request.host_vars},
        )
        self.result.placement = placement
        probe = loaded.manager.add_host(f"{name}.toolkit-bootstrap-probe", group=placement.group or "all")
        variables = loaded.host_vars(loaded.manager.get_host(probe))
        self._connection = connection_of(variables, self.settings.state.home / "known_hosts")
        self._admin_public_key = self.connection.public_key()  # fails now, not after the host was touched
        if request.login.password is not None and shutil.which("sshpass") is None:
            raise UsageError("a password login needs sshpass on this controller", hint="apt-get install sshpass")
        self._playbook_inventory = ResolvedInventory(
            source=loaded.source, hosts=(placement.name,), limit=placement.name
        )

    def _wait_for_ssh(self) -> StepRecord:
        ready = reachability.wait_for_ssh(
            self.request.target.address, self.request.port, timeout=self.request.ssh_timeout
        )
        return StepRecord("ssh", "ok", 0, detail=f"{ready.banner} after {ready.waited:.1f}s")

    def _trust_host_key(self) -> StepRecord:
        address, port = self.request.target.address, self.request.port
        trust = hostkeys.trust_on_first_use(self.connection.known_hosts, address, port, hostkeys.scan(address, port))
        self._first_contact = trust.learned
        if trust.learned:
            keys = ", ".join(key.describe() for key in trust.keys)
            return StepRecord("host key", "changed", 0, changed=1, detail=f"learned {keys}")
        return StepRecord("host key", "ok", 0, detail="matches the known key")

    def _register(self) -> StepRecord:
        target, placement = self.request.target, self.placement
        if target.instance_id and target.region:
            tags = register.ec2_tags(placement)
            changed = register.register_on_ec2(
                target.instance_id, target.region, target.tags, tags, endpoint_url=self.request.endpoint_url
            )
            where = f"tags {', '.join(f'{k}={v}' for k, v in sorted(tags.items())) or '(none needed)'}"
            self._adopt_inventory_name()
        else:
            changed = register.register_in_file(self.request.inventory, placement)
            where = str(register.bootstrap_file(self.request.inventory))
        group = placement.group or "ungrouped"
        return StepRecord(
            "inventory", "changed" if changed else "ok", 0, changed=int(changed), detail=f"{group}: {where}"
        )

    def _adopt_inventory_name(self) -> None:
        """After tagging, the dynamic inventory names the instance (Name tag, DNS name or id): use its name."""
        loaded = inventory_layer.load(self.request.inventory, refresh=True)
        for host in loaded.every:
            if str(loaded.host_vars(host).get("ansible_host")) == self.request.target.address:
                if host.name != self.placement.name:
                    name = str(host.name)
                    self.result.placement = dataclasses.replace(self.placement, name=name)
                    self._playbook_inventory = ResolvedInventory(loaded.source, (name,), name)
                return
        raise UsageError(
            f"the inventory {self.request.inventory} does not list {self.request.target.instance_id} after tagging",
            hint="do its filters (env tag, states) select the instance?",
        )

    def _ssh_login(self, user: str, key: Path | None, password: str | None = None) -> login.SshLogin:
        return login.SshLogin(
            self.request.target.address, self.request.port, user, self.connection.known_hosts, key, password
        )

    def _admin_login_works(self) -> bool:
        """Whether the admin account already logs in with its key and sudo (a re-run, or a host built with it)."""
        if self.connection.admin_key is None:
            return False
        admin = self._ssh_login(self.connection.admin_user, self.connection.admin_key)
        return login.works(admin, "sudo", "-n", "true")

    def _prove_bootstrap_login(self) -> None:
        credentials = self.request.login
        login.prove(self._ssh_login(credentials.user, credentials.key, credentials.password))

    def _login(self) -> StepRecord:
        # A host never seen before has no admin account yet: no probe, which sshd would log as a failed login.
        self._as_admin = not self._first_contact and self._admin_login_works()
        if self._as_admin:
            return StepRecord("login", "ok", 0, detail=f"as {self.connection.admin_user} (the admin account)")
        self._prove_bootstrap_login()
        return StepRecord("login", "ok", 0, detail=f"as {self.request.login.user} (bootstrap login)")

    def _access(self) -> StepRecord:
        login = self.request.login
        extra: dict[str, Any] = {
            "bootstrap_admin_user": self.connection.admin_user,
            "bootstrap_admin_public_key": self._admin_public_key,
            "bootstrap_lock_login_password": self.request.lock_login_password,
            "bootstrap_login_user": login.user,
        }
        as_admin = self._as_admin
        if not as_admin:
            extra["ansible_user"] = login.user
            if login.key is not None:
                extra["ansible_ssh_private_key_file"] = str(login.key)
            if login.password is not None:
                extra["ansible_password"] = login.password
                extra["ansible_become_password"] = login.password
        record = self._run_playbook(
            "access", "bootstrap", self.placement.name, extra, tags="bootstrap_access", skip_tags="always"
        )
        record.detail = ("as " + self.connection.admin_user) if as_admin else f"as {login.user} (bootstrap login)"
        return record

    def _playbook_step(self, name: str, description: str, playbook: str, limit: str) -> None:
        self._step(name, description, lambda: self._run_playbook(name, playbook, limit, {}))

    def _run_playbook(
        self,
        step: str,
        playbook: str,
        limit: str,
        extra: dict[str, Any],
        *,
        tags: str | None = None,
        skip_tags: str | None = None,
    ) -> StepRecord:
        resolved = inventory_layer.resolve(self.request.inventory, limit)
        run = PlaybookRun(
            kind="bootstrap",
            target=self.request.service,
            playbook=playbooks_dir() / f"{playbook}.yml",
            inventory=resolved,
            tags=tags,
            skip_tags=skip_tags,
            extra_vars=ExtraVars(inline=extra),
            verbosity=self.request.verbosity,
            color=self.request.color,
            note=f"{self.placement.name}: {step}",
        )
        with self.listener.playbook_view(f"bootstrap {self.placement.name}: {step}", resolved.hosts) as observer:
            result = run_playbook(run, self.settings, observer=observer, cancel=self.cancel)
        return _record_of(step, result)

    def _verify(self) -> StepRecord:
        service = self.request.service
        suites = infra_suite_for(service)
        if not suites:
            return StepRecord("verify", "skipped", 0, detail=f"no tests/infra suite for {service}")
        outcome: VerifyResult = run_suites(
            service, suites, self._playbook_inventory, self.settings.state, self.settings.keep_runs
        )
        verdict = outcome.hosts.get(self.placement.name)
        passed = verdict.passed if verdict else 0
        if outcome.exit_code != ExitCode.OK:
            first = outcome.failures[0].message if outcome.failures else outcome.error or "no test passed"
            raise StepFailed(outcome.exit_code, f"verify: {first}", outcome.run_id)
        return StepRecord("verify", "ok", 0, detail=f"{passed} tests passed", run_id=outcome.run_id)

    def _prometheus(self) -> None:
        loaded = inventory_layer.load(self.request.inventory)
        servers = [host.name for host in loaded.manager.get_hosts("prometheus")]
        if not servers:
            self._step(
                "prometheus",
                "scrape targets",
                lambda: StepRecord("prometheus", "skipped", 0, detail="the inventory has no prometheus host"),
            )
            return
        self._playbook_step("prometheus", "regenerate scrape targets", "prometheus", "prometheus")


def _record_of(step: str, result: RunResult) -> StepRecord:
    if result.exit_code != ExitCode.OK:
        first = result.failed[0] if result.failed else None
        message = f"{first.host}: {first.task}: {first.message}" if first else (result.error or result.status)
        raise StepFailed(result.exit_code, f"{step}: {message}", result.run_id)
    changed = result.changed_count
    return StepRecord(step, "changed" if changed else "ok", result.duration, changed=changed, run_id=result.run_id)
