"""``toolkit env up NAME --provider aws``: the resources (playbooks/_env_aws.yml), then the hosts configured.

After the amazon.aws run, the environment's inventory (the aws_fleet plugin on its tag, group_vars from the
spec) is what every later step reaches the hosts through, as an operator's `-i` would:

1. instances: every host of the spec is listed by the inventory (running, with an address to reach);
2. ssh: each answers SSH, and its host keys are learned into the environment's known_hosts (trust on first
   use; a host that presents a different key than the one recorded stops the run, naming both);
3. access: playbooks/bootstrap.yml's first play as Debian's ``admin`` with the environment's key (the key pair
   the instances were launched with): Python where missing, the admin account's key and sudo;
4. `converge site`, then every service's testinfra suite, as in the lab (env_configure.py).

The first failure stops the run with its own exit code (unreachable 4, a failed task 1); what was created
stays, and the next `up` takes it from there.
"""

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from toolkit import console
from toolkit.bootstrap import hostkeys, reachability
from toolkit.cli.converge import cancel_on_signals
from toolkit.cli.env_configure import EnvUpReport, Member, converge_and_verify
from toolkit.environments.aws_inventory import known_hosts_path, write_inventory
from toolkit.environments.aws_model import aws_settings, desired_resources
from toolkit.environments.aws_state import aws_errors, ec2_client, endpoints, read_environment
from toolkit.environments.aws_up import created_at, environment_key, up_run, up_variables
from toolkit.environments.plan import make_plan
from toolkit.environments.spec import EnvironmentSpec
from toolkit.errors import ToolkitError, UsageError
from toolkit.exit_codes import ExitCode
from toolkit.paths import StatePaths, playbooks_dir
from toolkit.runner.execute import PlaybookRun, RunSettings, run_playbook
from toolkit.runner.extravars import ExtraVars
from toolkit.runner.inventory import LoadedInventory, load, resolved_from

# Debian's images: the account cloud-init makes, with the key pair's key.
IMAGE_LOGIN = "admin"
POLL_SECONDS = 5.0


def aws_up(
    spec: EnvironmentSpec,
    state: StatePaths,
    settings: RunSettings,
    *,
    verbose: int,
    json_output: bool,
    resources_only: bool,
    verify: bool,
    ssh_timeout: float,
) -> EnvUpReport:
    aws = aws_settings(spec)
    report = EnvUpReport("aws", spec.name, details={"region": aws.region})
    started = time.monotonic()
    with aws_errors():
        client = ec2_client(aws.region)
        before = make_plan(spec.name, desired_resources(spec), read_environment(client, spec.name))
        created = created_at(client, spec.name, aws.region, dt.datetime.now(dt.UTC))
    key = environment_key(state, spec.name)
    if not json_output:
        console.print_environment_plan(before, aws.region)
    run = up_run(spec, up_variables(spec, key.with_suffix(".pub").read_text().strip(), created), verbose)
    with cancel_on_signals() as cancel, console.RunView(f"env up {spec.name}", ("localhost",), verbose=verbose) as view:
        result = run_playbook(run, settings, observer=view.handle, cancel=cancel)
    console.print_run_summary(result)
    inventory = write_inventory(spec, state, key, created)
    with aws_errors():
        after = make_plan(spec.name, desired_resources(spec), read_environment(client, spec.name))
        hosts = endpoints(client, spec.name)
    report.steps["resources"] = time.monotonic() - started
    report.hosts = [host.to_dict() for host in hosts]
    report.details |= {
        "before": before.to_dict(), "after": after.to_dict(), "inventory": str(inventory), "run": result.to_dict()
    }  # fmt: skip
    if not json_output:
        console.print_environment_up(before, after, hosts)
        console.info(f"inventory: {inventory}")
    if result.exit_code != ExitCode.OK:
        report.fail(result.exit_code, "the resources run failed")
        return report
    if resources_only:
        return report
    try:
        _configure(report, spec, inventory, key, state, settings, verbose=verbose, verify=verify, wait=ssh_timeout)
    except ToolkitError as error:
        report.fail(error.exit_code, error.message + (f" ({error.hint})" if error.hint else ""))
    return report


