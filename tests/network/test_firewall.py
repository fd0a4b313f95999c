"""The firewall of stack bridges (root, real kernel), in a network namespace of the test's own
that stands in for the host — its nftables ruleset and /proc/sys/net are its own, the host's
are never touched — with IPv4 forwarding on there, as Docker leaves it: namespaces on one
bridge cannot reach those on another, an internal bridge forwards nothing in or out, and a
"Docker" forward chain with policy drop (made here with libnftables, as iptables-nft makes
Docker's) lets the bridges' own traffic through once they have their accepts, for bridged
traffic under br_netfilter as for routed traffic to an "outside" namespace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from engine.network import (
    Attachment,
    BridgeFirewall,
    BridgeSpec,
    NetworkError,
    attach,
    ensure_bridge,
    ensure_firewall,
    ensure_masquerade,
    firewalls,
    gateway_of,
    masquerade_rules,
    nftables_ruleset,
    remove_firewall,
    remove_masquerade,
)
from engine.network.nftables import run
from tests.network.conftest import Scratch
from tests.network.netnstools import Netns
from tests.network.test_nat import OUTSIDE, inside, our_rules, our_table, outside_link
from tests.network.test_traffic import cannot_reach, tcp_round_trip, udp_round_trip

pytestmark = pytest.mark.kernel

BR_NETFILTER = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


@pytest.fixture
def host(scratch: Scratch) -> Iterator[Netns]:
    """The namespace that plays the host, forwarding IPv4 (set before any bridge is made:
    writing the switch resets every interface's own)."""
    made = scratch.netns()
    inside(made, partial(Path("/proc/sys/net/ipv4/ip_forward").write_text, "1\n"))
    yield made


def bridge(scratch: Scratch, host: Netns, internal: bool = False) -> BridgeSpec:
    subnet = scratch.subnet()
    spec = BridgeSpec(name=scratch.bridge_name(), subnet=subnet, gateway=gateway_of(subnet), internal=internal)
    inside(host, partial(ensure_bridge, spec))
    return spec


def container(scratch: Scratch, host: Netns, spec: BridgeSpec) -> tuple[Netns, Attachment]:
    """A namespace on `spec`, with its default route through the host."""
    made, attachment = scratch.netns(), scratch.attachment(spec)
    inside(host, partial(attach, made.fd, attachment))
    return made, attachment


def docker_forward_chain(host: Netns, family: str = "ip") -> None:
    """What Docker leaves with iptables-nft: `FORWARD` in table `family filter`, policy drop,
    holding rules of its own."""
    where = {"family": family, "table": "filter"}
    docker0 = {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "docker0"}}
    eth9 = {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth9"}}
    inside(host, partial(run, "make Docker's forward chain", [
        {"add": {"table": {"family": family, "name": "filter"}}},
        {"add": {"chain": {**where, "name": "FORWARD", "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}},
        {"add": {"rule": {**where, "chain": "FORWARD", "expr": [docker0, {"counter": None}, {"accept": None}]}}},
        {"add": {"rule": {**where, "chain": "FORWARD", "comment": "someone else's", "expr": [eth9, {"drop": None}]}}},
    ]))  # fmt: skip


def tables(ruleset: list[str]) -> list[tuple[str, str]]:
    listed = [json.loads(line).get("table") for line in ruleset]
    return [(t["family"], t["name"]) for t in listed if t]


def flush(host: Netns, family: str, table: str, chain: str) -> None:
    what = {"family": family, "table": table, "name": chain}
    inside(host, partial(run, "flush a chain", [{"flush": {"chain": what}}]))


def test_a_namespace_on_one_bridge_cannot_reach_one_on_another(scratch: Scratch, host: Netns) -> None:
    first, second = bridge(scratch, host), bridge(scratch, host)
    (a_ns, a), (b_ns, b) = container(scratch, host, first), container(scratch, host, second)
    assert tcp_round_trip(b_ns, b.address.ip, a_ns)[0] == b"hello back"  # the host forwards
    inside(host, partial(ensure_firewall, first.name))
    inside(host, partial(ensure_firewall, second.name))
    assert cannot_reach(b_ns, b.address.ip, a_ns)
    assert cannot_reach(a_ns, a.address.ip, b_ns)


def test_an_internal_bridge_forwards_nothing_in_or_out_but_its_own_traffic(scratch: Scratch, host: Netns) -> None:
    inner, outer = bridge(scratch, host, internal=True), bridge(scratch, host)
    (i_ns, i), (peer_ns, peer) = container(scratch, host, inner), container(scratch, host, inner)
    o_ns, o = container(scratch, host, outer)
    inside(host, partial(ensure_firewall, inner.name, internal=True))
    inside(host, partial(ensure_firewall, outer.name))
    assert cannot_reach(i_ns, i.address.ip, o_ns)
    assert cannot_reach(o_ns, o.address.ip, i_ns)
    assert udp_round_trip(peer_ns, peer.address.ip, i_ns) == (b"pong", str(i.address.ip))


def test_bridged_traffic_passes_a_forward_chain_that_drops_under_br_netfilter(scratch: Scratch, host: Netns) -> None:
    if not inside(host, BR_NETFILTER.exists):
        pytest.skip("br_netfilter is not loaded: the routed test below covers the forward chain")
    inside(host, partial(BR_NETFILTER.write_text, "1\n"))  # this namespace's own switch
    spec = bridge(scratch, host)
    (a_ns, a), (b_ns, b) = container(scratch, host, spec), container(scratch, host, spec)
    docker_forward_chain(host)
    assert cannot_reach(b_ns, b.address.ip, a_ns)  # what Docker does to a bridge not its own
    inside(host, partial(ensure_firewall, spec.name))
    assert tcp_round_trip(b_ns, b.address.ip, a_ns) == (b"hello back", str(a.address.ip))
    assert udp_round_trip(a_ns, a.address.ip, b_ns) == (b"pong", str(b.address.ip))


def test_a_bridge_reaches_the_outside_through_a_forward_chain_that_drops(scratch: Scratch, host: Netns) -> None:
    spec = bridge(scratch, host)
    c_ns, c = container(scratch, host, spec)
    outside = scratch.netns()
    outside_link(host, outside, str(spec.subnet))
    docker_forward_chain(host)
    assert cannot_reach(outside, OUTSIDE.ip, c_ns)
    inside(host, partial(ensure_firewall, spec.name))
    assert tcp_round_trip(outside, OUTSIDE.ip, c_ns) == (b"hello back", str(c.address.ip))


def test_nothing_from_outside_starts_a_connection_into_a_bridge(scratch: Scratch, host: Netns) -> None:
    spec = bridge(scratch, host)
    c_ns, c = container(scratch, host, spec)
    outside = scratch.netns()
    outside_link(host, outside, str(spec.subnet))  # the outside routes the bridge's subnet
    inside(host, partial(ensure_firewall, spec.name))
    assert cannot_reach(c_ns, c.address.ip, outside)
    assert tcp_round_trip(outside, OUTSIDE.ip, c_ns)[0] == b"hello back"  # the other way


def test_accepts_go_into_each_forward_chain_there_is_and_nowhere_else(scratch: Scratch, host: Netns) -> None:
    one, two = scratch.bridge_name(), scratch.bridge_name()
    inside(host, partial(ensure_firewall, one))
    assert inside(host, firewalls) == {one: BridgeFirewall("network")}
    assert tables(inside(host, nftables_ruleset)) == [("inet", "composer")]  # none made
    docker_forward_chain(host, "ip")
    inside(host, partial(ensure_firewall, one))
    inside(host, partial(ensure_firewall, two, internal=True))
    assert inside(host, firewalls) == {
        one: BridgeFirewall("network", ("ip filter FORWARD",)),
        two: BridgeFirewall("internal", ("ip filter FORWARD",)),
    }
    docker_forward_chain(host, "ip6")
    inside(host, partial(ensure_firewall, one))
    assert inside(host, firewalls)[one].accepted_by == ("ip filter FORWARD", "ip6 filter FORWARD")


def test_accepts_come_back_after_the_forward_chain_is_flushed(scratch: Scratch, host: Netns) -> None:
    name = scratch.bridge_name()
    docker_forward_chain(host)
    inside(host, partial(ensure_firewall, name))
    flush(host, "ip", "filter", "FORWARD")  # as Docker restarting does
    assert inside(host, firewalls) == {name: BridgeFirewall("network")}
    inside(host, partial(ensure_firewall, name))
    assert inside(host, firewalls) == {name: BridgeFirewall("network", ("ip filter FORWARD",))}


def test_ensure_firewall_twice_changes_nothing(scratch: Scratch, host: Netns) -> None:
    docker_forward_chain(host, "ip")
    docker_forward_chain(host, "ip6")
    names = [scratch.bridge_name() for _ in range(2)]
    for name in names:
        inside(host, partial(ensure_firewall, name))
    once = inside(host, nftables_ruleset)
    for name in names:
        inside(host, partial(ensure_firewall, name))
    assert inside(host, nftables_ruleset) == once


def test_rules_that_are_not_as_wanted_are_replaced(scratch: Scratch, host: Netns) -> None:
    name = scratch.bridge_name()
    inside(host, partial(ensure_firewall, name))
    inside(host, partial(ensure_firewall, name, internal=True))
    assert inside(host, firewalls) == {name: BridgeFirewall("internal")}
    flush(host, "inet", "composer", "forward")  # the set still has it: the rules come back
    inside(host, partial(ensure_firewall, name, internal=True))
    assert inside(host, firewalls) == {name: BridgeFirewall("internal")}
    assert len(our_rules(inside(host, nftables_ruleset))) == 2


def test_removing_one_bridges_firewall_leaves_the_others(scratch: Scratch, host: Netns) -> None:
    docker_forward_chain(host)
    one, other = scratch.bridge_name(), scratch.bridge_name()
    inside(host, partial(ensure_firewall, one))
    inside(host, partial(ensure_firewall, other))
    inside(host, partial(remove_firewall, one))
    assert inside(host, firewalls) == {other: BridgeFirewall("network", ("ip filter FORWARD",))}


def test_removing_every_firewall_and_masquerade_leaves_the_ruleset_as_it_was(scratch: Scratch, host: Netns, tmp_path: Path) -> None:
    docker_forward_chain(host, "ip")
    docker_forward_chain(host, "ip6")
    before = inside(host, nftables_ruleset)
    one, two = scratch.bridge_name(), scratch.bridge_name()
    inside(host, partial(ensure_firewall, one))
    inside(host, partial(ensure_firewall, two, internal=True))
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/ipv4/ip_forward").write_text("1\n")
    inside(host, partial(ensure_masquerade, one, [str(scratch.subnet())], tmp_path))
    assert our_table(inside(host, nftables_ruleset))
    inside(host, partial(remove_firewall, one))  # the masquerade is left alone, and vice versa
    assert list(inside(host, masquerade_rules)) == [one]
    inside(host, partial(remove_masquerade, one))
    assert list(inside(host, firewalls)) == [two]
    inside(host, partial(remove_firewall, two))
    assert inside(host, nftables_ruleset) == before


def test_removing_a_firewall_that_is_not_there_does_nothing(scratch: Scratch, host: Netns) -> None:
    docker_forward_chain(host)
    before = inside(host, nftables_ruleset)
    inside(host, partial(remove_firewall, scratch.bridge_name()))
    assert inside(host, nftables_ruleset) == before


def test_a_bad_bridge_name_is_refused(scratch: Scratch, host: Netns) -> None:
    with pytest.raises(NetworkError, match="'no such bridge' is not a valid interface name"):
        inside(host, partial(ensure_firewall, "no such bridge"))
    assert inside(host, nftables_ruleset) == []
