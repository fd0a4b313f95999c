"""Outbound NAT (root, real kernel): masquerade rules made, read back and removed in a network
namespace of the test's own, which stands in for the host — the host's ruleset and forwarding
switches are never touched — and a connection from a "container" through that stand-in host
to an "outside" namespace on a TEST-NET-2 link (198.51.100.0/24), which sees the stand-in
host's address. No packet leaves the test's namespaces."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.network import (
    BridgeSpec,
    NetworkError,
    attach,
    ensure_bridge,
    ensure_masquerade,
    gateway_of,
    masquerade_rules,
    nftables_ruleset,
    remove_masquerade,
    run_in_netns,
)
from engine.network.nat import TABLE
from tests.iproute import netns_iproute
from tests.network.conftest import Scratch
from tests.network.netnstools import Netns
from tests.network.test_traffic import tcp_round_trip

pytestmark = pytest.mark.kernel

_T = TypeVar("_T")
ROUTER = IPv4Interface("198.51.100.1/24")  # the stand-in host's address on the outside link
OUTSIDE = IPv4Interface("198.51.100.2/24")


@pytest.fixture
def host(scratch: Scratch) -> Netns:
    """The namespace that plays the host: its nftables ruleset and /proc/sys are its own."""
    return scratch.netns()


@pytest.fixture
def proc_sys(tmp_path: Path) -> Path:
    """A stand-in for /proc/sys with both forwarding switches off."""
    for name in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    return tmp_path


def inside(netns: Netns, function: Callable[[], _T]) -> _T:
    return run_in_netns(netns.fd, function)


def our_rules(ruleset: list[str]) -> list[dict[str, Any]]:
    """The rules of our table in a listing."""
    objects = [json.loads(line) for line in ruleset]
    return [o["rule"] for o in objects if "rule" in o and o["rule"]["table"] == TABLE]


def our_table(ruleset: list[str]) -> bool:
    """Whether a listing has our table."""
    tables = [json.loads(line).get("table") for line in ruleset]
    return any(t and (t["family"], t["name"]) == ("inet", TABLE) for t in tables)


def test_ensure_masquerade_adds_a_rule_per_subnet_read_back_from_the_kernel(scratch: Scratch, host: Netns, proc_sys: Path) -> None:
    bridge, v4, v6 = scratch.bridge_name(), str(scratch.subnet()), str(scratch.subnet6())
    inside(host, partial(ensure_masquerade, bridge, [v4, v6], proc_sys))
    assert inside(host, masquerade_rules) == {bridge: [v4, v6]}
    rules = our_rules(inside(host, nftables_ruleset))
    assert [(r["family"], r["chain"], r["comment"]) for r in rules] == [("inet", "postrouting", bridge)] * 2
    assert all({"masquerade": None} in r["expr"] for r in rules)


def test_ensure_masquerade_twice_leaves_one_rule(scratch: Scratch, host: Netns, proc_sys: Path) -> None:
    bridge, subnet = scratch.bridge_name(), str(scratch.subnet())
    inside(host, partial(ensure_masquerade, bridge, [subnet], proc_sys))
    once = inside(host, nftables_ruleset)
    inside(host, partial(ensure_masquerade, bridge, [subnet], proc_sys))
    assert inside(host, nftables_ruleset) == once
    assert len(our_rules(once)) == 1


def test_ensure_masquerade_replaces_the_rules_of_subnets_a_bridge_no_longer_has(scratch: Scratch, host: Netns, proc_sys: Path) -> None:
    bridge, old, new = scratch.bridge_name(), str(scratch.subnet()), str(scratch.subnet())
    inside(host, partial(ensure_masquerade, bridge, [old], proc_sys))
    inside(host, partial(ensure_masquerade, bridge, [new], proc_sys))
    assert inside(host, masquerade_rules) == {bridge: [new]}


def test_removing_one_bridges_masquerade_leaves_the_others(scratch: Scratch, host: Netns, proc_sys: Path) -> None:
    one, other = scratch.bridge_name(), scratch.bridge_name()
    one_subnet, other_subnet = str(scratch.subnet()), str(scratch.subnet())
    inside(host, partial(ensure_masquerade, one, [one_subnet], proc_sys))
    inside(host, partial(ensure_masquerade, other, [other_subnet], proc_sys))
    inside(host, partial(remove_masquerade, one))
    assert inside(host, masquerade_rules) == {other: [other_subnet]}


def test_the_table_goes_with_the_last_rule_leaving_the_ruleset_as_it_was(scratch: Scratch, host: Netns, proc_sys: Path) -> None:
    before = inside(host, nftables_ruleset)
    bridges = [scratch.bridge_name() for _ in range(2)]
    for bridge in bridges:
        subnets = [str(scratch.subnet()), str(scratch.subnet6())]
        inside(host, partial(ensure_masquerade, bridge, subnets, proc_sys))
    assert our_table(inside(host, nftables_ruleset))
    for bridge in bridges:
        inside(host, partial(remove_masquerade, bridge))
    assert inside(host, nftables_ruleset) == before
    assert inside(host, masquerade_rules) == {}


def test_removing_a_masquerade_that_is_not_there_does_nothing(scratch: Scratch, host: Netns) -> None:
    bridge = scratch.bridge_name()
    inside(host, partial(remove_masquerade, bridge))
    assert inside(host, nftables_ruleset) == []


def test_ensure_masquerade_turns_on_forwarding_for_the_ip_versions_of_its_subnets(scratch: Scratch, host: Netns, proc_sys: Path) -> None:
    v4_only, dual = scratch.bridge_name(), scratch.bridge_name()
    inside(host, partial(ensure_masquerade, v4_only, [str(scratch.subnet())], proc_sys))
    assert (proc_sys / "net/ipv4/ip_forward").read_text() == "1\n"
    assert (proc_sys / "net/ipv6/conf/all/forwarding").read_text() == "0\n"
    subnets = [str(scratch.subnet()), str(scratch.subnet6())]
    inside(host, partial(ensure_masquerade, dual, subnets, proc_sys))
    assert (proc_sys / "net/ipv6/conf/all/forwarding").read_text() == "1\n"


def test_a_bad_subnet_or_bridge_name_is_refused_saying_what_is_wrong(scratch: Scratch, host: Netns, proc_sys: Path) -> None:
    bridge = scratch.bridge_name()
    with pytest.raises(NetworkError, match=rf"bridge {bridge}: '10.1.2.3/24' is not a subnet"):
        inside(host, partial(ensure_masquerade, bridge, ["10.1.2.3/24"], proc_sys))
    with pytest.raises(NetworkError, match="'no such bridge' is not a valid interface name"):
        inside(host, partial(ensure_masquerade, "no such bridge", ["10.1.2.0/24"], proc_sys))
    assert inside(host, nftables_ruleset) == []
    assert (proc_sys / "net/ipv4/ip_forward").read_text() == "0\n"


def outside_link(host: Netns, outside: Netns, container_subnet: str) -> None:
    """A veth pair between the stand-in host (ROUTER) and the outside (OUTSIDE), which routes
    the containers' subnet back through the host, so that without masquerade it would see the
    container's own address."""
    with netns_iproute(host.fd) as ipr:
        ipr.link("add", ifname="out0", kind="veth", peer={"ifname": "out1", "net_ns_fd": outside.fd})
        index = ipr.link_lookup(ifname="out0")[0]
        ipr.addr("add", index=index, address=str(ROUTER.ip), prefixlen=ROUTER.network.prefixlen)
        ipr.link("set", index=index, state="up")
    with netns_iproute(outside.fd) as ipr:
        index = ipr.link_lookup(ifname="out1")[0]
        ipr.addr("add", index=index, address=str(OUTSIDE.ip), prefixlen=OUTSIDE.network.prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst=container_subnet, gateway=str(ROUTER.ip))


def test_a_masqueraded_container_reaches_the_outside_from_the_hosts_address(scratch: Scratch, host: Netns) -> None:
    container, outside = scratch.netns(), scratch.netns()
    subnet = scratch.subnet()
    spec = BridgeSpec(name=scratch.bridge_name(), subnet=subnet, gateway=gateway_of(subnet))
    inside(host, partial(ensure_bridge, spec))
    attachment = scratch.attachment(spec)
    inside(host, partial(attach, container.fd, attachment))
    outside_link(host, outside, str(spec.subnet))

    inside(host, partial(ensure_masquerade, spec.name, [str(spec.subnet)]))  # host's own /proc/sys
    assert tcp_round_trip(outside, OUTSIDE.ip, container) == (b"hello back", str(ROUTER.ip))
    inside(host, partial(remove_masquerade, spec.name))  # forwarding stays on
    assert tcp_round_trip(outside, OUTSIDE.ip, container) == (b"hello back", str(attachment.address.ip))
