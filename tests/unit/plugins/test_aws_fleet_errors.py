"""aws_fleet's failures, each one line: credentials, permissions, throttling, timeouts, regions that fail.

moto cannot refuse, throttle or stall, so these run against a scripted EC2/STS endpoint on loopback that
answers with AWS's own XML: botocore parses, retries and times out exactly as it would against AWS.
"""

import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.exceptions
import pytest

from tests.unit.plugins.conftest import PLUGIN, ansible_inventory, aws_env, write_config

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"


@dataclass(frozen=True)
class Call:
    service: str
    action: str
    region: str


Reply = tuple[int, str]


def ec2_error(status: int, code: str, message: str = "nope") -> Reply:
    return status, (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error></Errors><RequestID>req</RequestID></Response>"
    )


def sts_error(status: int, code: str, message: str = "nope") -> Reply:
    return status, (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>req</RequestId></ErrorResponse>"
    )


def instances(region: str, *names: str) -> Reply:
    items = "".join(
        f"<item><instanceId>i-{region}-{n}</instanceId><instanceState><code>16</code><name>running</name>"
        f"</instanceState><privateIpAddress>10.0.0.{n + 1}</privateIpAddress><placement><availabilityZone>"
        f"{region}a</availabilityZone></placement><instanceType>t3.small</instanceType><launchTime>"
        f"2026-01-01T00:00:00.000Z</launchTime><tagSet><item><key>Name</key><value>{name}</value></item></tagSet>"
        "</item>"
        for n, name in enumerate(names)
    )
    reservation = (
        f"<item><reservationId>r-1</reservationId><ownerId>123456789012</ownerId><instancesSet>{items}"
        "</instancesSet></item>"
        if names
        else ""
    )
    return 200, (
        f'<DescribeInstancesResponse xmlns="{EC2_NS}"><requestId>req</requestId>'
        f"<reservationSet>{reservation}</reservationSet></DescribeInstancesResponse>"
    )


def regions(*names: str) -> Reply:
    items = "".join(f"<item><regionName>{n}</regionName><regionEndpoint>x</regionEndpoint></item>" for n in names)
    return 200, f'<DescribeRegionsResponse xmlns="{EC2_NS}"><regionInfo>{items}</regionInfo></DescribeRegionsResponse>'


def assumed() -> Reply:
    return 200, (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>'
        "<AccessKeyId>ASIAX</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>"
        "<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><Arn>a</Arn>"
        "<AssumedRoleId>b</AssumedRoleId></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>"
    )


