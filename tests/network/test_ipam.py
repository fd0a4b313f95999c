"""Choosing subnets and addresses: pure functions, and the host's own networks (root)."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from engine.network import (
    NetworkError,
    allocate_address,
    allocate_subnet,
    gateway_of,
    host_networks,
)
from tests.iproute import host_iproute

POOL = [(IPv4Network("172.30.0.0/16"), 24)]


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


def addr(text: str) -> IPv4Address:
    return IPv4Address(text)


def test_allocate_subnet_gives_the_first_subnet_of_the_pool_when_nothing_is_taken() -> None:
    assert allocate_subnet(POOL, []) == net("172.30.0.0/24")


def test_allocate_subnet_skips_subnets_that_overlap_a_taken_network() -> None:
    taken = [net("172.30.0.0/24"), net("172.30.1.128/25"), net("172.30.2.7/32")]
    assert allocate_subnet(POOL, taken) == net("172.30.3.0/24")


def test_allocate_subnet_skips_every_subnet_inside_a_larger_taken_network() -> None:
    taken = [net("172.30.0.0/20")]
    assert allocate_subnet(POOL, taken) == net("172.30.16.0/24")


def test_allocate_subnet_ignores_taken_networks_outside_the_pool_and_of_the_other_family() -> None:
    taken = [net("10.0.0.0/8"), IPv6Network("::/0")]
    assert allocate_subnet(POOL, taken) == net("172.30.0.0/24")


def test_allocate_subnet_moves_to_the_next_pool_entry_when_one_is_full() -> None:
    pool = [(net("172.30.0.0/23"), 24), (net("192.168.64.0/20"), 26)]
    taken = [net("172.30.0.0/23")]
    assert allocate_subnet(pool, taken) == net("192.168.64.0/26")


def test_allocate_subnet_reports_an_exhausted_pool() -> None:
    with pytest.raises(NetworkError, match=r"no free subnet left in the address pool 172.30.0.0/16 \(/24 each\)"):
        allocate_subnet(POOL, [net("172.30.0.0/16")])


def test_allocate_subnet_refuses_a_prefix_length_the_base_cannot_be_cut_into() -> None:
    with pytest.raises(NetworkError, match=r"cannot cut /8 subnets from 172.30.0.0/16"):
        allocate_subnet([(net("172.30.0.0/16"), 8)], [])
    with pytest.raises(NetworkError, match=r"cannot cut /31 subnets"):
        allocate_subnet([(net("172.30.0.0/16"), 31)], [])


def test_allocate_subnet_cuts_ipv6_pools_too() -> None:
    pool = [(IPv6Network("fd00:1:2::/48"), 64)]
    taken = [IPv6Network("fd00:1:2::/64")]
    assert allocate_subnet(pool, taken) == IPv6Network("fd00:1:2:1::/64")


def test_gateway_of_is_the_first_host_address() -> None:
    assert gateway_of(net("172.30.5.0/24")) == addr("172.30.5.1")
    assert gateway_of(IPv6Network("fd00:1:2:3::/64")) == IPv6Address("fd00:1:2:3::1")


def test_gateway_of_refuses_a_subnet_too_small_for_a_container() -> None:
    with pytest.raises(NetworkError, match="too small"):
        gateway_of(net("172.30.5.0/31"))


SUBNET = net("10.1.2.0/24")
GATEWAY = addr("10.1.2.1")


def test_allocate_address_gives_the_lowest_free_address_after_the_gateway() -> None:
    assert allocate_address(SUBNET, GATEWAY, {}) == addr("10.1.2.2")
    taken = {addr("10.1.2.2"): "web-1", addr("10.1.2.3"): "db-1"}
    assert allocate_address(SUBNET, GATEWAY, taken) == addr("10.1.2.4")


def test_allocate_address_never_gives_the_network_gateway_or_broadcast_address() -> None:
    tiny = net("10.1.2.0/30")  # .0 network, .1 gateway, .2 host, .3 broadcast
    assert allocate_address(tiny, addr("10.1.2.1"), {}) == addr("10.1.2.2")
    with pytest.raises(NetworkError, match=r"no free address left in subnet 10.1.2.0/30 \(1 taken\)"):
        allocate_address(tiny, addr("10.1.2.1"), {addr("10.1.2.2"): "web-1"})


def test_allocate_address_skips_a_gateway_that_is_not_the_first_address() -> None:
    assert allocate_address(SUBNET, addr("10.1.2.1"), {}) != addr("10.1.2.1")
    assert allocate_address(SUBNET, addr("10.1.2.2"), {}) == addr("10.1.2.1")


def test_allocate_address_takes_dynamic_addresses_from_the_ip_range_only() -> None:
    ip_range = net("10.1.2.128/25")
    assert allocate_address(SUBNET, GATEWAY, {}, ip_range=ip_range) == addr("10.1.2.128")
    with pytest.raises(NetworkError, match=r"no free address left in ip_range 10.1.2.252/30 of 10.1.2.0/24"):
        allocate_address(SUBNET, GATEWAY, {addr("10.1.2.252"): "a", addr("10.1.2.253"): "b", addr("10.1.2.254"): "c"}, ip_range=net("10.1.2.252/30"))


def test_allocate_address_refuses_an_ip_range_outside_the_subnet() -> None:
    with pytest.raises(NetworkError, match=r"ip_range 10.9.0.0/25 is not within subnet 10.1.2.0/24"):
        allocate_address(SUBNET, GATEWAY, {}, ip_range=net("10.9.0.0/25"))


def test_allocate_address_honours_a_wanted_address() -> None:
    assert allocate_address(SUBNET, GATEWAY, {}, wanted=addr("10.1.2.77")) == addr("10.1.2.77")
    assert allocate_address(SUBNET, GATEWAY, {}, wanted="10.1.2.78") == addr("10.1.2.78")


def test_a_wanted_address_may_lie_outside_the_ip_range_but_not_outside_the_subnet() -> None:
    ip_range = net("10.1.2.128/25")
    assert allocate_address(SUBNET, GATEWAY, {}, ip_range=ip_range, wanted="10.1.2.5") == addr("10.1.2.5")
    with pytest.raises(NetworkError, match=r"^10.1.3.5 is outside subnet 10.1.2.0/24$"):
        allocate_address(SUBNET, GATEWAY, {}, wanted="10.1.3.5")


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        ("10.1.2.300", "10.1.2.300 is not an IP address"),
        ("fd00::5", "fd00::5 is outside subnet 10.1.2.0/24"),
        ("10.1.2.0", "10.1.2.0 is the network address of 10.1.2.0/24"),
        ("10.1.2.255", "10.1.2.255 is the broadcast address of 10.1.2.0/24"),
        ("10.1.2.1", "10.1.2.1 is the gateway of 10.1.2.0/24"),
        ("10.1.2.9", "10.1.2.9 is already taken by stack-web-1"),
    ],
)
def test_a_wanted_address_that_cannot_be_given_is_refused_with_the_reason(wanted: str, message: str) -> None:
    taken = {addr("10.1.2.9"): "stack-web-1"}
    with pytest.raises(NetworkError) as info:
        allocate_address(SUBNET, GATEWAY, taken, wanted=wanted)
    assert str(info.value) == message


def test_allocate_address_gives_sequential_ipv6_addresses() -> None:
    subnet = IPv6Network("fd00:1:2:3::/64")
    gateway = gateway_of(subnet)
    first = allocate_address(subnet, gateway, {})
    second = allocate_address(subnet, gateway, {first: "web-1"})
    assert (first, second) == (IPv6Address("fd00:1:2:3::2"), IPv6Address("fd00:1:2:3::3"))
    with pytest.raises(NetworkError, match="fd00:1:2:3::3 is already taken by web-2"):
        allocate_address(subnet, gateway, {second: "web-2"}, wanted="fd00:1:2:3::3")


# -- the host's networks (root: they are read and changed through netlink) -------------------


@pytest.fixture
def dummy() -> Iterator[str]:
    """An interface of the test's own to put addresses on, removed afterwards: a dummy, or,
    on a kernel without the dummy driver (this project's machine), an empty bridge."""
    if os.geteuid() != 0:
        pytest.skip("needs root: makes a dummy interface")
    name = f"cbtd{secrets.token_hex(5)}"
    with host_iproute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="dummy")
        except NetlinkError as exc:
            if exc.code != errno.EOPNOTSUPP:
                raise
            ipr.link("add", ifname=name, kind="bridge")
    try:
        yield name
    finally:
        with host_iproute() as ipr:
            if ipr.link_lookup(ifname=name):
                ipr.link("del", ifname=name)


def test_host_networks_lists_the_subnets_of_the_hosts_addresses_and_not_its_default_route() -> None:
    if os.geteuid() != 0:
        pytest.skip("reads the host's networks as root would")
    found = host_networks()
    assert net("127.0.0.0/8") in found
    assert net("0.0.0.0/0") not in found and IPv6Network("::/0") not in found


@pytest.mark.kernel
def test_allocate_subnet_avoids_an_address_that_is_on_a_host_interface(dummy: str) -> None:
    base = net(f"10.{128 + secrets.randbelow(128)}.0.0/16")
    pool = [(base, 24)]
    first = allocate_subnet(pool, host_networks())
    with host_iproute() as ipr:
        index = ipr.link_lookup(ifname=dummy)[0]
        ipr.addr("add", index=index, address=str(first.network_address + 9), prefixlen=28)
    networks = host_networks()
    assert net(f"{first.network_address}/28") in networks
    assert allocate_subnet(pool, networks) != first
    assert not allocate_subnet(pool, networks).overlaps(first)
