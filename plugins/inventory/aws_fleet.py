"""aws_fleet: EC2 instances in many regions and accounts as Ansible groups and cluster topology.

Loaded by name from the project's ``inventory_plugins`` directory (ansible.cfg), by plain ansible, AWX and
toolkit alike, so it imports nothing from toolkit. Layout: options and validation (``Settings``), the AWS
queries (``query_fleet``: concurrent, paginated, retried), the pure inventory model (``build_document``: groups,
host vars and topology, tested without AWS) and the plugin class that ties them to Ansible, caching the
processed document rather than the raw API answer.
"""

# Ansible reads DOCUMENTATION and EXAMPLES as the module's first statements, so imports follow them.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
name: aws_fleet
short_description: EC2 fleets in many regions and accounts, with Cassandra, PostgreSQL and Prometheus topology
description:
  - Lists EC2 instances of one or several AWS accounts in several regions, queried concurrently, and turns them into
    groups (service, tags, region, availability zone) and the topology variables the project's roles consume.
  - The configuration file name must end in C(.aws.yml) or C(.aws.yaml).
  - Credentials come from the standard boto3 chain (environment, O(profile), SSO, instance or task role); each entry
    of O(accounts) is reached by assuming its role with those credentials.
  - The cache (O(cache)) stores the processed inventory, so a cached run does no templating and no AWS call.
extends_documentation_fragment:
  - inventory_cache
  - constructed
options:
  plugin:
    description: Marks the file as this plugin's configuration.
    required: true
    choices: [aws_fleet]
  regions:
    description:
      - Regions to query. V(all) queries every region enabled for each account (one C(ec2:DescribeRegions) call
        per account first).
      - Required on purpose; querying every region by default is slow and fails on regions an account never
        enabled.
    type: list
    elements: str
    required: true
  accounts:
    description:
      - Accounts reached by assuming a role in each. Empty (the default) uses the credentials' own account.
    type: list
    elements: dict
    default: []
    suboptions:
      role_arn:
        description: The role to assume, C(arn:aws:iam::ACCOUNT:role/NAME).
        type: str
        required: true
      name:
        description: A readable name for the account, used in the C(account_NAME) group and C(aws_account) var.
        type: str
      external_id:
        description: The external id the role's trust policy requires, if any.
        type: str
      regions:
        description: Regions for this account instead of O(regions).
        type: list
        elements: str
  profile:
    description: The AWS profile for the base credentials; unset uses the default boto3 chain.
    type: str
    env:
      - name: AWS_PROFILE
  endpoint_url:
    description: Send every AWS call to this URL (VPC endpoints, test servers such as moto).
    type: str
    env:
      - name: AWS_ENDPOINT_URL
  filters:
    description:
      - EC2 C(DescribeInstances) filters, applied by AWS (for example V(tag:env), V(instance-type), V(vpc-id)).
        A value may be a string or a list of strings.
      - Use O(states) rather than an C(instance-state-name) filter.
    type: dict
    default: {}
  states:
    description:
      - Instance states to include, out of V(pending), V(running), V(shutting-down), V(terminated), V(stopping) and
        V(stopped); instances in other states are left out by AWS.
      - Unset, it is V([running]), or every state when O(exclude_states) is set.
      - An unknown state fails the inventory in one line naming it.
    type: list
    elements: str
  exclude_states:
    description:
      - Instance states to leave out, from O(states) or, when O(states) is unset, from every state; for example
        V([terminated, shutting-down]) lists every instance that is not going away.
      - States as in O(states). Excluding every included state fails the inventory rather than listing nothing.
    type: list
    elements: str
    default: []
  hostnames:
    description:
      - Preference list for each host's inventory name. The first entry that gives a value unique in the fleet is
        used; instances whose candidate is shared with another instance try the next entry, and the instance id is
        the last resort, so names never collide.
      - Entries are V(tag:KEY), V(instance-id), V(private-dns-name), V(dns-name), V(private-ip-address),
        V(ip-address).
      - Characters outside C([A-Za-z0-9._-]) in a name become V(_).
    type: list
    elements: str
    default: ['tag:Name', private-dns-name, instance-id]
  ansible_host:
    description:
      - Preference list for C(ansible_host), the address Ansible connects to. Entries as in O(hostnames).
      - A host with none of them keeps no C(ansible_host) (a message at -vvv); O(compose) can still set one.
    type: list
    elements: str
    default: [private-ip-address]
  tag_keys:
    description:
      - Which tag keys carry the fleet's meaning. Missing keys take their defaults.
      - C(service) names the host's service group (V(cassandra), V(postgresql), V(prometheus)); C(cluster)
        separates clusters of one service; C(env) becomes C(toolkit_env); C(role) (V(primary) or V(replica))
        places PostgreSQL hosts; C(cassandra_dc) and C(cassandra_rack) override the region and zone.
    type: dict
    default:
      service: service
      cluster: cluster
      env: env
      role: role
      cassandra_dc: cassandra_dc
      cassandra_rack: cassandra_rack
  group_by_tags:
    description: Tag keys that make a group per value, named C(KEY_VALUE) (sanitised; see the group naming rule).
    type: list
    elements: str
    default: [cluster, env, role]
  cassandra_seeds_per_dc:
    description: How many seeds each Cassandra data centre contributes to C(cassandra_seeds).
    type: int
    default: 3
  on_region_error:
    description:
      - What to do when one region (or account) cannot be listed. V(fail) fails the inventory naming the region;
        V(skip) warns naming it and keeps the other regions' hosts.
    type: str
    default: fail
    choices: [fail, skip]
  max_workers:
    description: How many regions and accounts are queried at once.
    type: int
    default: 8
  page_size:
    description: C(MaxResults) of each C(DescribeInstances) page (5 to 1000).
    type: int
    default: 1000
  retry_mode:
    description: botocore's retry mode for throttling and transient errors; C(adaptive) also rate-limits the client.
    type: str
    default: standard
    choices: [standard, adaptive]
  max_attempts:
    description: Attempts per AWS call, first one included, with exponential backoff between them.
    type: int
    default: 10
  connect_timeout:
    description: Seconds to wait for a connection to an AWS endpoint.
    type: float
    default: 10
  read_timeout:
    description: Seconds to wait for each AWS answer.
    type: float
    default: 60
