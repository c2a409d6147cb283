"""environments/NAME.yml: the hosts a spec makes, and every kind of bad input refused in one line (exit 2)."""

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.conftest import CliOutcome, Project
from toolkit.environments.spec import SpecError, load_spec

Cli = Callable[..., CliOutcome]
REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 12, 5, 6, 0, tzinfo=dt.UTC)


def base_spec() -> dict[str, Any]:
    return {
        "name": "demo",
        "owner": "sre",
        "ttl": "8h",
        "aws": {
            "region": "eu-west-1",
            "azs": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
            "vpc_cidr": "10.60.0.0/16",
            "image": {"owner": "136693071363", "name": "debian-12-amd64-*"},
            "admin_cidrs": ["198.51.100.0/24"],
        },
        "services": {
            "cassandra": {"datacenters": [{"name": "dc1", "racks": {"rack1": 2, "rack2": 1}, "replication_factor": 3}]},
            "postgresql": {"replicas": 2},
            "prometheus": {},
        },
    }


def write(project: Project, spec: dict[str, Any], name: str = "demo") -> None:
    directory = project.root / "environments"
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.yml").write_text(yaml.safe_dump(spec))


def test_the_shipped_demo_spec_is_valid() -> None:
    document = yaml.safe_load((REPO / "environments" / "demo.yml").read_text())
    from toolkit.environments.spec import parse_spec

    spec = parse_spec(document, REPO / "environments" / "demo.yml", now=NOW)
    assert len(spec.hosts) == 6 and spec.aws is not None and spec.aws.region == "eu-west-1"


def test_a_spec_becomes_hosts_with_groups_topology_and_zones(project: Project) -> None:
    write(project, base_spec())
    spec = load_spec("demo", now=NOW)
    by_name = {h.name: h for h in spec.hosts}
    assert list(by_name) == [
        "demo-postgresql-1",
        "demo-postgresql-2",
        "demo-postgresql-3",
        "demo-cassandra-1",
        "demo-cassandra-2",
        "demo-cassandra-3",
        "demo-prometheus-1",
    ]
    assert by_name["demo-postgresql-1"].groups == ("postgresql_primary",)
    assert by_name["demo-postgresql-3"].groups == ("postgresql_replica",)
    # Replicas spread over the zones; each Cassandra rack is one zone.
    assert [by_name[f"demo-postgresql-{i}"].az for i in (1, 2, 3)] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert [(h.hostvars["cassandra_rack"], h.az) for h in spec.hosts_of("cassandra")] == [
        ("rack1", "eu-west-1a"),
        ("rack1", "eu-west-1a"),
        ("rack2", "eu-west-1b"),
    ]
    assert spec.aws is not None
    assert {az: str(net) for az, net in spec.aws.subnets.items()} == {
        "eu-west-1a": "10.60.0.0/24",
        "eu-west-1b": "10.60.1.0/24",
        "eu-west-1c": "10.60.2.0/24",
    }
    assert spec.ttl == dt.timedelta(hours=8)


def broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    spec = base_spec()
    change(spec)
    return spec


CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown service": (
        lambda s: s["services"].update(redis={}),
        "services: unknown key(s) redis; valid: cassandra, postgresql, prometheus",
    ),
    "no service": (lambda s: s.update(services={}), "services: names no service"),
    "zero prometheus": (
        lambda s: s["services"].update(prometheus={"count": 0}),
        "services.prometheus.count: must be a whole number of at least 1, not 0",
    ),
    "empty rack": (
        lambda s: s["services"]["cassandra"]["datacenters"][0]["racks"].update(rack2=0),
        "services.cassandra.datacenters[0].racks.rack2: must be a whole number of at least 1, not 0",
    ),
    "rf larger than the dc": (
        lambda s: s["services"]["cassandra"]["datacenters"][0].update(replication_factor=5),
        "services.cassandra.datacenters[0].replication_factor: 5 is larger than the datacenter's 3 node(s)",
    ),
    "overlapping subnets": (
        lambda s: s["aws"].update(
            subnets={"eu-west-1a": "10.60.0.0/23", "eu-west-1b": "10.60.1.0/24", "eu-west-1c": "10.60.2.0/24"}
        ),
        "aws.subnets: eu-west-1a 10.60.0.0/23 overlaps eu-west-1b 10.60.1.0/24",
    ),
    "subnet outside the vpc": (
        lambda s: s["aws"].update(
            subnets={"eu-west-1a": "10.61.0.0/24", "eu-west-1b": "10.60.1.0/24", "eu-west-1c": "10.60.2.0/24"}
        ),
        "aws.subnets.eu-west-1a: 10.61.0.0/24 is outside the VPC 10.60.0.0/16",
    ),
    "unknown region": (lambda s: s["aws"].update(region="eu-middle-7"), "aws.region: unknown region 'eu-middle-7'"),
    "zone of another region": (
        lambda s: s["aws"].update(azs=["eu-west-1a", "us-east-1a"]),
        "aws.azs: 'us-east-1a' is not a zone of eu-west-1",
    ),
    "ttl in the past": (
        lambda s: (s.pop("ttl"), s.update(expires_at="2026-12-01T00:00:00Z")),
        "expires_at: 2026-12-01T00:00:00+00:00 is in the past",
    ),
    "bad ttl": (lambda s: s.update(ttl="forever"), "ttl: 'forever' is not a lifetime like 8h, 3d or 2w"),
    "no ttl": (lambda s: s.pop("ttl"), "ttl: an environment that is not protected needs a ttl or expires_at"),
    "ami id": (
        lambda s: s["aws"]["image"].update(name="ami-0123456789abcdef0"),
        "aws.image.name: a name pattern, never an AMI id",
    ),
    "ssh from anywhere": (
        lambda s: s["aws"].update(admin_cidrs=["0.0.0.0/0"]),
        "aws.admin_cidrs: 0.0.0.0/0 would open SSH to the internet",
    ),
    "bad cidr": (lambda s: s["aws"].update(vpc_cidr="10.60.0.1/16"), "aws.vpc_cidr: '10.60.0.1/16' is not an IPv4"),
    "more racks than zones": (
        lambda s: s["aws"].update(azs=["eu-west-1a"]),
        "services.cassandra.datacenters[0].racks: 2 racks but 1 zones: a rack is one zone",
    ),
    "name not the file's": (lambda s: s.update(name="prod"), "name: 'prod' must match the file name 'demo'"),
    "unknown way in": (
        lambda s: s["aws"].update(connect_via="tunnel"),
        "aws.connect_via: 'tunnel': valid: public, private",
    ),
    "proxy not a url": (
        lambda s: s["aws"].update(apt_proxy="proxy.internal:3142"),
        "aws.apt_proxy: 'proxy.internal:3142' is not an http(s)://host[:port] URL",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_naming_the_file_and_field(project: Project, case: str) -> None:
    change, message = CASES[case]
    write(project, broken(change))
    with pytest.raises(SpecError) as refused:
        load_spec("demo", now=NOW)
    assert str(refused.value).startswith("demo.yml: ")
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_protected_environment_may_live_forever(project: Project) -> None:
    spec = broken(lambda s: (s.pop("ttl"), s.update(protected=True)))
    write(project, spec)
    loaded = load_spec("demo", now=NOW)
    assert loaded.protected and loaded.ttl is None and loaded.expires_at is None


def test_env_show_prints_the_hosts_and_refuses_bad_specs_with_exit_2(cli: Cli, project: Project) -> None:
    write(project, base_spec())
    shown = cli("env", "show", "demo", "--json")
    assert shown.code == 0, shown.err
    document = json.loads(shown.out)
    assert [h["name"] for h in document["hosts"]][:2] == ["demo-postgresql-1", "demo-postgresql-2"]
    assert document["aws"]["subnets"]["eu-west-1c"] == "10.60.2.0/24"
    table = cli("env", "show", "demo")
    assert "demo-cassandra-3" in table.out and "rack=rack2" in table.out

    write(project, broken(lambda s: s["services"].update(redis={})))
    refused = cli("env", "show", "demo")
    assert refused.code == 2 and "unknown key(s) redis" in refused.err and "Traceback" not in refused.err
    missing = cli("env", "show", "nosuch")
    assert missing.code == 2 and "no environment spec" in missing.err
    bad_name = cli("env", "show", "../etc/passwd")
    assert bad_name.code == 2 and "lower-case letters" in bad_name.err
