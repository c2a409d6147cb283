"""How the testinfra suites read a live nftables ruleset (tests/infra/toolkit_infra.py).

The kernel stores a set in its own shape: overlapping elements merged, adjacent addresses printed as a range,
a /32 as a bare address. A suite compares what the kernel admits with what the inventory wants; these cases
pin that comparison down, because on a hardened host every service suite relies on it.
"""

import ipaddress

import pytest

from tests.infra import toolkit_infra

RULE = 'ip saddr {{ {} }} tcp dport 7000 accept comment "cassandra: peers"'


def networks(*texts: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(text) for text in texts]


def test_a_range_the_kernel_printed_reads_as_the_addresses_it_holds() -> None:
    ruleset = RULE.format("10.242.10.11-10.242.10.13, 10.0.0.0/24, 10.9.9.9")
    assert toolkit_infra.nft_sources(ruleset, 7000, "cassandra: peers") == networks(
        "10.242.10.11/32", "10.242.10.12/31", "10.0.0.0/24", "10.9.9.9/32"
    )


def test_a_merged_range_matches_the_three_peers_the_inventory_lists() -> None:
    ruleset = RULE.format("10.242.10.11-10.242.10.13")
    toolkit_infra.assert_kernel_matches(
        ruleset, 7000, "cassandra: peers", networks("10.242.10.11/32", "10.242.10.12/32", "10.242.10.13/32")
    )


@pytest.mark.parametrize(
    ("admitted", "wanted", "message"),
    [
        ("10.242.10.11-10.242.10.13", ["10.242.10.11/32", "10.242.10.12/32"], "admitted but not expected"),
        ("10.242.10.11-10.242.10.12", ["10.242.10.11/32", "10.242.10.12/32", "10.242.10.13/32"], "not admitted"),
        ("10.242.10.0/24", ["10.242.10.0/25"], "admitted but not expected"),
    ],
)
def test_one_address_too_many_or_too_few_is_caught(admitted: str, wanted: list[str], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        toolkit_infra.assert_kernel_matches(RULE.format(admitted), 7000, "cassandra: peers", networks(*wanted))