"""

EXAMPLES = r"""
# Production: three regions, the default tag names, private addresses, a 10-minute processed cache.
plugin: aws_fleet
regions: [eu-west-1, eu-central-1, us-east-1]
filters:
  tag:env: prod
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: .toolkit/inventory-cache
cache_timeout: 600

---
# Two accounts reached through roles, every enabled region, skipping a region that fails.
plugin: aws_fleet
regions: [all]
accounts:
  - role_arn: arn:aws:iam::111111111111:role/inventory-read
    name: payments
  - role_arn: arn:aws:iam::222222222222:role/inventory-read
    name: search
    external_id: toolkit
    regions: [us-east-1]
on_region_error: skip

---
# Bastion-less access over public addresses, capitalised tag keys, and a constructed group.
plugin: aws_fleet
regions: [us-west-2]
ansible_host: [ip-address, private-ip-address]
tag_keys:
  service: Service
  cluster: Cluster
  env: Environment
group_by_tags: [Cluster, Environment]
groups:
  large: aws_instance_type.startswith('m7i.4x')
"""

import concurrent.futures
import dataclasses
import difflib
import hashlib
import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    import botocore.session
except ImportError:  # reported by parse() as a one-line error, so ansible can still list its plugins
    boto3 = None

# Bumped whenever the cached document's shape changes, so an old cache is ignored instead of misread.
DOCUMENT_FORMAT = 1
CONFIG_SUFFIXES = (".aws.yml", ".aws.yaml")
STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")
ADDRESS_SOURCES = ("instance-id", "private-dns-name", "dns-name", "private-ip-address", "ip-address")
DEFAULT_TAG_KEYS = {
    "service": "service",
    "cluster": "cluster",
    "env": "env",
    "role": "role",
    "cassandra_dc": "cassandra_dc",
    "cassandra_rack": "cassandra_rack",
}
# Options that do not change what the inventory contains, left out of the cache fingerprint.
_NOT_CONTENT = frozenset(
    {"cache", "cache_plugin", "cache_timeout", "cache_connection", "cache_prefix", "max_workers", "retry_mode"}
    | {"max_attempts", "connect_timeout", "read_timeout", "page_size", "endpoint_url", "profile"}
)
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
    }
)
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"})
_DENIED = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "UnauthorizedAccess"})
_BAD_CREDENTIALS = frozenset(
    {"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"}
)
# Same rule as Ansible's own group sanitising (constants.INVALID_VARIABLE_NAMES), so groups made here and by
# keyed_groups in amazon.aws.aws_ec2 agree: every non-word character, and a leading digit, becomes "_".
_UNSAFE_GROUP = re.compile(r"^[\d\W]|[^\w]")
_UNSAFE_HOST = re.compile(r"[^A-Za-z0-9._-]")
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):role/.+$")
# A constructed expression that is only a variable or a dotted path into one (aws_tags.env): resolved in Python
# instead of through Jinja, which costs about a millisecond a host and expression.
_PLAIN_PATH = re.compile(r"^\s*[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\s*$")
_DICT_ATTRIBUTES = frozenset(dir(dict))
_MISSING = object()


class FleetError(Exception):
    """A problem the user must fix, phrased as one line."""


# ---------------------------------------------------------------------------------------------
# Settings: every option read and checked once, before any AWS call.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    role_arn: str | None  # None: the base credentials' own account
    name: str | None
    external_id: str | None
    regions: tuple[str, ...]

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        match = _ROLE_ARN.match(self.role_arn or "")
        return match.group(1) if match else "default"


@dataclass(frozen=True)
class Settings:
    accounts: tuple[Account, ...]
    profile: str | None
    endpoint_url: str | None
    filters: tuple[tuple[str, tuple[str, ...]], ...]
    states: tuple[str, ...]
    hostnames: tuple[str, ...]
    ansible_host: tuple[str, ...]
    tag_keys: Mapping[str, str]
    group_by_tags: tuple[str, ...]
    seeds_per_dc: int
    on_region_error: str
    max_workers: int
    page_size: int
    retry_mode: str
    max_attempts: int
    connect_timeout: float
    read_timeout: float
    fingerprint: str = ""


def _string_list(value: Any, option: str) -> tuple[str, ...]:
    # str() drops the template trust Ansible tags config strings with: values derived from options (a region
    # becomes aws_region) must be plain data like everything else the inventory holds, cached or not.
    if isinstance(value, str):
        return (str(value),)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FleetError(f"option {option} must be a string or a list of strings")
    return tuple(str(item) for item in value)


def _check_source(entry: str, option: str) -> str:
    if entry.startswith("tag:") and len(entry) > 4:
        return entry
    if entry not in ADDRESS_SOURCES:
        choices = ", ".join(("tag:KEY", *ADDRESS_SOURCES))
        raise FleetError(f"option {option}: unknown entry {entry!r} (one of {choices})")
    return entry


def known_regions() -> set[str]:
    """Every EC2 region of every partition this botocore knows."""
    session = botocore.session.get_session() if boto3 else None
    if session is None:
        return set()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return regions


def _check_regions(regions: tuple[str, ...], known: set[str]) -> tuple[str, ...]:
    if not regions:
        raise FleetError("option regions is empty: list the regions to query, or [all]")
    for region in regions:
        if region == "all":
            if len(regions) > 1:
                raise FleetError("option regions: 'all' cannot be combined with named regions")
            continue
        if known and region not in known:
            close = difflib.get_close_matches(region, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FleetError(f"unknown region {region!r}{hint}")
    return regions


def _check_states(value: Any, option: str) -> tuple[str, ...]:
    states = _string_list(value or [], option)
    for state in states:
        if state not in STATES:
            raise FleetError(f"option {option}: unknown state {state!r} (one of {', '.join(STATES)})")
    return states


def _states(included: Any, excluded: Any) -> tuple[str, ...]:
    """The states to list: ``states`` (default running, or every state when some are excluded) minus
    ``exclude_states``, in AWS's order."""
    exclude = set(_check_states(excluded, "exclude_states"))
    named = set(_check_states(included, "states"))
    include = named or (set(STATES) if exclude else {"running"})
    states = tuple(state for state in STATES if state in include - exclude)
    if not states:
        of = f" of states ({', '.join(s for s in STATES if s in named)})" if named else ""
        raise FleetError(f"option exclude_states excludes every state{of}: nothing would be listed")
    return states


