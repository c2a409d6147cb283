"""`toolkit env list|down|reap` on AWS, against moto's EC2 server on loopback: an environment is exactly what carries
its tag, and down and reap delete that and nothing else."""

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from tests.unit.aws_env import REGION, seed_environment, spec_of
from tests.unit.conftest import CliOutcome, Project
from tests.unit.plugins.moto_fleet import AMI
from toolkit.environments.aws_model import ENV_TAG

Cli = Callable[..., CliOutcome]


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def lifetime(owner: str, created_hours_ago: int, expires_in_hours: int) -> dict[str, str]:
    """The VPC tags `up` writes, relative to now (a module-level "now" would age during a long test session)."""
    now = dt.datetime.now(dt.UTC)
    return {
        "owner": owner,
        "toolkit:created-at": iso(now - dt.timedelta(hours=created_hours_ago)),
        "toolkit:expires-at": iso(now + dt.timedelta(hours=expires_in_hours)),
    }


def expired() -> dict[str, str]:
    return lifetime("alice", created_hours_ago=9, expires_in_hours=-1)


def alive() -> dict[str, str]:
    return lifetime("bob", created_hours_ago=1, expires_in_hours=7)


def tagged_anything(client: Any, env: str) -> dict[str, list[str]]:
    """Every live resource still tagged as env's, by kind."""
    tagged = [{"Name": f"tag:{ENV_TAG}", "Values": [env]}]
    instances = [
        i["InstanceId"]
        for r in client.describe_instances(Filters=tagged)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    found = {
        "instances": instances,
        "vpcs": [v["VpcId"] for v in client.describe_vpcs(Filters=tagged)["Vpcs"]],
        "subnets": [s["SubnetId"] for s in client.describe_subnets(Filters=tagged)["Subnets"]],
        "groups": [g["GroupId"] for g in client.describe_security_groups(Filters=tagged)["SecurityGroups"]],
        "tables": [t["RouteTableId"] for t in client.describe_route_tables(Filters=tagged)["RouteTables"]],
        "gateways": [
            g["InternetGatewayId"] for g in client.describe_internet_gateways(Filters=tagged)["InternetGateways"]
        ],
        "keys": [k["KeyName"] for k in client.describe_key_pairs(Filters=tagged)["KeyPairs"]],
        # moto ignores this call's tag filter: the tags are checked here.
        "nats": [
            n["NatGatewayId"]
            for n in client.describe_nat_gateways(Filter=tagged)["NatGateways"]
            if n["State"] != "deleted" and {"Key": ENV_TAG, "Value": env} in n.get("Tags", [])
        ],
    }
    return {kind: ids for kind, ids in found.items() if ids}


def test_list_shows_each_environment_with_owner_age_expiry_and_hosts(cli: Cli, aws: Any) -> None:
    seed_environment(aws, "demo", vpc_tags=expired())
    seed_environment(aws, "staging", vpc_tags={**alive(), "toolkit:protected": "true"})
    outcome = cli("env", "list", "--json")
    assert outcome.code == 0, outcome.err
    listed = {env["name"]: env for env in json.loads(outcome.out)}
    assert set(listed) == {"demo", "staging"}
    assert (listed["demo"]["owner"], listed["demo"]["hosts"], listed["demo"]["expired"]) == ("alice", 3, True)
    assert 9 * 3600 - 60 < listed["demo"]["age_seconds"] < 9 * 3600 + 60
    assert (listed["staging"]["protected"], listed["staging"]["expired"]) == (True, False)
    human = cli("env", "list", "--region", REGION)
    assert "expired 1h" in human.out and "protected" in human.out


def test_down_deletes_every_tagged_resource_and_nothing_else(cli: Cli, aws: Any) -> None:
    ids = seed_environment(aws, "demo", vpc_tags=alive())
    seed_environment(aws, "other", vpc_tags=alive())
    # Pre-existing untagged resources, one of them named like the environment's.
    untagged_vpc = aws.create_vpc(CidrBlock="10.70.0.0/16", TagSpecifications=spec_of("vpc", Name="demo-vpc"))["Vpc"][
        "VpcId"
    ]
    untagged_instance = aws.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    outcome = cli("env", "down", "demo", "--yes", "--json")
    assert outcome.code == 0, outcome.err
    deleted = {(step["kind"], step["id"]) for step in json.loads(outcome.out)["environments"][0]["deleted"]}
    assert ("vpc", ids["vpc"]) in deleted and ("instance", ids["demo-postgresql-1"]) in deleted
    assert ("nat_gateway", ids["nat"]) in deleted and ("security_group", ids["sg-postgresql"]) in deleted
    assert tagged_anything(aws, "demo") == {}
    assert set(tagged_anything(aws, "other")) == {
        "instances",
        "vpcs",
        "subnets",
        "groups",
        "tables",
        "gateways",
        "keys",
        "nats",
    }
    assert aws.describe_vpcs(VpcIds=[untagged_vpc])["Vpcs"]
    [reservation] = aws.describe_instances(InstanceIds=[untagged_instance])["Reservations"]
    assert reservation["Instances"][0]["State"]["Name"] == "running"
    again = cli("env", "down", "demo", "--yes", "--json")  # nothing left: nothing to do, not an error
    assert again.code == 0 and json.loads(again.out)["environments"][0]["deleted"] == []


def test_a_protected_environment_is_refused_by_its_spec_or_its_tag(cli: Cli, aws: Any, project: Project) -> None:
    seed_environment(aws, "demo", vpc_tags={**alive(), "toolkit:protected": "true"})
    refused = cli("env", "down", "demo", "--yes")
    assert refused.code == 2 and "environment demo is protected" in refused.err
    spec = project.root / "environments" / "demo.yml"
    spec.write_text(spec.read_text().replace("ttl: 8h ", "protected: true\nttl: 8h "))
    seed_environment(aws, "demo2", vpc_tags=alive())
    assert cli("env", "down", "demo", "--yes").code == 2
    assert set(tagged_anything(aws, "demo")) >= {"instances", "vpcs"}


def test_down_without_a_terminal_needs_yes(cli: Cli, aws: Any) -> None:
    seed_environment(aws, "demo", vpc_tags=alive())
    outcome = cli("env", "down", "demo")
    assert outcome.code == 2 and "pass --yes" in outcome.err
    assert tagged_anything(aws, "demo")


def test_a_resource_of_someone_else_inside_the_vpc_is_left_and_reported(cli: Cli, aws: Any) -> None:
    ids = seed_environment(aws, "demo", vpc_tags=alive())
    stranger = aws.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=ids["eu-west-1c"])["Instances"][0]
    outcome = cli("env", "down", "demo", "--yes", "--json")
    assert outcome.code == 1
    failed = json.loads(outcome.out)["environments"][0]["failed"]
    assert any(f.startswith(f"subnet demo-eu-west-1c ({ids['eu-west-1c']})") for f in failed), failed
    [reservation] = aws.describe_instances(InstanceIds=[stranger["InstanceId"]])["Reservations"]
    assert reservation["Instances"][0]["State"]["Name"] == "running"
    # The stranger's VPC keeps its network; everything else of the environment is gone.
    assert set(tagged_anything(aws, "demo")) == {"subnets", "vpcs", "tables", "gateways", "nats"}
    assert any("left: VPC" in f and stranger["InstanceId"] in f for f in failed), failed


