#!/usr/bin/env python3
"""The aws_fleet inventory against amazon.aws.aws_ec2 and a bare boto3 paginator, on the same moto fleet.

For each size, a fresh moto server on loopback gets N instances over three regions (web, Cassandra rings,
PostgreSQL clusters, Prometheus, with service/cluster/env/role tags), then, side by side in one run:

  floor                a fresh python paginating DescribeInstances over the regions, one after another,
                       doing nothing with the answer: the physical floor of a cold run here
  <plugin> cold        `ansible -i CFG all --list-hosts` with no cache (what a playbook pays), and
                       `ansible-inventory -i CFG --list` with no cache
  <plugin> cached      the same two, answered from the plugin's jsonfile cache

Both plugins are configured alike: the same regions, running instances only, instance ids as names, the same
groups (aws_ec2 through keyed_groups and groups), a jsonfile cache. Pages are alike too: moto counts MaxResults
in reservations (AWS counts instances), and the fleet is launched 10 instances a reservation, so the floor and
aws_fleet ask for 100 reservations a page, which is AWS's 1,000 instances and what aws_ec2 gets by default.
Every run is a child process: wall time, CPU time and peak RSS (GNU time's %M) are printed, then the ratios,
and the two plugins' host and group memberships are compared.

The floor and aws_fleet's cold run alternate --rounds times (medians are used), since a long run sees the
machine's load drift; the other rows run once.

Usage: benchmarks/inventory.py [--sizes 200,2000,10000] [--rounds 3]   (a quick look: --sizes 200 --rounds 1)
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tests.unit.plugins.moto_fleet import (  # noqa: E402
    Batch,
    aws_ec2_config,
    ec2,
    env_for,
    launch,
    members,
    moto_server,
    scrubbed_environ,
)

BIN = Path(sys.executable).parent
REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")

FLOOR = """
import sys, boto3
total = 0
for region in sys.argv[1:]:
    client = boto3.client("ec2", region_name=region)
    pages = client.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["running"]}], PaginationConfig={"PageSize": 100})
    for page in pages:
        total += sum(len(r["Instances"]) for r in page["Reservations"])