@dataclass
class FakeAws:
    url: str
    script: Callable[[Call], Reply] = lambda call: instances(call.region)
    delay: Callable[[Call], float] = lambda call: 0.0
    calls: list[Call] = field(default_factory=list)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAws]:
    fake = FakeAws(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            scope = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/", self.headers.get("Authorization") or "")
            region, service = scope.groups() if scope else ("?", "?")
            call = Call(service, urllib.parse.parse_qs(body).get("Action", ["?"])[0], region)
            fake.calls.append(call)
            time.sleep(fake.delay(call))
            status, payload = fake.script(call)
            data = payload.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (a timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield fake
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def aws(server: FakeAws, monkeypatch: pytest.MonkeyPatch) -> FakeAws:
    """The fake endpoint, reset, with keys in the environment and none of the developer's AWS files."""
    server.calls.clear()
    server.script = lambda call: instances(call.region)
    server.delay = lambda call: 0.0
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return server


def settings(aws_fleet: ModuleType, server: FakeAws, **overrides: Any) -> Any:
    from tests.unit.plugins.test_aws_fleet_model import options

    base = {"regions": ["eu-west-1"], "endpoint_url": server.url, "max_attempts": 1, "read_timeout": 5}
    return aws_fleet.settings_from_options(
        options(**{**base, **overrides}), known={"eu-west-1", "eu-west-2", "eu-north-1"}
    )


def failure(aws_fleet: ModuleType, made: Any) -> str:
    with pytest.raises(aws_fleet.FleetError) as raised:
        aws_fleet.query_fleet(made)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_regions_are_listed_concurrently(aws_fleet: ModuleType, aws: FakeAws) -> None:
    aws.script = lambda call: instances(call.region, f"web-{call.region}")
    aws.delay = lambda call: 1.0
    started = time.perf_counter()
    answer = aws_fleet.query_fleet(settings(aws_fleet, aws, regions=["eu-west-1", "eu-west-2", "eu-north-1"]))
    elapsed = time.perf_counter() - started
    assert sorted(i.tags["Name"] for i in answer.instances) == ["web-eu-north-1", "web-eu-west-1", "web-eu-west-2"]
    assert elapsed < 2.5, f"three regions answering in 1 s each took {elapsed:.2f} s: not concurrent"
    assert sorted(c.region for c in aws.calls) == ["eu-north-1", "eu-west-1", "eu-west-2"]


def test_all_regions_are_the_enabled_ones(aws_fleet: ModuleType, aws: FakeAws) -> None:
    aws.script = lambda call: (
        regions("eu-west-1", "eu-north-1") if call.action == "DescribeRegions" else instances(call.region)
    )
    aws_fleet.query_fleet(settings(aws_fleet, aws, regions=["all"]))
    assert sorted((c.action, c.region) for c in aws.calls) == [
        ("DescribeInstances", "eu-north-1"),
        ("DescribeInstances", "eu-west-1"),
        ("DescribeRegions", "us-east-1"),  # asked where the SDK's default region points (none set: us-east-1)
    ]


def test_access_denied_names_the_action_and_the_region(aws_fleet: ModuleType, aws: FakeAws) -> None:
    aws.script = lambda call: ec2_error(403, "UnauthorizedOperation") if call.region == "eu-west-2" else instances("x")
    message = failure(aws_fleet, settings(aws_fleet, aws, regions=["eu-west-1", "eu-west-2"]))
    assert message == (
        "access denied: ec2:DescribeInstances in eu-west-2 (UnauthorizedOperation): grant ec2:DescribeInstances to "
        "this identity"
    )


def test_a_failing_region_can_be_skipped_with_a_warning(aws_fleet: ModuleType, aws: FakeAws) -> None:
    aws.script = lambda call: (
        ec2_error(403, "UnauthorizedOperation") if call.region == "eu-west-2" else instances(call.region, "web-1")
    )
    warnings: list[str] = []
    answer = aws_fleet.query_fleet(
        settings(aws_fleet, aws, regions=["eu-west-1", "eu-west-2"], on_region_error="skip"), warn=warnings.append
    )
    assert [i.tags["Name"] for i in answer.instances] == ["web-1"]
    assert warnings == [f"skipped: {answer.skipped[0]}"]
    assert answer.skipped[0].startswith("access denied: ec2:DescribeInstances in eu-west-2")


def test_denied_region_listing_is_named(aws_fleet: ModuleType, aws: FakeAws) -> None:
    aws.script = lambda call: ec2_error(403, "UnauthorizedOperation")
    message = failure(aws_fleet, settings(aws_fleet, aws, regions=["all"]))
    assert message.startswith("access denied: ec2:DescribeRegions in ")


@pytest.mark.parametrize("code", ["ExpiredToken", "RequestExpired"])
def test_expired_credentials(aws_fleet: ModuleType, aws: FakeAws, code: str) -> None:
    aws.script = lambda call: ec2_error(400, code, "The security token included in the request is expired")
    message = failure(aws_fleet, settings(aws_fleet, aws))
    assert (
        message
        == f"AWS credentials have expired ({code}) calling ec2:DescribeInstances in eu-west-1: refresh them and retry"
    )


def test_rejected_credentials(aws_fleet: ModuleType, aws: FakeAws) -> None:
    aws.script = lambda call: ec2_error(
        401, "AuthFailure", "AWS was not able to validate the provided access credentials"
    )
    assert failure(aws_fleet, settings(aws_fleet, aws)) == (
        "AWS rejected the credentials calling ec2:DescribeInstances in eu-west-1 (AuthFailure): "
        "AWS was not able to validate the provided access credentials"
    )


def test_throttling_is_retried_then_reported(aws_fleet: ModuleType, aws: FakeAws) -> None:
    aws.script = lambda call: ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")
    message = failure(aws_fleet, settings(aws_fleet, aws, max_attempts=2))
    assert len(aws.calls) == 2  # the retry happened
    assert message == (
        "AWS kept throttling ec2:DescribeInstances in eu-west-1 after 2 attempts (RequestLimitExceeded): "
        "retry later, raise max_attempts or lower max_workers"
    )


def test_throttling_that_eases_is_invisible(aws_fleet: ModuleType, aws: FakeAws) -> None:
    aws.script = lambda call: (
        ec2_error(503, "RequestLimitExceeded") if len(aws.calls) == 1 else instances(call.region, "web-1")
    )
    assert [i.tags["Name"] for i in aws_fleet.query_fleet(settings(aws_fleet, aws, max_attempts=3)).instances] == [
        "web-1"
    ]


def test_a_stalled_region_times_out(aws_fleet: ModuleType, aws: FakeAws) -> None:
    aws.delay = lambda call: 2.0
    message = failure(aws_fleet, settings(aws_fleet, aws, read_timeout=0.3))
    assert message.startswith("ec2:DescribeInstances in eu-west-1 timed out (ReadTimeoutError)")


def test_no_credentials(aws_fleet: ModuleType, aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert failure(aws_fleet, settings(aws_fleet, aws)).startswith("no AWS credentials found: set AWS_PROFILE")
    assert aws.calls == []


def test_an_unknown_profile(aws_fleet: ModuleType, aws: FakeAws) -> None:
    message = failure(aws_fleet, settings(aws_fleet, aws, profile="nope"))
    assert message == "AWS profile 'nope' is not in ~/.aws/config or ~/.aws/credentials"


def test_assume_role_is_used_and_its_refusal_named(aws_fleet: ModuleType, aws: FakeAws) -> None:
    account = {"role_arn": "arn:aws:iam::111111111111:role/inventory", "name": "payments", "external_id": "tk"}
    aws.script = lambda call: assumed() if call.service == "sts" else instances(call.region, "pay-1")
    answer = aws_fleet.query_fleet(settings(aws_fleet, aws, accounts=[account]))
    assert [(i.account, i.tags["Name"]) for i in answer.instances] == [("payments", "pay-1")]
    assert [c.service for c in aws.calls] == ["sts", "ec2"]
    aws.script = lambda call: sts_error(403, "AccessDenied", "not authorized to perform sts:AssumeRole")
    assert failure(aws_fleet, settings(aws_fleet, aws, accounts=[account])) == (
        "access denied: sts:AssumeRole in eu-west-1 (account payments) (AccessDenied): grant sts:AssumeRole to this "
        "identity"
    )


def test_one_refused_account_of_several_can_be_skipped(aws_fleet: ModuleType, aws: FakeAws) -> None:
    accounts = [
        {"role_arn": "arn:aws:iam::111111111111:role/inventory", "name": "payments"},
        {"role_arn": "arn:aws:iam::222222222222:role/inventory", "name": "search"},
    ]
    aws.script = lambda call: assumed() if call.service == "sts" else instances(call.region, "host")
    made = settings(aws_fleet, aws, accounts=accounts, on_region_error="skip")
    refusals = iter([sts_error(403, "AccessDenied"), assumed()])
    aws.script = lambda call: next(refusals) if call.service == "sts" else instances(call.region, "host")
    answer = aws_fleet.query_fleet(made)
    assert len(answer.instances) == 1 and len(answer.skipped) == 1
    assert "sts:AssumeRole" in answer.skipped[0]


def test_every_botocore_failure_reads_as_one_line(aws_fleet: ModuleType) -> None:
    sso = botocore.exceptions.TokenRetrievalError(provider="sso", error_msg="expired")
    assert aws_fleet.explain(sso, "ec2:DescribeInstances", "eu-west-1", None, 1).startswith(
        "AWS SSO credentials have expired or are missing (TokenRetrievalError): run `aws sso login`"
    )
    unknown = botocore.exceptions.ClientError({"Error": {"Code": "Weird", "Message": "a\nb"}}, "DescribeInstances")
    assert aws_fleet.explain(unknown, "ec2:DescribeInstances", "eu-west-1", "payments", 1) == (
        "ec2:DescribeInstances in eu-west-1 (account payments) failed: Weird: a b"
    )


def test_ansible_shows_the_error_as_one_line_without_a_traceback(server: FakeAws, tmp_path: Path) -> None:
    server.calls.clear()
    server.script = lambda call: ec2_error(403, "UnauthorizedOperation")
    config = write_config(tmp_path, "prod.aws.yml", {"plugin": "aws_fleet", "regions": ["eu-west-1"]})
    result = ansible_inventory(config, aws_env(server.url))
    assert result.returncode != 0
    first = next(line for line in result.stderr.splitlines() if "aws_fleet" in line or "access denied" in line)
    assert first.endswith(
        "plugin: access denied: ec2:DescribeInstances in eu-west-1 (UnauthorizedOperation): grant "
        "ec2:DescribeInstances to this identity"
    )
    assert "Traceback" not in result.stderr


def test_malformed_configurations_fail_before_any_call(server: FakeAws, tmp_path: Path) -> None:
    server.calls.clear()
    config = write_config(tmp_path, "bad.aws.yml", {"plugin": "aws_fleet", "regions": ["eu-wset-1"]})
    result = ansible_inventory(config, aws_env(server.url))
    assert result.returncode != 0
    assert "unknown region 'eu-wset-1' (did you mean eu-west-1?)" in result.stderr
    assert server.calls == [] and "Traceback" not in result.stderr


def test_an_unknown_state_is_one_ansible_parser_error_line(server: FakeAws, tmp_path: Path) -> None:
    from ansible.errors import AnsibleParserError
    from ansible.inventory.data import InventoryData
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader, inventory_loader
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    if AnsibleCollectionConfig.collection_finder is None:
        init_plugin_loader()
    inventory_loader.add_directory(str(PLUGIN.parent))
    plugin = inventory_loader.get("aws_fleet")
    assert plugin is not None
    server.calls.clear()
    bad = {"plugin": "aws_fleet", "regions": ["eu-west-1"], "exclude_states": ["terminated", "sleeping"]}
    config = write_config(tmp_path, "bad.aws.yml", bad)
    with pytest.raises(AnsibleParserError) as raised:
        plugin.parse(InventoryData(), DataLoader(), str(config), cache=False)
    assert raised.value.message == (
        "option exclude_states: unknown state 'sleeping' (one of pending, running, shutting-down, terminated, "
        "stopping, stopped)"
    )
    # Plain Ansible shows the same line first, before any AWS call.
    result = ansible_inventory(config, aws_env(server.url))
    assert result.returncode != 0
    first = next(line for line in result.stderr.splitlines() if "aws_fleet" in line or "unknown state" in line)
    assert first.endswith(
        "plugin: option exclude_states: unknown state 'sleeping' (one of pending, running, "
        "shutting-down, terminated, stopping, stopped)"
    )
    assert server.calls == [] and "Traceback" not in result.stderr
