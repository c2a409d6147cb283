"""The lab's profiles and the inventory `toolkit lab up` writes from them (checked by Ansible's own parser too)."""

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.conftest import Project
from toolkit.lab import inventory, profiles
from toolkit.runner.inventory import resolve

KEY = Path("/state/lab/id_ed25519")
KNOWN_HOSTS = Path("/state/lab/known_hosts")


def render(profile: str, apt_proxy: str | None = None) -> dict[str, Any]:
    return inventory.render(profiles.hosts_of(profile), key=KEY, known_hosts=KNOWN_HOSTS, apt_proxy=apt_proxy)


def hosts_in(group: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(group["hosts"])


def test_full_profile_puts_every_host_in_its_group_with_its_address() -> None:
    children = render("full")["all"]["children"]
    assert sorted(children) == ["cassandra", "postgresql", "prometheus"]
    cassandra = hosts_in(children["cassandra"])
    assert {name: vars_["ansible_host"] for name, vars_ in cassandra.items()} == {
        "cassandra-1": "10.242.10.11",
        "cassandra-2": "10.242.10.12",
        "cassandra-3": "10.242.10.13",
    }
    assert hosts_in(children["prometheus"]) == {
        "prometheus-1": {"ansible_host": "10.242.10.31", "ansible_become": True}
    }


def test_postgresql_is_a_parent_group_of_primary_and_replica() -> None:
    postgresql = render("full")["all"]["children"]["postgresql"]
    assert set(postgresql) == {"children"}
    assert hosts_in(postgresql["children"]["postgresql_primary"]) == {
        "postgresql-1": {"ansible_host": "10.242.10.21", "ansible_become": True}
    }
    assert hosts_in(postgresql["children"]["postgresql_replica"]) == {
        "postgresql-2": {"ansible_host": "10.242.10.22", "ansible_become": True}
    }


def test_cassandra_hosts_carry_dc_and_rack_over_two_racks() -> None:
    cassandra = hosts_in(render("full")["all"]["children"]["cassandra"])
    racks = {name: (v["cassandra_dc"], v["cassandra_rack"]) for name, v in cassandra.items()}
    assert racks == {"cassandra-1": ("dc1", "rack1"), "cassandra-2": ("dc1", "rack1"), "cassandra-3": ("dc1", "rack2")}


def test_connection_vars_use_the_lab_key_and_strict_host_key_checking() -> None:
    connection = render("full")["all"]["vars"]
    assert connection["ansible_user"] == "toolkit"
    # Every lab host becomes root; the controller (Ansible's implicit localhost, which takes all's variables)
    # must not, or Mitogen's strategy escalates its delegated tasks through a sudo it does not have.
    assert "ansible_become" not in connection
    groups = render("full")["all"]["children"]
    every_host = [
        host
        for group in groups.values()
        for sub in group.get("children", {"": group}).values()
        for host in sub["hosts"].values()
    ]
    assert every_host and all(host["ansible_become"] is True for host in every_host)
    assert connection["ansible_ssh_private_key_file"] == str(KEY)
    ssh_args = connection["ansible_ssh_common_args"]
    assert f"UserKnownHostsFile={KNOWN_HOSTS}" in ssh_args
    assert "StrictHostKeyChecking=yes" in ssh_args
    assert "StrictHostKeyChecking=no" not in yaml.safe_dump(render("full"))
    assert connection["toolkit_env"] == "lab"


def test_the_apt_proxy_is_set_only_when_given() -> None:
    assert "base_apt_proxy" not in render("full")["all"]["vars"]
    assert render("full", apt_proxy="http://10.242.10.1:3142")["all"]["vars"]["base_apt_proxy"] == (
        "http://10.242.10.1:3142"
    )


def test_every_host_has_a_unique_name_and_address_in_the_lab_subnet() -> None:
    hosts = profiles.all_hosts()
    assert len({h.name for h in hosts}) == len(hosts)
    assert len({h.address for h in hosts}) == len(hosts)
    assert len({h.container for h in hosts}) == len(hosts)
    subnet = ipaddress.ip_network(profiles.SUBNET)
    for host in hosts:
        address = ipaddress.ip_address(host.address)
        assert address in subnet, host
        assert address not in (ipaddress.ip_address(profiles.GATEWAY), subnet.network_address, subnet.broadcast_address)
        assert host.container == profiles.CONTAINER_PREFIX + host.name


def test_minimal_is_a_subset_of_full_with_a_quorum_cluster_and_a_replica() -> None:
    minimal = profiles.hosts_of("minimal")
    assert {h.name for h in minimal} <= {h.name for h in profiles.hosts_of("full")}
    assert sorted(group for host in minimal for group in host.groups) == [
        "cassandra",
        "cassandra",
        "cassandra",
        "postgresql_primary",
        "postgresql_replica",
        "prometheus",
    ]
    # Three Cassandra nodes over two racks of one DC: RF 3 at QUORUM survives one node restarting.
    racks = {(h.hostvars["cassandra_dc"], h.hostvars["cassandra_rack"]) for h in minimal if "cassandra" in h.groups}
    assert racks == {("dc1", "rack1"), ("dc1", "rack2")}


def rendered_hosts(group: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every host of a rendered group and its sub-groups, with its variables."""
    found = dict(group.get("hosts") or {})
    for child in (group.get("children") or {}).values():
        found.update(rendered_hosts(child))
    return found


def test_a_host_keeps_its_address_and_vars_across_profiles() -> None:
    # Switching profiles must never renumber a host: known_hosts and caches key on the address.
    full = rendered_hosts(render("full")["all"])
    minimal = rendered_hosts(render("minimal")["all"])
    assert len(full) == 6
    assert len(minimal) == 6
    assert {name: full[name] for name in minimal} == minimal


def test_minimal_renders_postgresql_as_primary_and_replica() -> None:
    postgresql = render("minimal")["all"]["children"]["postgresql"]["children"]
    assert {group: list(members["hosts"]) for group, members in postgresql.items()} == {
        "postgresql_primary": ["postgresql-1"],
        "postgresql_replica": ["postgresql-2"],
    }


def test_secrets_dir_is_handed_to_the_inventory_only_when_given() -> None:
    assert "toolkit_lab_secrets_dir" not in render("minimal")["all"]["vars"]
    rendered = inventory.render(
        profiles.hosts_of("minimal"),
        key=KEY,
        known_hosts=KNOWN_HOSTS,
        apt_proxy=None,
        secrets_dir=Path("/state/lab/secrets"),
    )
    assert rendered["all"]["vars"]["toolkit_lab_secrets_dir"] == "/state/lab/secrets"


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("postgresql", ["postgresql-1", "postgresql-2"]),
        ("cassandra", ["cassandra-1", "cassandra-2", "cassandra-3"]),
        ("postgresql_replica", ["postgresql-2"]),
        (None, ["cassandra-1", "cassandra-2", "cassandra-3", "postgresql-1", "postgresql-2", "prometheus-1"]),
    ],
)
def test_ansible_reads_the_written_inventory_as_intended(
    project: Project, limit: str | None, expected: list[str]
) -> None:
    path = project.root / "inventories" / "lab" / "hosts.yml"
    inventory.write(path, render("full", apt_proxy="http://10.242.10.1:3142"))
    assert path.read_text().startswith(inventory.HEADER)
    assert not path.with_suffix(".tmp").exists()  # written atomically through a temporary file
    assert sorted(resolve(path.parent, limit).hosts) == expected


def test_every_host_has_a_stable_unique_locally_administered_mac() -> None:
    hosts = profiles.all_hosts()
    macs = [host.mac_address for host in hosts]
    assert len(set(macs)) == len(macs)
    for host in hosts:
        octets = host.mac_address.split(":")
        assert len(octets) == 6 and all(len(octet) == 2 for octet in octets)
        # Locally administered, unicast: bit 1 of the first octet set, bit 0 clear.
        first = int(octets[0], 16)
        assert first & 0b10 and not first & 0b1
    assert profiles.hosts_of("full")[0].mac_address == "02:00:0a:f2:0a:0b"  # cassandra-1, 10.242.10.11


def test_a_bare_host_takes_a_free_lab_address_and_a_name_no_lab_host_has() -> None:
    from toolkit.errors import LabError

    host = profiles.bare_host("new-1", "10.242.10.41")
    assert host.container == "toolkit-lab-new-1" and host.groups == ()
    for name, address in (
        ("postgresql-1", "10.242.10.41"),  # a lab host's name
        ("new-1", "10.242.10.21"),  # a lab host's address
        ("new-1", profiles.GATEWAY),
        ("new-1", "10.242.11.5"),  # outside the lab network
        ("new-1", "10.242.10.255"),
        ("New_1", "10.242.10.41"),
        ("new-1", "not-an-ip"),
    ):
        with pytest.raises(LabError):
            profiles.bare_host(name, address)


def test_a_bare_host_of_another_network_takes_its_prefix_and_any_address_but_its_gateway() -> None:
    from toolkit.errors import LabError

    network = profiles.LabNetwork("twins", "10.242.40.0/24", "10.242.40.1", "io.toolkit.twins=1", "toolkit-twin-")
    host = profiles.bare_host("postgresql-1", "10.242.40.4", network)  # the lab's names are the lab's concern
    assert host.container == "toolkit-twin-postgresql-1" and host.address == "10.242.40.4"
    for address in ("10.242.40.1", "10.242.10.50", "10.242.40.0"):
        with pytest.raises(LabError) as refused:
            profiles.bare_host("new-1", address, network)
        assert "is not a free address of the network 10.242.40.0/24 (gateway 10.242.40.1)" in refused.value.message


def test_a_taken_address_is_refused_naming_the_taken_ranges_from_the_profiles() -> None:
    from toolkit.errors import LabError

    with pytest.raises(LabError) as refused:
        profiles.bare_host("new-1", "10.242.10.12")
    assert refused.value.message.endswith("(taken by lab hosts and the gateway: .1, .11-.13, .21-.22, .31, .101-.120)")