print(total)
"""


@dataclass(frozen=True)
class Measured:
    seconds: float
    cpu_seconds: float  # the child's own user + system time: what it spends beside waiting for moto
    peak_mb: float
    stdout: str


GNU_TIME = Path("/usr/bin/time")


def measure(command: list[str], env: dict[str, str], cwd: Path) -> Measured:
    """Run a child to completion: wall time, CPU time (wait4's rusage) and peak RSS.

    The peak comes from GNU time when it is installed: Linux carries a process's RSS high-water mark across
    exec, so wait4 on a child forked from this (boto3-laden, ~180 MB) process never reports less than that.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile() as peak:
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", peak.name, *command] if GNU_TIME.exists() else command
        started = time.perf_counter()
        child = subprocess.Popen(wrapped, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{err.read().decode()[-3000:]}")
        reported = Path(peak.name).read_text().split()
        kib = int(reported[-1]) if GNU_TIME.exists() and reported else usage.ru_maxrss
        return Measured(seconds, usage.ru_utime + usage.ru_stime, kib / 1024, out.read().decode())


def seed(url: str, total: int) -> int:
    """A fleet of ``total`` instances over the regions; returns how many run (all of them)."""
    per_region = total // len(REGIONS)
    launched = 0
    for region in REGIONS:
        client = ec2(url, region)
        zones = [f"{region}a", f"{region}b", f"{region}c"]
        remaining = per_region if region != REGIONS[-1] else total - launched
        # Per region: 2 Prometheus, Cassandra rings of 6 (2 per zone), PostgreSQL clusters of 3, web for the rest.
        plan: list[Batch] = [Batch(region, 2, {"service": "prometheus", "env": "prod"}, zone=zones[0])]
        rings = max(1, remaining // 100)
        for ring in range(rings):
            tags = {"service": "cassandra", "cluster": f"ring{ring}", "env": "prod"}
            plan += [Batch(region, 2, tags, zone=zone) for zone in zones]
        for cluster in range(max(1, remaining // 200)):
            tags = {"service": "postgresql", "cluster": f"pg-{region}-{cluster}", "env": "prod"}
            plan += [Batch(region, 1, {**tags, "role": "primary"}), Batch(region, 2, {**tags, "role": "replica"})]
        used = sum(b.count for b in plan)
        web = remaining - used
        for index, zone in enumerate(zones):
            count = web // 3 + (1 if index < web % 3 else 0)
            if count > 0:
                plan.append(Batch(region, count, {"service": "web", "env": "prod", "cluster": "shop"}, zone=zone))
        for batch in plan:
            launch(client, batch)
        launched += sum(b.count for b in plan)
    return launched


def configs(directory: Path) -> dict[str, Path]:
    ours = {
        "plugin": "aws_fleet",
        "regions": list(REGIONS),
        "hostnames": ["instance-id"],
        "page_size": 100,
        "cache": True,
        "cache_plugin": "jsonfile",
        "cache_connection": str(directory / "cache-aws_fleet"),
        "cache_timeout": 86400,
    }
    service = "tags.service | default('') == 'postgresql'"
    theirs = {
        **aws_ec2_config(
            REGIONS,
            {},
            {
                "postgresql_primary": f"{service} and tags.role | default('') == 'primary'",
                "postgresql_replica": f"{service} and tags.role | default('') != 'primary'",
            },
        ),
        "compose": {"ansible_host": "private_ip_address"},
        "cache": True,
        "cache_plugin": "jsonfile",
        "cache_connection": str(directory / "cache-aws_ec2"),
        "cache_timeout": 86400,
    }
    # The same without the cache and one region at a time: how much concurrency costs or gains against moto.
    serial = {**{k: v for k, v in ours.items() if not k.startswith("cache")}, "max_workers": 1}
    paths = {
        "aws_fleet": directory / "bench.aws.yml",
        "aws_ec2": directory / "bench.aws_ec2.yml",
        "serial": directory / "serial.aws.yml",
    }
    paths["aws_fleet"].write_text(yaml.safe_dump(ours, sort_keys=False))
    paths["aws_ec2"].write_text(yaml.safe_dump(theirs, sort_keys=False))
    paths["serial"].write_text(yaml.safe_dump(serial, sort_keys=False))
    return paths


def memberships(listing: str) -> dict[str, set[str]]:
    groups = members(json.loads(listing))
    # Per-cluster PostgreSQL groups are ours alone (aws_ec2 would need one `groups` entry per cluster).
    return {g: h for g, h in groups.items() if not (g.startswith("postgresql_pg_"))}


def list_hosts_count(stdout: str) -> int:
    for line in stdout.splitlines():
        if line.strip().startswith("hosts ("):
            return int(line.strip()[len("hosts (") :].split(")")[0])
    raise RuntimeError(f"no host count in {stdout[:200]!r}")


def run_size(total: int, directory: Path, rounds: int) -> list[tuple[str, Measured]]:
    rows: list[tuple[str, Measured]] = []
    with moto_server() as url:
        print(f"\n== {total} instances over {len(REGIONS)} regions: seeding moto…", flush=True)
        started = time.perf_counter()
        launched = seed(url, total)
        print(f"   seeded {launched} in {time.perf_counter() - started:.0f}s", flush=True)
        env = {
            **scrubbed_environ(),
            **env_for(url),
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
            "ANSIBLE_HOST_PATTERN_MISMATCH": "ignore",
        }
        paths = configs(directory)

        def record(label: str, command: list[str]) -> Measured:
            result = measure(command, env, directory)
            print(
                f"   {label:<34} {result.seconds:8.1f} s {result.cpu_seconds:8.1f} s cpu {result.peak_mb:8.0f} MB",
                flush=True,
            )
            rows.append((label, result))
            return result

        floor_command = [sys.executable, "-c", FLOOR, *REGIONS]
        ours_cache = directory / "cache-aws_fleet"
        ours_hosts = [str(BIN / "ansible"), "-i", str(paths["aws_fleet"]), "all", "--list-hosts"]
        # The machine's load drifts over a long run: the floor and our cold run alternate, `rounds` times, and
        # the ratio uses their medians.
        for index in range(1, rounds + 1):
            floor = record(f"floor (bare boto3 paginator) #{index}", floor_command)
            assert int(floor.stdout.strip()) == launched
            shutil.rmtree(ours_cache, ignore_errors=True)
            cold = record(f"aws_fleet cold --list-hosts #{index}", ours_hosts)
            assert list_hosts_count(cold.stdout) == launched
        serial = [str(BIN / "ansible"), "-i", str(paths.pop("serial")), "all", "--list-hosts"]
        assert list_hosts_count(record("aws_fleet cold, max_workers 1", serial).stdout) == launched
        groups: dict[str, dict[str, set[str]]] = {}
        for plugin, config in paths.items():
            cache = directory / f"cache-{plugin.split('.')[-1]}"
            hosts = [str(BIN / "ansible"), "-i", str(config), "all", "--list-hosts"]
            inventory = [str(BIN / "ansible-inventory"), "-i", str(config), "--list"]
            if plugin != "aws_fleet":
                shutil.rmtree(cache, ignore_errors=True)
                assert list_hosts_count(record(f"{plugin} cold --list-hosts #1", hosts).stdout) == launched
            assert list_hosts_count(record(f"{plugin} cached --list-hosts", hosts).stdout) == launched, plugin
            shutil.rmtree(cache, ignore_errors=True)
            # Only the memberships are kept: a child forked from a fat parent would report the parent's RSS.
            groups[plugin] = memberships(record(f"{plugin} cold ansible-inventory", inventory).stdout)
            record(f"{plugin} cached ansible-inventory", inventory)
        ours, theirs = groups["aws_fleet"], groups["aws_ec2"]
        ours["aws_ec2"] = ours.pop("aws")
        agree = ours == theirs
        print(f"   host and group memberships agree with aws_ec2: {'yes' if agree else 'NO'}", flush=True)
        if not agree:
            differing = sorted(g for g in set(ours) | set(theirs) if ours.get(g) != theirs.get(g))
            print(f"   differing groups: {differing[:20]}", flush=True)
    return rows


def summary_row(total: int, rows: dict[str, Measured]) -> str:
    """One markdown row: --list-hosts times with their ratios, ansible-inventory times, peak memory."""

    def s(label: str) -> float:
        """A row's time; for rows run several times (label #1, #2, ...), their median."""
        runs = [m.seconds for name, m in rows.items() if name == label or name.startswith(f"{label} #")]
        return statistics.median(runs)

    floor = s("floor (bare boto3 paginator)")

    peak_ours = max(m.peak_mb for label, m in rows.items() if label.startswith("aws_fleet "))
    peak_theirs = max(m.peak_mb for label, m in rows.items() if label.startswith("aws_ec2"))
    cells = [
        f"{total:,}",
        f"{floor:.1f} s",
        f"{s('aws_fleet cold, max_workers 1'):.1f} s ({s('aws_fleet cold, max_workers 1') / floor:.2f}x floor)",
        f"{s('aws_fleet cold --list-hosts'):.1f} s ({s('aws_fleet cold --list-hosts') / floor:.2f}x floor)",
        f"{s('aws_ec2 cold --list-hosts'):.1f} s ({s('aws_ec2 cold --list-hosts') / floor:.2f}x floor)",
        f"{s('aws_fleet cached --list-hosts'):.1f} s",
        f"{s('aws_ec2 cached --list-hosts'):.1f} s "
        f"({s('aws_ec2 cached --list-hosts') / s('aws_fleet cached --list-hosts'):.1f}x ours)",
        f"{s('aws_fleet cold ansible-inventory'):.1f} / {s('aws_fleet cached ansible-inventory'):.1f} s",
        f"{s('aws_ec2 cold ansible-inventory'):.1f} / {s('aws_ec2 cached ansible-inventory'):.1f} s",
        f"{peak_ours:.0f} / {peak_theirs:.0f} MB ({peak_ours / peak_theirs:.2f})",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,2000,10000", help="comma-separated instance counts")
    parser.add_argument("--rounds", type=int, default=3, help="alternating floor / aws_fleet cold runs (medians)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    summary: list[str] = []
    for total in sizes:
        with tempfile.TemporaryDirectory(prefix="inventory-bench-") as scratch:
            rows = dict(run_size(total, Path(scratch), args.rounds))
        summary.append(summary_row(total, rows))
    print()
    print(
        "| instances | floor | aws_fleet cold, 1 worker | aws_fleet cold | aws_ec2 cold "
        "| aws_fleet cached | aws_ec2 cached "
        "| ansible-inventory --list cold / cached: aws_fleet | aws_ec2 | peak RSS aws_fleet / aws_ec2 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
