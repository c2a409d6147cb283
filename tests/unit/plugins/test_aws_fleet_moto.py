"""aws_fleet through real ansible-inventory runs against moto's EC2: the seeded fleet, the cache, aws_ec2's view.

The fleet (conftest.py) has more than 1,000 instances in eu-west-1 listed 25 reservations a page, three regions,
stopped and terminated instances, and odd tags.
"""

import time
from pathlib import Path
from typing import Any

import yaml

from tests.unit.plugins.conftest import (
    BIG_REGION,
    LONG_VALUE,
    REGIONS,
    Fleet,
    Listing,
    ansible_inventory,
    aws_env,
    fleet_config,
    listed,
    plain,
    write_config,
)
from tests.unit.plugins.moto_fleet import AMI, TOPOLOGY_VARS, aws_ec2_config, free_port, members

POSTGRESQL = "tags.service | default('') == 'postgresql'"
ORDERS = f"{POSTGRESQL} and tags.cluster | default('') == 'orders'"


def hostvars(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hostvars: dict[str, dict[str, Any]] = plain(document["_meta"]["hostvars"])
    return hostvars


def test_every_running_instance_is_one_host_across_pages_and_regions(fleet: Fleet, fleet_listing: Listing) -> None:
    groups = members(fleet_listing.document)
    assert groups["all"] == set(fleet.running)
    assert len(fleet.by_region[BIG_REGION]) > 1000  # several pages of 25 reservations
    for region in REGIONS:
        assert groups[f"region_{region.replace('-', '_')}"] == set(fleet.by_region[region])
    assert not groups["all"] & (fleet.stopped | fleet.terminated)
    assert groups["aws"] == groups["all"]


def test_service_groups_match_the_labs(fleet: Fleet, fleet_listing: Listing) -> None:
    document = fleet_listing.document
    groups = members(document)
    assert groups["cassandra"] == set(fleet.cassandra)
    assert groups["postgresql"] == set(fleet.postgresql)
    assert sorted(document["postgresql"]["children"]) == ["postgresql_primary", "postgresql_replica"]
    assert "hosts" not in document["postgresql"]  # as in the lab: members through its children only
    assert groups["postgresql_primary"] == {i for i, role in fleet.postgresql.items() if role == "primary"}
    assert groups["postgresql_replica"] == {i for i, role in fleet.postgresql.items() if role == "replica"}
    assert len(groups["prometheus"]) == 2
    assert groups["az_eu_west_1c"] >= {i for i, (_, zone, _) in fleet.cassandra.items() if zone == "eu-west-1c"}


def test_odd_tags_make_predictable_groups_and_raw_values(fleet: Fleet, fleet_listing: Listing) -> None:
    document = fleet_listing.document
    groups = members(document)
    by_env = {tags["env"]: instance for instance, tags in fleet.odd.items()}
    assert groups["env___spaced__out__"] == {by_env["  spaced  out  "]}
    assert groups["env_café_ünïcode_Ω"] == {by_env["café ünïcode Ω"]}
    assert groups["env_" + LONG_VALUE.replace("-", "_")] == {by_env[LONG_VALUE]}
    assert groups["cluster_a_b_c_d_"] == {by_env[LONG_VALUE]}
    assert not [g for g in groups if g in ("env_", "env", "cluster_", "cluster")]  # empty values make no group
    empty = hostvars(document)[by_env[""]]
    assert "toolkit_env" not in empty and empty["aws_tags"] == {"service": "web", "env": "", "cluster": " "}
    assert hostvars(document)[by_env["café ünïcode Ω"]]["toolkit_env"] == "café ünïcode Ω"
    # Tag values are data, never templates.
    jinja = hostvars(document)[by_env["prod"]]
    assert jinja["aws_tags"]["note"] == "{{ lookup('pipe', 'id') }}"


def test_host_vars_carry_the_address_and_the_topology(fleet: Fleet, fleet_listing: Listing) -> None:
    hv = hostvars(fleet_listing.document)
    for instance, (region, zone, _name) in fleet.cassandra.items():
        assert (hv[instance]["cassandra_dc"], hv[instance]["cassandra_rack"]) == (region, zone)
        assert hv[instance]["ansible_host"] == hv[instance]["aws_private_ip"]
    seeds = {tuple(hv[i]["cassandra_seeds"]) for i in fleet.cassandra}
    assert len(seeds) == 1  # one list for the whole ring
    (ring_seeds,) = seeds
    address_of = {hv[i]["aws_private_ip"]: i for i in fleet.cassandra}
    by_dc: dict[str, list[str]] = {}
    for address in ring_seeds:
        by_dc.setdefault(fleet.cassandra[address_of[address]][0], []).append(fleet.cassandra[address_of[address]][1])
    # Three seeds per DC, spread over every rack the DC has.
    assert {dc: sorted(set(zones)) for dc, zones in by_dc.items()} == {
        "eu-west-1": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        "us-east-1": ["us-east-1a", "us-east-1b"],
    }
    assert [len(zones) for zones in by_dc.values()] == [3, 3]
    primary = next(i for i, role in fleet.postgresql.items() if role == "primary")
    for instance, role in fleet.postgresql.items():
        assert hv[instance]["postgresql_role"] == role
        assert hv[instance]["postgresql_primary_group"] == "postgresql_orders_primary"
    assert hv[primary]["aws_target_labels"] == {
        "instance_id": primary,
        "region": BIG_REGION,
        "availability_zone": hv[primary]["aws_availability_zone"],
        "service": "postgresql",
        "cluster": "orders",
        "env": "prod",
    }


def test_a_cached_run_replays_the_processed_inventory_without_aws(fleet: Fleet, fleet_listing: Listing) -> None:
    config = fleet_listing.config
    # Options that do not change the content leave the cache valid; they make a dead endpoint fail at once.
    config.write_text(
        yaml.safe_dump({**yaml.safe_load(config.read_text()), "max_attempts": 1, "connect_timeout": 1}, sort_keys=False)
    )
    dead = aws_env(f"http://127.0.0.1:{free_port()}")
    started = time.perf_counter()
    cached = listed(config, dead)
    elapsed = time.perf_counter() - started
    assert cached == fleet_listing.document
    assert elapsed < fleet_listing.seconds / 2, (elapsed, fleet_listing.seconds)
    # --flush-cache goes back to AWS (here: nowhere), fails in one line, and leaves the cache as it was.
    flushed = ansible_inventory(config, dead, "--list", "--flush-cache")
    assert flushed.returncode != 0
    assert "cannot reach the AWS endpoint for ec2:DescribeInstances in " in flushed.stderr
    assert "Traceback" not in flushed.stderr
    assert listed(config, dead) == fleet_listing.document


def test_a_changed_configuration_is_not_served_from_the_cache(fleet: Fleet, fleet_dir: Path) -> None:
    cache = {"cache": True, "cache_plugin": "jsonfile", "cache_connection": str(fleet_dir / "cache-small")}
    small = {"regions": ["ap-southeast-2"], "hostnames": ["tag:Name", "instance-id"], **cache}
    config = write_config(fleet_dir, "small.aws.yml", fleet_config(filters={"tag:service": "prometheus"}, **small))
    assert members(listed(config, aws_env(fleet.url)))["all"] == {"prometheus-2"}
    write_config(fleet_dir, "small.aws.yml", fleet_config(filters={"tag:env": "staging"}, **small))
    staging = members(listed(config, aws_env(fleet.url)))["all"]
    assert len(staging) == len(fleet.by_region["ap-southeast-2"]) == 13 and "prometheus-2" in staging


def test_states_select_stopped_and_terminated_instances(fleet: Fleet, fleet_dir: Path) -> None:
    # The default (running) leaves them out: test_every_running_instance_is_one_host_across_pages_and_regions.
    config = write_config(
        fleet_dir,
        "states.aws.yml",
        fleet_config(
            regions=[BIG_REGION], filters={"tag:batch": ["stopped", "terminated"]}, states=["stopped", "terminated"]
        ),
    )
    states = {name: v["aws_state"] for name, v in hostvars(listed(config, aws_env(fleet.url))).items()}
    assert states == {**dict.fromkeys(fleet.stopped, "stopped"), **dict.fromkeys(fleet.terminated, "terminated")}


def test_exclude_states_leaves_states_out(fleet: Fleet, fleet_dir: Path) -> None:
    batches = {"tag:batch": ["stopped", "terminated"]}  # only the stopped and terminated instances carry it

    def listed_states(name: str, **options: Any) -> dict[str, str]:
        config = write_config(fleet_dir, name, fleet_config(regions=[BIG_REGION], filters=batches, **options))
        return {name: v["aws_state"] for name, v in hostvars(listed(config, aws_env(fleet.url))).items()}

    # Alone, exclude_states starts from every state: the default [running] would have listed none of these.
    assert listed_states("exclude.aws.yml", exclude_states=["terminated"]) == dict.fromkeys(fleet.stopped, "stopped")
    both = listed_states("include-exclude.aws.yml", states=["stopped", "terminated"], exclude_states=["stopped"])
    assert both == dict.fromkeys(fleet.terminated, "terminated")


def test_constructed_options_work_and_are_cached_with_the_rest(fleet: Fleet, fleet_dir: Path) -> None:
    config = write_config(
        fleet_dir,
        "constructed.aws.yml",
        fleet_config(
            filters={"tag:service": "cassandra"},
            hostnames=["tag:Name"],
            # Plain paths take the Python fast path, the others go through Jinja: both must give Ansible's result.
            compose={"dc_upper": "cassandra_dc | upper", "ansible_port": "2222", "dc": "cassandra_dc"},
            groups={"big_dc": "cassandra_dc == 'eu-west-1'"},
            keyed_groups=[
                {"key": "aws_instance_type", "prefix": "type", "parent_group": "types"},
                {"key": "toolkit_env | upper", "prefix": "ENV"},
                {"key": "aws_tags.Name", "separator": ""},
                {"key": "aws_tags.missing", "prefix": "never"},
            ],
            cache=True,
            cache_plugin="jsonfile",
            cache_connection=str(fleet_dir / "cache-constructed"),
        ),
    )
    cold = listed(config, aws_env(fleet.url))
    names = {name for _, _, name in fleet.cassandra.values()}
    assert members(cold)["all"] == names
    assert members(cold)["big_dc"] == {n for r, _, n in fleet.cassandra.values() if r == "eu-west-1"}
    assert members(cold)["types"] == members(cold)["type_t3_small"] == names
    assert cold["types"]["children"] == ["type_t3_small"]
    assert {hostvars(cold)[n]["dc_upper"] for n in names} == {"EU-WEST-1", "US-EAST-1"}
    assert {hostvars(cold)[n]["ansible_port"] for n in names} == {2222}
    assert {n: hostvars(cold)[n]["dc"] for n in names} == {n: r for r, _, n in fleet.cassandra.values()}
    assert members(cold)["ENV_PROD"] == names
    assert all(members(cold)[n.replace("-", "_")] == {n} for n in names)  # no prefix, no separator
    assert not [g for g in cold if g.startswith("never")]
    assert listed(config, aws_env(f"http://127.0.0.1:{free_port()}")) == cold


def test_accounts_are_reached_by_assuming_their_roles(fleet: Fleet, fleet_dir: Path) -> None:
    import boto3

    region = "eu-north-1"  # no other test's fleet lives here
    for account, name in (("111111111111", "pay-1"), ("222222222222", "search-1")):
        sts = boto3.client(
            "sts", region_name=region, endpoint_url=fleet.url, aws_access_key_id="a", aws_secret_access_key="b"
        )
        keys = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/seed", RoleSessionName="seed")["Credentials"]
        ec2 = boto3.client(
            "ec2",
            region_name=region,
            endpoint_url=fleet.url,
            aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"],
            aws_session_token=keys["SessionToken"],
        )
        ec2.run_instances(
            ImageId=AMI,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
        )
    config = write_config(
        fleet_dir,
        "accounts.aws.yml",
        fleet_config(
            regions=[region],
            hostnames=["tag:Name"],
            accounts=[
                {"role_arn": "arn:aws:iam::111111111111:role/inventory", "name": "payments"},
                {"role_arn": "arn:aws:iam::222222222222:role/inventory", "external_id": "toolkit"},
            ],
        ),
    )
    document = listed(config, aws_env(fleet.url))
    groups = members(document)
    assert groups["all"] == {"pay-1", "search-1"}
    assert groups["account_payments"] == {"pay-1"} and groups["account_222222222222"] == {"search-1"}
    assert hostvars(document)["pay-1"]["aws_account_id"] == "111111111111"
    assert hostvars(document)["search-1"]["aws_account"] == "222222222222"


def expected_topology(theirs: dict[str, dict[str, Any]], seeds_per_dc: int = 3) -> dict[str, dict[str, Any]]:
    """The topology variables aws_fleet must add, worked out from aws_ec2's own view of the instances.

    The documented rules (docs/inventory-aws.md, Topology), restated on aws_ec2's host variables: Cassandra's DC and
    rack are the region and zone; its seeds are, per DC in order, the oldest instances of each rack taken
    round-robin; a PostgreSQL host's role is its role tag (absent: replica), and a cluster tag points it at its
    cluster's groups.
    """
    expected: dict[str, dict[str, Any]] = {}
    rings: dict[str, dict[str, dict[str, list[tuple[str, str, str]]]]] = {}
    for host, variables in theirs.items():
        tags = variables.get("tags") or {}
        service, cluster = tags.get("service", "").strip(), tags.get("cluster", "").strip()
        if service == "cassandra":
            dc = tags.get("cassandra_dc", "").strip() or variables["placement"]["region"]
            rack = tags.get("cassandra_rack", "").strip() or variables["placement"]["availability_zone"]
            expected[host] = {"cassandra_dc": dc, "cassandra_rack": rack}
            oldest_first = (variables["launch_time"], variables["instance_id"], variables["private_ip_address"])
            rings.setdefault(cluster, {}).setdefault(dc, {}).setdefault(rack, []).append(oldest_first)
        elif service == "postgresql":
            expected[host] = {"postgresql_role": tags.get("role", "").strip().lower() or "replica"}
            if cluster:
                expected[host]["postgresql_primary_group"] = f"postgresql_{cluster}_primary"
                expected[host]["postgresql_replica_group"] = f"postgresql_{cluster}_replica"
    for cluster, dcs in rings.items():
        seeds: list[str] = []
        for dc in sorted(dcs):
            racks = [sorted(nodes) for _, nodes in sorted(dcs[dc].items())]
            in_turn = [rack[depth] for depth in range(max(map(len, racks))) for rack in racks if depth < len(rack)]
            seeds += [address for _, _, address in in_turn[:seeds_per_dc]]
        for host, variables in theirs.items():
            tags = variables.get("tags") or {}
            if tags.get("service", "").strip() == "cassandra" and tags.get("cluster", "").strip() == cluster:
                expected[host]["cassandra_seeds"] = seeds
    return expected


def test_host_counts_and_groups_agree_with_amazon_aws_ec2(fleet: Fleet, fleet_dir: Path) -> None:
    # The whole seeded fleet, every state it has: 1,000+ instances in three regions, odd tags, stopped and
    # terminated ones: 17 to 22 s on 2 shared cores, aws_ec2 ~9 s of it (docs/inventory-aws.md, Tests).
    states = ["running", "stopped", "terminated"]
    ours_config = write_config(fleet_dir, "compare.aws.yml", fleet_config(states=states))
    theirs_config = write_config(
        fleet_dir,
        "compare.aws_ec2.yml",
        aws_ec2_config(
            REGIONS,
            {},
            {
                "postgresql_primary": f"{POSTGRESQL} and tags.role | default('') == 'primary'",
                "postgresql_replica": f"{POSTGRESQL} and tags.role | default('') != 'primary'",
                "postgresql_orders_primary": f"{ORDERS} and tags.role | default('') == 'primary'",
                "postgresql_orders_replica": f"{ORDERS} and tags.role | default('') != 'primary'",
            },
            states=states,
        ),
    )
    theirs_document = listed(theirs_config, aws_env(fleet.url))
    ours_document = listed(ours_config, aws_env(fleet.url))
    theirs, ours = members(theirs_document), members(ours_document)

    everything = fleet.running | fleet.stopped | fleet.terminated
    assert len(everything) > 1000 and fleet.stopped and fleet.terminated
    assert ours["all"] == theirs["all"] == set(everything)
    assert len(ours_document["_meta"]["hostvars"]) == len(theirs_document["_meta"]["hostvars"]) == len(everything)
    assert ours.pop("aws") == theirs.pop("aws_ec2")
    # aws_ec2 makes a group of a whitespace-only tag value (cluster=" "); we make none (nor for empty values).
    assert set(theirs) - set(ours) == {"cluster__"}
    assert set(ours) - set(theirs) == set()
    for group in ours:
        assert ours[group] == theirs[group], group
    assert {"cassandra", "postgresql_primary", "postgresql_replica", "prometheus", "web"} <= set(ours)
    assert {"env___spaced__out__", "env_café_ünïcode_Ω", "cluster_a_b_c_d_", "region_ap_southeast_2"} <= set(ours)

    # On top of aws_ec2's groups, the topology the roles need, on exactly the Cassandra and PostgreSQL hosts.
    expected = expected_topology(plain(theirs_document["_meta"]["hostvars"]))
    assert set(expected) == set(fleet.cassandra) | set(fleet.postgresql)
    ours_vars = hostvars(ours_document)
    for host, variables in ours_vars.items():
        assert {k: variables[k] for k in TOPOLOGY_VARS if k in variables} == expected.get(host, {}), host
    (seeds,) = {tuple(ours_vars[host]["cassandra_seeds"]) for host in fleet.cassandra}
    assert len(seeds) == 6  # three per DC, two DCs


def test_toolkit_inventory_shows_the_fleet_and_refresh_goes_back_to_aws(fleet: Fleet, fleet_dir: Path) -> None:
    import subprocess
    import sys

    config = write_config(
        fleet_dir,
        "toolkit.aws.yml",
        fleet_config(
            regions=["ap-southeast-2"],
            hostnames=["tag:Name", "instance-id"],
            max_attempts=1,
            cache=True,
            cache_plugin="jsonfile",
            cache_connection=str(fleet_dir / "cache-toolkit"),
        ),
    )

    def toolkit(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "toolkit"), "inventory", "-i", str(config), *args]
        return subprocess.run(command, env=aws_env(endpoint), capture_output=True, text=True, timeout=120, check=False)

    shown = toolkit(fleet.url)
    assert shown.returncode == 0, shown.stderr
    assert "@prometheus (1 host)" in shown.stdout and "prometheus-2" in shown.stdout
    assert "@web (12 hosts)" in shown.stdout and "@region_ap_southeast_2 (13 hosts)" in shown.stdout
    dead = f"http://127.0.0.1:{free_port()}"
    assert toolkit(dead).stdout == shown.stdout  # from the cache
    refreshed = toolkit(dead, "--refresh")
    assert refreshed.returncode == 2
    assert refreshed.stderr.splitlines() == [
        f"error: cannot parse inventory {config}: cannot reach the AWS endpoint for ec2:DescribeInstances in "
        f'ap-southeast-2: Could not connect to the endpoint URL: "{dead}/"'
    ]
