"""The engine's own rtnetlink client (engine/network/rtnl.py) reads what pyroute2 reads, and
acts as asked; its refusals name what was asked and the kernel's errno (root)."""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Interface, ip_address, ip_interface

import pytest

from engine.network import attach, netns_rtnl
from engine.network.rtnl import NetlinkError, Rtnl
from tests.iproute import host_iproute, netns_iproute
from tests.network.conftest import Scratch

pytestmark = pytest.mark.kernel


def _kind(message: object) -> str | None:
    kind = message.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")  # type: ignore[attr-defined]
    return str(kind) if kind is not None else None


def test_links_agree_with_pyroute2_on_the_host_and_in_a_namespace(scratch: Scratch) -> None:
    spec = scratch.bridge()
    ns = scratch.netns()
    a = scratch.attachment(spec, mac="02:00:00:aa:bb:cc")
    attach(ns.fd, a)
    for ours, theirs in ((Rtnl(), host_iproute()), (netns_rtnl(ns.fd), netns_iproute(ns.fd))):
        with ours as rtnl, theirs as ipr:
            expected = {
                m["index"]: (m.get("ifname"), _kind(m), m.get("mtu"), m.get("master") or 0,
                             m.get("address") or "", m["flags"] & 1)
                for m in ipr.link("dump")
            }  # fmt: skip
            found = {
                link.index: (link.name, link.kind, link.mtu, link.master, link.mac, int(link.up))
                for link in rtnl.links()
            }
        assert found == expected
    with Rtnl() as rtnl:
        host_end, bridge = rtnl.link(a.host_ifname), rtnl.link(spec.name)
        assert host_end is not None and bridge is not None
        assert (host_end.kind, host_end.master, host_end.up) == ("veth", bridge.index, True)
    with netns_rtnl(ns.fd) as rtnl:
        container_end = rtnl.link("eth0")
        assert container_end is not None
        assert (container_end.mac, container_end.peer, container_end.up) == (
            a.mac,
            host_end.index,
            True,
        )


def test_addresses_and_routes_agree_with_pyroute2(scratch: Scratch) -> None:
    spec = scratch.bridge(ipv6=True)
    ns = scratch.netns()
    attach(ns.fd, scratch.attachment(spec))
    with netns_rtnl(ns.fd) as rtnl, netns_iproute(ns.fd) as ipr:
        found = {(a.index, a.interface, a.scope) for a in rtnl.addresses()}
        expected = {
            (m["index"], ip_interface(f"{m.get('local') or m.get('address')}/{m['prefixlen']}"),
             m["scope"])
            for m in ipr.addr("dump")
        }  # fmt: skip
        assert found == expected
        for family in (socket.AF_INET, socket.AF_INET6):
            routes = {(r.dst, r.dst_len, r.table, r.gateway, r.oif) for r in rtnl.routes(family)}
            expected_routes = {
                (ip_address(r.get("dst")) if r.get("dst") else None, r["dst_len"], r.get("table"),
                 ip_address(r.get("gateway")) if r.get("gateway") else None, r.get("oif") or 0)
                for r in ipr.route("dump", family=family)
            }  # fmt: skip
            assert routes == expected_routes
            assert any(r.dst_len == 0 and r.gateway is not None for r in rtnl.routes(family))


def test_requests_sent_together_are_each_answered_in_order(scratch: Scratch) -> None:
    ns = scratch.netns()
    address = IPv4Interface("10.77.1.1/24")
    with netns_rtnl(ns.fd) as rtnl:
        codes = rtnl.do(
            Rtnl.set_link_request(1, up=True),
            Rtnl.address_request(True, 1, address),
            Rtnl.address_request(True, 1, address),
            Rtnl.address_request(False, 1, address),
        )
        assert codes == [0, 0, errno.EEXIST, 0]
        assert [a.interface for a in rtnl.addresses(socket.AF_INET)] == [
            IPv4Interface("127.0.0.1/8")
        ]


def test_a_refusal_names_what_was_asked_and_carries_the_errno(scratch: Scratch) -> None:
    ns = scratch.netns()
    with netns_rtnl(ns.fd) as rtnl, pytest.raises(NetlinkError) as caught:
        rtnl.delete_link("remove link 4242", 4242)
    assert caught.value.code == errno.ENODEV
    assert str(caught.value) == "cannot remove link 4242: No such device"


def test_a_missing_link_is_none_by_name_and_by_index(scratch: Scratch) -> None:
    ns = scratch.netns()
    with netns_rtnl(ns.fd) as rtnl:
        assert rtnl.link("nosuchlink") is None
        assert rtnl.link(index=4242) is None
        assert rtnl.index("nosuchlink") is None
        assert rtnl.index("lo") == 1


def test_a_dump_longer_than_one_datagram_is_read_whole(scratch: Scratch) -> None:
    ns = scratch.netns()
    with netns_rtnl(ns.fd) as rtnl:
        for number in range(60):  # both ends inside the namespace: nothing on the host
            rtnl.add_veth(f"va{number}", f"vb{number}", peer_netns=ns.fd, mtu=1400)
        names = {link.name for link in rtnl.links()}
    with netns_iproute(ns.fd) as ipr:
        assert names == {m.get("ifname") for m in ipr.link("dump")}
    assert len(names) == 121