def settings_from_options(options: Mapping[str, Any], known: set[str] | None = None) -> Settings:
    """Validate the plugin's options (already type-checked by Ansible) into Settings.

    Raises:
        FleetError: an option is malformed or inconsistent.
    """
    known = known_regions() if known is None else known
    regions = _check_regions(_string_list(options["regions"], "regions"), known)
    accounts: list[Account] = []
    for index, entry in enumerate(options.get("accounts") or []):
        where = f"accounts[{index}]"
        if not isinstance(entry, Mapping):
            raise FleetError(f"option {where} must be a mapping with role_arn")
        unknown = set(entry) - {"role_arn", "name", "external_id", "regions"}
        if unknown:
            raise FleetError(f"option {where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        role_arn = entry.get("role_arn")
        if not isinstance(role_arn, str) or not _ROLE_ARN.match(role_arn):
            raise FleetError(f"option {where}.role_arn must be a role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        own = entry.get("regions")
        account_regions = regions if own is None else _check_regions(_string_list(own, f"{where}.regions"), known)
        name = entry.get("name")
        external_id = entry.get("external_id")
        accounts.append(
            Account(role_arn, str(name) if name else None, str(external_id) if external_id else None, account_regions)
        )
    if not accounts:
        accounts.append(Account(None, None, None, regions))
    labels = [account.label for account in accounts]
    if len(set(labels)) != len(labels):
        raise FleetError("option accounts: two accounts have the same name or account id")

    filters: list[tuple[str, tuple[str, ...]]] = []
    for name, value in sorted((options.get("filters") or {}).items()):
        if name == "instance-state-name":
            raise FleetError("option filters: use the states option instead of an instance-state-name filter")
        values = [value] if isinstance(value, str | int | float | bool) else value
        if not isinstance(values, list) or not values:
            raise FleetError(f"option filters: {name} must be a string or a non-empty list")
        filters.append((str(name), tuple(str(v) for v in values)))

    states = _states(options.get("states"), options.get("exclude_states"))
    hostnames = tuple(_check_source(e, "hostnames") for e in _string_list(options.get("hostnames") or [], "hostnames"))
    addresses = _string_list(options.get("ansible_host") or [], "ansible_host")
    ansible_host = tuple(_check_source(e, "ansible_host") for e in addresses)
    tag_keys = dict(DEFAULT_TAG_KEYS)
    for key, value in (options.get("tag_keys") or {}).items():
        if key not in DEFAULT_TAG_KEYS:
            raise FleetError(f"option tag_keys: unknown key {key!r} (one of {', '.join(DEFAULT_TAG_KEYS)})")
        if not isinstance(value, str) or not value:
            raise FleetError(f"option tag_keys.{key} must be a non-empty tag key")
        tag_keys[str(key)] = str(value)

    def bounded(name: str, low: float, high: float) -> float:
        value = options.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
            raise FleetError(f"option {name} must be a number from {low:g} to {high:g}")
        return value

    settings = Settings(
        accounts=tuple(accounts),
        profile=options.get("profile") or None,
        endpoint_url=options.get("endpoint_url") or None,
        filters=tuple(filters),
        states=states,
        hostnames=hostnames,
        ansible_host=ansible_host,
        tag_keys=tag_keys,
        group_by_tags=_string_list(options.get("group_by_tags") or [], "group_by_tags"),
        seeds_per_dc=int(bounded("cassandra_seeds_per_dc", 1, 100)),
        on_region_error=str(options.get("on_region_error") or "fail"),
        max_workers=int(bounded("max_workers", 1, 64)),
        page_size=int(bounded("page_size", 5, 1000)),
        retry_mode=str(options.get("retry_mode") or "standard"),
        max_attempts=int(bounded("max_attempts", 1, 50)),
        connect_timeout=bounded("connect_timeout", 0.1, 600),
        read_timeout=bounded("read_timeout", 0.1, 3600),
    )
    content = {key: value for key, value in options.items() if key not in _NOT_CONTENT}
    digest = hashlib.sha256(json.dumps([DOCUMENT_FORMAT, content], sort_keys=True, default=str).encode()).hexdigest()
    return dataclasses.replace(settings, fingerprint=digest)


# ---------------------------------------------------------------------------------------------
# Querying AWS: every (account, region) concurrently, paginated, retried, one record per instance.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instance:
    """What the inventory needs of one instance; the API's full answer is dropped page by page."""

    instance_id: str
    account: str
    account_id: str
    region: str
    zone: str
    state: str
    instance_type: str
    private_ip: str | None
    public_ip: str | None
    private_dns: str | None
    public_dns: str | None
    launch_time: str
    tags: dict[str, str]


@dataclass
class FleetAnswer:
    instances: list[Instance] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per region or account that was skipped


def _instance(raw: Mapping[str, Any], owner: str, account: str, region: str) -> Instance:
    launch: Any = raw.get("LaunchTime")
    return Instance(
        instance_id=raw["InstanceId"],
        account=account,
        account_id=owner,
        region=region,
        zone=(raw.get("Placement") or {}).get("AvailabilityZone") or "",
        state=(raw.get("State") or {}).get("Name") or "",
        instance_type=raw.get("InstanceType") or "",
        private_ip=raw.get("PrivateIpAddress") or None,
        public_ip=raw.get("PublicIpAddress") or None,
        private_dns=raw.get("PrivateDnsName") or None,
        public_dns=raw.get("PublicDnsName") or None,
        launch_time=launch.isoformat() if hasattr(launch, "isoformat") else str(launch or ""),
        tags={str(t.get("Key", "")): str(t.get("Value", "")) for t in raw.get("Tags") or ()},
    )


def explain(exc: BaseException, action: str, region: str | None, account: str | None, attempts: int) -> str:
    """One line naming what failed, where, and what to do about it."""
    where = f" in {region}" if region else ""
    if account and account != "default":
        where += f" (account {account})"
    excs = botocore.exceptions
    if isinstance(exc, excs.NoCredentialsError):
        return (
            "no AWS credentials found: set AWS_PROFILE (or the profile option), export AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run where an instance or task role is available"
        )
    if isinstance(exc, excs.ProfileNotFound):
        return f"AWS profile {exc.kwargs.get('profile')!r} is not in ~/.aws/config or ~/.aws/credentials"
    if isinstance(exc, excs.TokenRetrievalError | excs.SSOTokenLoadError | excs.UnauthorizedSSOTokenError):
        return f"AWS SSO credentials have expired or are missing ({type(exc).__name__}): run `aws sso login`"
    if isinstance(exc, excs.ClientError):
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "Unknown")
        message = " ".join(str(error.get("Message") or "").split())
        if code in _EXPIRED:
            return f"AWS credentials have expired ({code}) calling {action}{where}: refresh them and retry"
        if code in _DENIED:
            return f"access denied: {action}{where} ({code}): grant {action} to this identity"
        if code == "OptInRequired":
            return f"region {region} is not enabled for this account ({code}): enable it or remove it from regions"
        if code in _BAD_CREDENTIALS:
            return f"AWS rejected the credentials calling {action}{where} ({code}): {message or 'check them'}"
        if code in _THROTTLED:
            return (
                f"AWS kept throttling {action}{where} after {attempts} attempts ({code}): retry later, raise "
                "max_attempts or lower max_workers"
            )
        return f"{action}{where} failed: {code}: {message}" if message else f"{action}{where} failed: {code}"
    if isinstance(exc, excs.ConnectTimeoutError | excs.ReadTimeoutError):
        return f"{action}{where} timed out ({type(exc).__name__}): check connect_timeout/read_timeout and the network"
    if isinstance(exc, excs.EndpointConnectionError):
        return f"cannot reach the AWS endpoint for {action}{where}: {exc}"
    if isinstance(exc, excs.NoRegionError):
        return f"{action}: no region given"
    return f"{action}{where} failed: {type(exc).__name__}: {' '.join(str(exc).split())}"


_AWS_ERRORS: tuple[type[BaseException], ...] = ()
if boto3 is not None:
    _AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


class _Clients:
    """botocore clients made one at a time (client creation is not thread-safe), used from worker threads."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        try:
            self._session = boto3.session.Session(profile_name=settings.profile)
        except botocore.exceptions.ProfileNotFound as exc:
            raise FleetError(explain(exc, "load the AWS profile", None, None, 1)) from None
        self._config = botocore.config.Config(
            retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=max(10, settings.max_workers),
            user_agent_extra="toolkit-aws-fleet-inventory",
        )

    @property
    def default_region(self) -> str:
        """Where account-wide calls (STS, DescribeRegions) go when no named region is at hand."""
        return str(self._session.region_name or "us-east-1")

    def client(self, service: str, region: str, credentials: Mapping[str, str] | None = None) -> Any:
        with self._lock:
            return self._session.client(
                service,
                region_name=region,
                endpoint_url=self._settings.endpoint_url,
                config=self._config,
                **(credentials or {}),
            )


def _assume(clients: _Clients, account: Account, region: str) -> Mapping[str, str] | None:
    if account.role_arn is None:
        return None
    kwargs: dict[str, Any] = {"RoleArn": account.role_arn, "RoleSessionName": "toolkit-inventory"}
    if account.external_id:
        kwargs["ExternalId"] = account.external_id
    answer = clients.client("sts", region).assume_role(**kwargs)["Credentials"]
    return {
        "aws_access_key_id": answer["AccessKeyId"],
        "aws_secret_access_key": answer["SecretAccessKey"],
        "aws_session_token": answer["SessionToken"],
    }


def _list_region(
    clients: _Clients, settings: Settings, account: Account, credentials: Mapping[str, str] | None, region: str
) -> list[Instance]:
    ec2 = clients.client("ec2", region, credentials)
    filters = [{"Name": "instance-state-name", "Values": list(settings.states)}]
    filters += [{"Name": name, "Values": list(values)} for name, values in settings.filters]
    found: list[Instance] = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=filters, PaginationConfig={"PageSize": settings.page_size}
    )
    for page in pages:
        for reservation in page.get("Reservations") or ():
            owner = str(reservation.get("OwnerId") or "")
            found.extend(_instance(raw, owner, account.label, region) for raw in reservation.get("Instances") or ())
    return found


def query_fleet(settings: Settings, warn: Callable[[str], None] | None = None) -> FleetAnswer:
    """Every instance of every account and region; regions and accounts are queried concurrently.

    Raises:
        FleetError: credentials, permissions, a region (unless on_region_error is skip) or the network failed.
    """
    if boto3 is None:
        raise FleetError("the aws_fleet inventory needs boto3 and botocore (pip install boto3)")
    clients = _Clients(settings)
    answer = FleetAnswer()
    skip = settings.on_region_error == "skip"
    attempts = settings.max_attempts

    def fail_or_skip(message: str) -> None:
        if not skip:
            raise FleetError(message)
        answer.skipped.append(message)
        if warn:
            warn(f"skipped: {message}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_workers) as pool:
        # Phase 1: credentials and region lists per account (one STS / DescribeRegions call each), concurrently.
        def prepare(account: Account) -> tuple[Mapping[str, str] | None, tuple[str, ...]]:
            home = next((r for r in account.regions if r != "all"), None) or clients.default_region
            try:
                credentials = _assume(clients, account, home)
            except _AWS_ERRORS as exc:
                raise FleetError(explain(exc, "sts:AssumeRole", home, account.label, attempts)) from None
            if account.regions != ("all",):
                return credentials, account.regions
            try:
                enabled = clients.client("ec2", home, credentials).describe_regions(AllRegions=False)["Regions"]
            except _AWS_ERRORS as exc:
                raise FleetError(explain(exc, "ec2:DescribeRegions", home, account.label, attempts)) from None
            return credentials, tuple(sorted(r["RegionName"] for r in enabled))

        prepared: dict[Account, tuple[Mapping[str, str] | None, tuple[str, ...]]] = {}
        for account, pending in [(a, pool.submit(prepare, a)) for a in settings.accounts]:
            try:
                prepared[account] = pending.result()
            except FleetError as exc:
                # Credentials problems are never per region: skip only a whole account, and only if asked.
                if len(settings.accounts) == 1:
                    raise
                fail_or_skip(str(exc))

        # Phase 2: every (account, region) pair at once.
        futures = {
            pool.submit(_list_region, clients, settings, account, credentials, region): (account, region)
            for account, (credentials, regions) in prepared.items()
            for region in regions
        }
        failures: list[tuple[str, str, str]] = []
        for future in concurrent.futures.as_completed(futures):
            account, region = futures[future]
            try:
                answer.instances.extend(future.result())
            except _AWS_ERRORS as exc:
                message = explain(exc, "ec2:DescribeInstances", region, account.label, attempts)
                failures.append((account.label, region, message))
    for _account, _region, message in sorted(failures):
        fail_or_skip(message)
    return answer


# ---------------------------------------------------------------------------------------------
# The inventory model: pure functions from instances to groups, host vars and topology.
# ---------------------------------------------------------------------------------------------


class HostVars(TypedDict, total=False):
    """Every variable the plugin sets on a host (the rest comes from compose)."""

    ansible_host: str
    aws_instance_id: str
    aws_account: str
    aws_account_id: str
    aws_region: str
    aws_availability_zone: str
    aws_state: str
    aws_instance_type: str
    aws_private_ip: str
    aws_public_ip: str
    aws_tags: dict[str, str]
    toolkit_env: str
    toolkit_cluster: str
    cassandra_dc: str
    cassandra_rack: str
    cassandra_seeds: list[str]
    postgresql_role: str
    postgresql_primary_group: str
    postgresql_replica_group: str
    aws_target_labels: dict[str, str]


def safe_group_name(name: str) -> str:
    """The group naming rule: every character that is not a letter, digit or _ becomes _, and so does a
    leading digit (Unicode letters are letters). Ansible's own rule, so keyed_groups name groups the same way."""
    return _UNSAFE_GROUP.sub("_", name)


def safe_host_name(name: str) -> str:
    return _UNSAFE_HOST.sub("_", name.strip())


def _source_value(instance: Instance, source: str) -> str | None:
    if source.startswith("tag:"):
        value = instance.tags.get(source[4:], "").strip()
        return value or None
    return {
        "instance-id": instance.instance_id,
        "private-dns-name": instance.private_dns,
        "dns-name": instance.public_dns,
        "private-ip-address": instance.private_ip,
        "ip-address": instance.public_ip,
    }[source]


def assign_hostnames(instances: Sequence[Instance], preferences: Sequence[str]) -> list[str]:
    """A unique name per instance, whatever the order the API returned them in.

    Each level of the preference list is tried for every instance still unnamed; a candidate shared by two
    instances (two hosts with the same Name tag) names neither, so both move on to the next level, and the
    instance id settles whatever is left.
    """
    names: list[str | None] = [None] * len(instances)
    taken: set[str] = set()
    for source in (*preferences, "instance-id"):
        pending = [i for i, name in enumerate(names) if name is None]
        if not pending:
            break
        candidates: dict[int, str] = {}
        counts: dict[str, int] = defaultdict(int)
        for i in pending:
            value = _source_value(instances[i], source)
            if value:
                candidate = safe_host_name(value)
                candidates[i] = candidate
                counts[candidate] += 1
        for i, candidate in candidates.items():
            if counts[candidate] == 1 and candidate not in taken:
                names[i] = candidate
                taken.add(candidate)
    # Instance ids are unique; a name equal to another host's id (a Name tag "i-0abc...") ends up suffixed.
    return [name if name is not None else f"{instances[i].instance_id}_{i}" for i, name in enumerate(names)]


@dataclass
class Document:
    """The processed inventory: what the cache stores and what is replayed into Ansible's inventory."""

    groups: dict[str, list[str]]  # group -> child groups, parents listed before their children
    hosts: dict[str, tuple[list[str], dict[str, Any]]]  # host -> (groups it is directly in, its vars)
    warnings: list[str] = field(default_factory=list)

    def to_cache(self, fingerprint: str) -> dict[str, Any]:
        # The body is one JSON string: the cache plugin then decodes a single value instead of running its
        # per-object hook over every host (0.6 s of a cached run at 10,000 hosts), and json.loads does the rest.
        body = {
            "groups": self.groups,
            "hosts": {name: [groups, hostvars] for name, (groups, hostvars) in self.hosts.items()},
        }
        return {"format": DOCUMENT_FORMAT, "fingerprint": fingerprint, "body": json.dumps(body, separators=(",", ":"))}

    @classmethod
    def from_cache(cls, cached: Any, fingerprint: str) -> Document | None:
        """The cached document, or None when it is missing, stale in shape, or made with other options."""
        if not isinstance(cached, Mapping) or cached.get("format") != DOCUMENT_FORMAT:
            return None
        if cached.get("fingerprint") != fingerprint or not isinstance(cached.get("body"), str):
            return None
        try:
            body = json.loads(cached["body"])
            groups, hosts = body["groups"], body["hosts"]
            return cls(groups=dict(groups), hosts={name: (entry[0], entry[1]) for name, entry in hosts.items()})
        except (ValueError, KeyError, TypeError, IndexError):
            return None


def _seeds(members: list[tuple[str, Instance, str, str]], per_dc: int) -> list[str]:
    """Seeds of one Cassandra cluster: per DC, the oldest instances, taken round-robin across racks.

    Oldest first keeps the list stable as the cluster grows (a new node never displaces a seed, so adding one
    restarts nothing); round-robin across racks keeps the seeds of a DC out of a single zone.
    """
    by_dc: dict[str, dict[str, list[Instance]]] = defaultdict(lambda: defaultdict(list))
    for _name, instance, dc, rack in members:
        by_dc[dc][rack].append(instance)
    seeds: list[str] = []
    for dc in sorted(by_dc):
        racks = [sorted(hosts, key=lambda i: (i.launch_time, i.instance_id)) for _, hosts in sorted(by_dc[dc].items())]
        chosen: list[Instance] = []
        depth = 0
        while len(chosen) < per_dc and any(depth < len(rack) for rack in racks):
            chosen.extend(rack[depth] for rack in racks if depth < len(rack))
            depth += 1
        seeds.extend(i.private_ip or i.instance_id for i in chosen[:per_dc])
    return seeds


def build_document(instances: Iterable[Instance], settings: Settings) -> Document:
    """Groups, host vars and topology for the fleet.

    Raises:
        FleetError: the topology is inconsistent (a PostgreSQL cluster without exactly one primary, an unknown
            PostgreSQL role).
    """
    ordered = sorted(instances, key=lambda i: (i.region, i.instance_id))
    names = assign_hostnames(ordered, settings.hostnames)
    keys = settings.tag_keys
    groups: dict[str, set[str]] = defaultdict(set)
    hosts: dict[str, tuple[list[str], dict[str, Any]]] = {}
    warnings: list[str] = []
    cassandra: dict[str, list[tuple[str, Instance, str, str]]] = defaultdict(list)
    postgresql: dict[str, list[tuple[str, Instance, str]]] = defaultdict(list)
    accounts = {i.account for i in ordered}

    for name, instance in zip(names, ordered, strict=True):
        tags = instance.tags
        service = tags.get(keys["service"], "").strip()
        cluster = tags.get(keys["cluster"], "").strip()
        env = tags.get(keys["env"], "").strip()
        member_of = ["aws", safe_group_name(f"region_{instance.region}")]
        if instance.zone:
            member_of.append(safe_group_name(f"az_{instance.zone}"))
        if len(accounts) > 1:
            member_of.append(safe_group_name(f"account_{instance.account}"))
        for key in settings.group_by_tags:
            value = tags.get(key, "")
            if value.strip():
                member_of.append(safe_group_name(f"{key}_{value}"))
        hostvars: HostVars = {
            "aws_instance_id": instance.instance_id,
            "aws_account": instance.account,
            "aws_account_id": instance.account_id,
            "aws_region": instance.region,
            "aws_availability_zone": instance.zone,
            "aws_state": instance.state,
            "aws_instance_type": instance.instance_type,
            "aws_tags": dict(tags),
        }
        address = next((v for v in (_source_value(instance, s) for s in settings.ansible_host) if v), None)
        if address:
            hostvars["ansible_host"] = address
        else:
            warnings.append(f"{name} ({instance.instance_id}) has no {' or '.join(settings.ansible_host)}")
        if instance.private_ip:
            hostvars["aws_private_ip"] = instance.private_ip
        if instance.public_ip:
            hostvars["aws_public_ip"] = instance.public_ip
        if env:
            hostvars["toolkit_env"] = env
        if cluster:
            hostvars["toolkit_cluster"] = cluster
        labels = {"instance_id": instance.instance_id, "region": instance.region, "availability_zone": instance.zone}
        labels |= {"account": instance.account} if len(accounts) > 1 else {}
        labels |= {k: v for k, v in (("service", service), ("cluster", cluster), ("env", env)) if v}
        hostvars["aws_target_labels"] = labels
        if service:
            if service == "cassandra":
                dc = tags.get(keys["cassandra_dc"], "").strip() or instance.region
                rack = tags.get(keys["cassandra_rack"], "").strip() or instance.zone
                hostvars["cassandra_dc"] = dc
                hostvars["cassandra_rack"] = rack
                cassandra[cluster].append((name, instance, dc, rack))
            elif service == "postgresql":
                role = tags.get(keys["role"], "").strip().lower() or "replica"
                if role not in ("primary", "replica"):
                    raise FleetError(
                        f"PostgreSQL host {name} ({instance.instance_id}) has {keys['role']}={role!r}: "
                        "use primary or replica"
                    )
                hostvars["postgresql_role"] = role
                postgresql[cluster].append((name, instance, role))
            # PostgreSQL hosts are in postgresql through its children, as in the lab's inventory.
            if service != "postgresql":
                member_of.append(safe_group_name(service))
        hosts[name] = (member_of, dict(hostvars))

    for nodes in cassandra.values():
        seeds = _seeds(nodes, settings.seeds_per_dc)
        for name, *_ in nodes:
            hosts[name][1]["cassandra_seeds"] = seeds
    for cluster, members in sorted(postgresql.items()):
        primaries = sorted((name, instance) for name, instance, role in members if role == "primary")
        label = f"PostgreSQL cluster {cluster!r}" if cluster else f"PostgreSQL hosts without a {keys['cluster']} tag"
        if len(primaries) != 1:
            found = ", ".join(n if n == i.instance_id else f"{n} ({i.instance_id})" for n, i in primaries) or "none"
            raise FleetError(
                f"{label} must have exactly one primary (tag {keys['role']}=primary), found {len(primaries)}: {found}"
            )
        for name, _instance, role in members:
            hosts[name][0].append(f"postgresql_{role}")
            if cluster:
                # The postgresql role allows one primary per inventory, found through these two variables: a
                # fleet of several clusters points each host at its own cluster's groups.
                primary_group = safe_group_name(f"postgresql_{cluster}_primary")
                replica_group = safe_group_name(f"postgresql_{cluster}_replica")
                hosts[name][0].append(primary_group if role == "primary" else replica_group)
                hosts[name][1]["postgresql_primary_group"] = primary_group
                hosts[name][1]["postgresql_replica_group"] = replica_group

    for name, (member_of, _hostvars) in hosts.items():
        for group in member_of:
            groups[group].add(name)
    children: dict[str, list[str]] = {group: [] for group in sorted(groups)}
    if "postgresql_primary" in groups or "postgresql_replica" in groups:
        present: list[str] = [g for g in ("postgresql_primary", "postgresql_replica") if g in groups]
        children = {"postgresql": present, **{g: c for g, c in children.items() if g != "postgresql"}}
    return Document(groups=children, hosts=dict(sorted(hosts.items())), warnings=warnings)


# ---------------------------------------------------------------------------------------------
# The Ansible plugin.
# ---------------------------------------------------------------------------------------------


def plain_path_value(expression: Any, variables: Mapping[str, Any]) -> Any:
    """The value of a constructed expression that is a bare dotted path, or _MISSING when Jinja must decide.

    Only mappings are walked, and never through a name that is also a dict method (Jinja would return the
    method for ``tags.items``); anything else, undefined names included, is left to Jinja, so strict mode and
    filters behave exactly as Ansible's.
    """
    if not isinstance(expression, str) or not _PLAIN_PATH.match(expression):
        return _MISSING
    value: Any = variables
    for part in expression.strip().split("."):
        if not isinstance(value, Mapping) or part in _DICT_ATTRIBUTES or part not in value:
            return _MISSING
        value = value[part]
    return value


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):  # type: ignore[misc]
    NAME = "aws_fleet"

    def verify_file(self, path: str) -> bool:
        return bool(super().verify_file(path)) and path.endswith(CONFIG_SUFFIXES)

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        try:
            settings = settings_from_options(self._all_options())
        except FleetError as exc:
            raise AnsibleParserError(str(exc)) from None

        key = self.get_cache_key(path)
        use_cache = bool(self.get_option("cache"))
        document = None
        if use_cache and cache:
            try:
                document = Document.from_cache(self._cache[key], settings.fingerprint)
            except KeyError:
                document = None
        if document is not None:
            self._replay(document)
            self.display.vvv(f"aws_fleet: {len(document.hosts)} hosts from the cache for {path}")
            return
        try:
            answer = query_fleet(settings, warn=self.display.warning)
            document = build_document(answer.instances, settings)
        except FleetError as exc:
            raise AnsibleParserError(str(exc)) from None
        for message in document.warnings:
            self.display.vvv(f"aws_fleet: {message}")
        self._replay(document)
        document = self._construct(document)
        if use_cache:
            try:
                self._cache[key] = document.to_cache(settings.fingerprint)
            except (TypeError, ValueError) as exc:
                # compose can produce values JSON cannot hold (a set, a date): better uncached than changed.
                self.display.warning(f"aws_fleet: the inventory of {path} is not cached: {exc}")

    def _all_options(self) -> dict[str, Any]:
        names: tuple[str, ...] = (
            "regions",
            "accounts",
            "profile",
            "endpoint_url",
            "filters",
            "states",
            "exclude_states",
            "hostnames",
            "ansible_host",
        )
        names += ("tag_keys", "group_by_tags", "cassandra_seeds_per_dc", "on_region_error", "max_workers")
        names += ("page_size", "retry_mode", "max_attempts", "connect_timeout", "read_timeout")
        names += ("compose", "groups", "keyed_groups", "strict", "leading_separator", "use_extra_vars")
        return {name: self.get_option(name) for name in names}

    def _replay(self, document: Document) -> None:
        """Put a processed document into Ansible's inventory: no templating, one pass."""
        inventory = self.inventory
        for group in document.groups:
            inventory.add_group(group)
        for group, children in document.groups.items():
            for child in children:
                inventory.add_child(group, child)
        add_host = inventory.add_host
        add_child = inventory.add_child
        hosts = inventory.hosts
        for name, (member_of, hostvars) in document.hosts.items():
            add_host(name, group=member_of[0] if member_of else None)
            for group in member_of[1:]:
                add_child(group, name)
            # Straight into Host.vars: the values are plain JSON types built here or read back from our own
            # cache, with names we chose. InventoryData.set_variable would tag each value with its origin, about
            # 35 us a value in ansible-core 2.19: three quarters of a cached run at 10,000 hosts. The values stay
            # untrusted (never templated), exactly as through set_variable.
            host_vars = getattr(hosts.get(name), "vars", None)
            if isinstance(host_vars, dict):
                host_vars.update(hostvars)
            else:
                for var, value in hostvars.items():
                    inventory.set_variable(name, var, value)

    def _add_to_plain_keyed_group(self, entry: Any, variables: Mapping[str, Any], host: str) -> bool:
        """keyed_groups' rule for the common case, a dotted path to a non-empty string, without Jinja.

        False leaves the entry to Constructable: lists, mappings, empty values, default_value,
        trailing_separator and templated parent groups keep Ansible's own semantics.
        """
        if not isinstance(entry, Mapping) or {"default_value", "trailing_separator"} & set(entry):
            return False
        parent = entry.get("parent_group")
        if parent is not None and (not isinstance(parent, str) or "{" in parent):
            return False
        value = plain_path_value(entry.get("key"), variables)
        if not isinstance(value, str) or not value:
            return False
        prefix = entry.get("prefix", "")
        separator = entry.get("separator", "_")
        if prefix == "" and self.get_option("leading_separator") is False:
            separator = ""
        group = self.inventory.add_group(self._sanitize_group_name(f"{prefix}{separator}{value}"))
        self.inventory.add_host(host, group)
        if parent:
            parent_group = self.inventory.add_group(self._sanitize_group_name(parent))
            self.inventory.add_child(parent_group, group)
        return True

    def _construct(self, document: Document) -> Document:
        """Apply compose, groups and keyed_groups (Jinja, per host) if configured, and fold their results into
        the document, so a cached run replays them without templating."""
        compose = self.get_option("compose")
        conditional = self.get_option("groups")
        keyed = self.get_option("keyed_groups")
        if not (compose or conditional or keyed):
            return document
        strict = self.get_option("strict")
        before = set(self.inventory.groups)
        for name, (_member_of, hostvars) in document.hosts.items():
            for var, expression in (compose or {}).items():
                value = plain_path_value(expression, hostvars)
                if value is _MISSING:
                    self._set_composite_vars({var: expression}, hostvars, name, strict=strict)
                else:
                    self.inventory.set_variable(name, var, value)
            composed = self.inventory.hosts[name].vars
            variables = {**hostvars, **{k: composed[k] for k in compose or {} if k in composed}}
            self._add_host_to_composed_groups(conditional, variables, name, strict=strict)
            for entry in keyed or []:
                if not self._add_to_plain_keyed_group(entry, variables, name):
                    self._add_host_to_keyed_groups([entry], variables, name, strict=strict)
        groups = dict(document.groups)
        for group in [*document.groups, *(g for g in self.inventory.groups if g not in before)]:
            groups[group] = [child.name for child in self.inventory.groups[group].child_groups]
        hosts: dict[str, tuple[list[str], dict[str, Any]]] = {}
        for name, (member_of, hostvars) in document.hosts.items():
            host = self.inventory.hosts[name]
            # host.groups also lists ancestors; keep the groups the host was put in directly.
            direct = [g.name for g in host.groups if g.name in groups and name in g.host_names]
            extra = {k: host.vars[k] for k in compose or {} if k in host.vars}
            hosts[name] = (list(dict.fromkeys([*member_of, *direct])), {**hostvars, **extra})
        return Document(groups=groups, hosts=hosts, warnings=document.warnings)
