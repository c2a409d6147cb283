"""What `toolkit env up` reports, whichever provider made the hosts (toolkit/cli/env_configure.py)."""

from toolkit.cli.env_configure import EnvUpReport, Member
from toolkit.exit_codes import ExitCode


def report() -> EnvUpReport:
    found = EnvUpReport("aws", "demo", details={"region": "eu-west-1"})
    found.members = [
        Member("demo-postgresql-1", "10.60.0.4", ("postgresql", "postgresql_primary")),
        Member("demo-postgresql-2", "10.60.1.4", ("postgresql", "postgresql_replica")),
        Member("demo-prometheus-1", "10.60.0.5", ("prometheus",)),
        Member("demo-cassandra-1", "10.60.2.4", ("cassandra",)),
    ]
    found.steps = {"resources": 12.04, "converge": 150.0}
    return found


def test_endpoints_name_each_client_port_at_the_address_the_controller_used() -> None:
    endpoints = {(e["host"], e["service"]): e["address"] for e in report().endpoints()}
    assert endpoints == {
        ("demo-postgresql-1", "postgresql"): "10.60.0.4:5432",
        ("demo-postgresql-2", "postgresql (read-only)"): "10.60.1.4:5432",
        ("demo-prometheus-1", "prometheus"): "10.60.0.5:9090",
        ("demo-prometheus-1", "alertmanager"): "10.60.0.5:9093",
        ("demo-cassandra-1", "cql"): "10.60.2.4:9042",
    }


def test_the_time_to_verified_is_only_given_for_a_verified_environment() -> None:
    converged = report()
    document = converged.to_dict()
    assert document["seconds"] == 162.0 and document["seconds_to_verified"] is None  # --no-verify
    assert document["region"] == "eu-west-1" and document["exit_code"] == 0 and document["error"] is None
    converged.verified = True
    assert converged.to_dict()["seconds_to_verified"] == 162.0


def test_the_first_failure_decides_the_exit_code_and_the_error() -> None:
    failed = report()
    failed.verified = True
    failed.fail(ExitCode.UNREACHABLE, "twins-postgresql-1 did not answer SSH")
    failed.fail(ExitCode.TASK_FAILED, "verify hardening failed")
    document = failed.to_dict()
    assert document["exit_code"] == int(ExitCode.UNREACHABLE)
    assert document["error"] == "twins-postgresql-1 did not answer SSH"
    assert document["seconds_to_verified"] is None
