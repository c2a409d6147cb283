"""`toolkit env plan NAME --provider aws`: the spec's resources against what moto's EC2 server on loopback holds.

The account is seeded with boto3 the way `up` leaves it (tags are the state), plus resources that are not the
environment's (another environment's, untagged ones), which must never appear in a plan.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.aws_env import seed_network, spec_of
from tests.unit.conftest import CliOutcome
from tests.unit.plugins.moto_fleet import AMI
from toolkit.environments.aws_model import ENV_TAG, desired_resources, ingress_rules
from toolkit.environments.spec import load_spec

Cli = Callable[..., CliOutcome]
REPO = Path(__file__).resolve().parents[2]


def plan(cli: Cli) -> dict[str, Any]:
    outcome = cli("env", "plan", "demo", "--json")
    assert outcome.code == 0, outcome.err
    return dict(json.loads(outcome.out))


def actions(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(step["kind"], step["name"]): step["action"] for step in document["steps"]}


def test_an_empty_account_plans_every_resource_for_creation_in_dependency_order(cli: Cli, aws: Any) -> None:
    document = plan(cli)
    assert document["summary"] == {"create": 16, "change": 0, "keep": 0, "delete": 0}
    kinds = [step["kind"] for step in document["steps"]]
    assert kinds == (
        ["vpc", "internet_gateway", "subnet", "subnet", "subnet", "route_table"]
        + ["security_group"] * 3 + ["key_pair"] + ["instance"] * 6
    )  # fmt: skip
    names = [step["name"] for step in document["steps"] if step["kind"] == "instance"]
    assert names == [
        "demo-postgresql-1", "demo-postgresql-2", "demo-cassandra-1", "demo-cassandra-2", "demo-cassandra-3",
        "demo-prometheus-1",
    ]  # fmt: skip
    assert aws.describe_vpcs(Filters=[{"Name": f"tag:{ENV_TAG}", "Values": ["demo"]}])["Vpcs"] == []  # nothing made


def test_what_exists_is_kept_what_differs_is_a_change_and_others_resources_are_never_in_the_plan(
    cli: Cli, aws: Any
) -> None:
    ids = seed_network(
        aws, subnet_cidrs={"eu-west-1a": "10.60.0.0/24", "eu-west-1b": "10.60.7.0/24", "eu-west-1c": "10.60.2.0/24"}
    )
    # Another environment's VPC, and an untagged one with the same Name: neither is ours.
    aws.create_vpc(CidrBlock="10.60.0.0/16", TagSpecifications=spec_of("vpc", Name="demo-vpc", **{ENV_TAG: "other"}))
    aws.create_vpc(CidrBlock="10.61.0.0/16", TagSpecifications=spec_of("vpc", Name="demo-vpc"))
    document = plan(cli)
    steps = {(s["kind"], s["name"]): s for s in document["steps"]}
    assert steps[("vpc", "demo-vpc")]["action"] == "keep" and steps[("vpc", "demo-vpc")]["id"] == ids["vpc"]
    assert steps[("internet_gateway", "demo-igw")]["action"] == "keep"
    assert steps[("route_table", "demo-public")]["action"] == "keep"
    assert steps[("subnet", "demo-eu-west-1a")]["action"] == "keep"
    changed = steps[("subnet", "demo-eu-west-1b")]
    assert (changed["action"], changed["differences"]) == ("change", ["cidr: 10.60.7.0/24 -> 10.60.1.0/24"])
    assert document["summary"] == {"create": 10, "change": 1, "keep": 5, "delete": 0}


def test_security_groups_are_compared_rule_by_rule(cli: Cli, aws: Any) -> None:
    ids = seed_network(aws)
    spec = load_spec("demo")
    assert spec.aws is not None
    group_ids: dict[str, str] = {}
    for service in ("cassandra", "postgresql", "prometheus"):
        group = aws.create_security_group(
            GroupName=f"demo-{service}", Description=service, VpcId=ids["vpc"],
            TagSpecifications=spec_of("security-group", Name=f"demo-{service}", **{ENV_TAG: "demo"}),
        )  # fmt: skip
        group_ids[service] = group["GroupId"]
    for service in ("cassandra", "postgresql", "prometheus"):
        permissions = []
        for rule in ingress_rules(spec, spec.aws, service):
            port, source = int(rule.split()[0][4:]), rule.split()[-1]
            if service == "postgresql" and port == 5432 and not source.startswith("sg:"):
                continue  # the clients' rule is missing on PostgreSQL
            pair = {"UserIdGroupPairs": [{"GroupId": group_ids[source[8:]]}]} if source.startswith("sg:") else {
                "IpRanges": [{"CidrIp": source}]
            }  # fmt: skip
            permissions.append({"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **pair})
        if service == "prometheus":  # and Prometheus has one too many: SSH from anywhere
            permissions.append(
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            )
        aws.authorize_security_group_ingress(GroupId=group_ids[service], IpPermissions=permissions)
    steps = {(s["kind"], s["name"]): s for s in plan(cli)["steps"]}
    assert steps[("security_group", "demo-cassandra")]["action"] == "keep"
    for service, extra in (("postgresql", "tcp/5432 from 10.60.0.0/16"), ("prometheus", "tcp/22 from 0.0.0.0/0")):
        step = steps[("security_group", f"demo-{service}")]
        assert step["action"] == "change", step
        [difference] = step["differences"]
        assert difference.startswith("ingress: ") and extra in difference, difference


def test_instances_are_matched_by_name_and_ones_the_spec_no_longer_has_are_listed_for_deletion(
    cli: Cli, aws: Any
) -> None:
    ids = seed_network(aws)
    spec = load_spec("demo")
    wanted = {r.name: r.attrs for r in desired_resources(spec) if r.kind == "instance"}
    primary_tags = dict(pair.split("=", 1) for pair in wanted["demo-postgresql-1"]["tags"].split(", "))
    aws.run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.small", SubnetId=ids["eu-west-1a"],
        TagSpecifications=spec_of("instance", Name="demo-postgresql-1", **primary_tags),
    )  # fmt: skip
    aws.run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.medium", SubnetId=ids["eu-west-1c"],
        TagSpecifications=spec_of("instance", Name="demo-postgresql-9", **{**primary_tags, "role": "replica"}),
    )  # fmt: skip
    aws.run_instances(  # not the environment's: never planned
        ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.medium",
        TagSpecifications=spec_of("instance", Name="demo-postgresql-2", env="demo"),
    )  # fmt: skip
    steps = {(s["kind"], s["name"]): s for s in plan(cli)["steps"]}
    primary = steps[("instance", "demo-postgresql-1")]
    assert primary["action"] == "change"
    assert "instance_type: t3.small -> t3.medium" in primary["differences"]
    assert steps[("instance", "demo-postgresql-2")]["action"] == "create"
    assert steps[("instance", "demo-postgresql-9")]["action"] == "delete"
    assert list(steps)[-1] == ("instance", "demo-postgresql-9")  # deletions come last


def test_the_human_plan_marks_each_line(cli: Cli, aws: Any) -> None:
    seed_network(aws)
    outcome = cli("env", "plan", "demo")
    assert outcome.code == 0, outcome.err
    assert "plan demo on aws eu-west-1" in outcome.out
    assert "  keep   vpc demo-vpc (vpc-" in outcome.out
    assert "+ create instance demo-cassandra-1" in outcome.out
    assert outcome.out.rstrip().endswith("10 to create, 0 to change, 0 to delete; 6 unchanged")


def test_without_credentials_it_is_one_line_and_exit_2(cli: Cli, aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    outcome = cli("env", "plan", "demo")
    assert outcome.code == 2
    assert "error: no AWS credentials" in outcome.err


def test_an_unreachable_endpoint_is_exit_4(cli: Cli, aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    outcome = cli("env", "plan", "demo")
    assert outcome.code == 4, outcome.err
    assert "AWS unreachable" in outcome.err


def test_an_unknown_provider_is_refused_in_one_line(cli: Cli, aws: Any) -> None:
    outcome = cli("env", "plan", "demo", "--provider", "gcp")
    assert outcome.code == 2
    assert "--provider 'gcp': valid: aws, lab" in outcome.err