def _configure(
    report: EnvUpReport,
    spec: EnvironmentSpec,
    inventory: Path,
    key: Path,
    state: StatePaths,
    settings: RunSettings,
    *,
    verbose: int,
    verify: bool,
    wait: float,
) -> None:
    started = time.monotonic()
    loaded = wait_for_instances(spec, inventory, timeout=wait)
    report.members = members_of(loaded)
    report.steps["instances"] = time.monotonic() - started

    started = time.monotonic()
    learned = trust_hosts(report.members, known_hosts_path(state, spec.name), wait)
    report.steps["ssh"] = time.monotonic() - started
    if learned:
        console.info(f"host keys learned (first use): {', '.join(learned)}")

    started = time.monotonic()
    access = access_run(spec, loaded, key, verbose)
    with cancel_on_signals() as cancel, console.RunView("access", access.inventory.hosts, verbose=verbose) as view:
        result = run_playbook(access, settings, observer=view.handle, cancel=cancel)
    report.steps["access"] = time.monotonic() - started
    console.print_run_summary(result)
    if result.exit_code != ExitCode.OK:
        report.fail(result.exit_code, "access (playbooks/bootstrap.yml) failed")
        return
    converge_and_verify(report, spec, loaded, state, settings, verbose=verbose, verify=verify)


def wait_for_instances(spec: EnvironmentSpec, inventory: Path, *, timeout: float) -> LoadedInventory:
    """The inventory once it lists every host of the spec with an address (instances start as pending, which
    the plugin leaves out).

    Raises:
        UnreachableError: some were still missing after ``timeout`` seconds.
    """
    wanted = {host.name for host in spec.hosts}
    deadline = time.monotonic() + timeout
    while True:
        missing = sorted(wanted)
        why = "are the instances running? (toolkit env plan shows what exists)"
        try:
            loaded = load(inventory, refresh=True)
            listed = {str(h.name) for h in loaded.every if loaded.host_vars(h).get("ansible_host")}
            missing = sorted(wanted - listed)
            if not missing:
                return loaded
        except UsageError as error:
            why = error.message  # no host listed yet, or the plugin's own error
        if time.monotonic() >= deadline:
            raise reachability.UnreachableError(
                f"the inventory does not list {', '.join(missing)} after {timeout:g}s", hint=why
            )
        time.sleep(POLL_SECONDS)


def members_of(loaded: LoadedInventory) -> list[Member]:
    members = []
    for host in loaded.every:
        groups = tuple(sorted(str(g.name) for g in host.get_groups() if g.name not in ("all", "ungrouped")))
        # A host the spec no longer has may have no address (stopped): Ansible would use its name, so do we.
        address = loaded.host_vars(host).get("ansible_host") or host.name
        members.append(Member(str(host.name), str(address), groups))
    return sorted(members, key=lambda m: m.name)


def trust_hosts(members: list[Member], known_hosts: Path, timeout: float) -> list[str]:
    """Wait for every host's sshd (together: they boot together), then learn or check each one's host keys.
    Returns the hosts seen for the first time."""
    with ThreadPoolExecutor(max_workers=max(1, min(len(members), 16))) as pool:
        list(pool.map(lambda m: reachability.wait_for_ssh(m.address, timeout=timeout), members))
    learned = []
    for member in members:
        trust = hostkeys.trust_on_first_use(known_hosts, member.address, 22, hostkeys.scan(member.address))
        if trust.learned:
            learned.append(member.name)
    return learned


def access_run(spec: EnvironmentSpec, loaded: LoadedInventory, key: Path, verbose: int = 0) -> PlaybookRun:
    """playbooks/bootstrap.yml's access play on every host, as the image's login with the environment's key
    (which is also the account every later run uses: the inventory's ansible_user)."""
    resolved = resolved_from(loaded, None)
    return PlaybookRun(
        kind="bootstrap",
        target=spec.name,
        playbook=playbooks_dir() / "bootstrap.yml",
        inventory=resolved,
        tags="bootstrap_access",
        skip_tags="always",
        extra_vars=ExtraVars(
            inline={
                "bootstrap_admin_user": IMAGE_LOGIN,
                "bootstrap_admin_public_key": key.with_suffix(".pub").read_text().strip(),
                "bootstrap_login_user": IMAGE_LOGIN,
            }
        ),
        verbosity=verbose,
        note=f"env up {spec.name}: access",
    )