def test_reap_takes_down_the_expired_environments_only(cli: Cli, aws: Any) -> None:
    seed_environment(aws, "demo", vpc_tags=expired())
    seed_environment(aws, "fresh", vpc_tags=alive())
    seed_environment(aws, "kept", vpc_tags={**expired(), "toolkit:protected": "true"})
    dry = cli("env", "reap", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert [e["environment"] for e in json.loads(dry.out)["environments"]] == ["demo"]
    assert tagged_anything(aws, "demo")
    reaped = cli("env", "reap", "--json")
    assert reaped.code == 0, reaped.err
    assert [e["environment"] for e in json.loads(reaped.out)["environments"]] == ["demo"]
    assert tagged_anything(aws, "demo") == {}
    assert tagged_anything(aws, "fresh") and tagged_anything(aws, "kept")


def test_an_environment_whose_spec_has_expired_can_still_be_taken_down(cli: Cli, aws: Any, project: Project) -> None:
    seed_environment(aws, "demo", vpc_tags=expired())
    spec = project.root / "environments" / "demo.yml"
    spec.write_text(spec.read_text().replace("ttl: 8h ", "expires_at: 2026-01-01T00:00:00Z "))
    assert cli("env", "show", "demo").code == 2  # as a spec to build from, it is refused
    outcome = cli("env", "down", "demo", "--yes")
    assert outcome.code == 0, outcome.err
    assert tagged_anything(aws, "demo") == {}
