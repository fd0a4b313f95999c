"""Attaching a namespace to a bridge with a veth pair, level-triggered, and detaching (root)."""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Interface, ip_address, ip_interface
from typing import Any

import pytest

from engine.network import (
    Attachment,
    NetworkError,
    attach,
    attached_to,
    detach,
    link_exists,
    loopback_up,
)
from tests.iproute import host_iproute, netns_iproute
from tests.network.conftest import Scratch
from tests.network.netnstools import Netns

pytestmark = pytest.mark.kernel


def inside(ns: Netns) -> dict[str, Any]:
    """The namespace as its own netlink shows it: links (up, MTU, MAC), addresses, and
    default routes (per family: gateway and link)."""
    with netns_iproute(ns.fd) as ipr:
        links = {link["index"]: link for link in ipr.link("dump")}
        names = {index: link.get("ifname") for index, link in links.items()}
        addresses = sorted(
            (names[a["index"]], str(ip_interface(f"{a.get('address')}/{a['prefixlen']}")))
            for a in ipr.addr("dump")
            if a["family"] == socket.AF_INET or a["scope"] == 0
        )
        defaults = sorted(
            (str(ip_address(r.get("gateway"))), names[r.get("oif")])
            for family in (socket.AF_INET, socket.AF_INET6)
            for r in ipr.route("dump", family=family)
            if r["dst_len"] == 0 and r["table"] == 254
        )
    return {
        "links": {
            link.get("ifname"): (bool(link["flags"] & 1), link.get("mtu"), link.get("address"))
            for link in links.values()
        },
        "addresses": addresses,
        "defaults": defaults,
    }


def host_end(name: str) -> dict[str, Any]:
    with host_iproute() as ipr:
        link = ipr.link("get", ifname=name)[0]
    return {"up": bool(link["flags"] & 1), "mtu": link.get("mtu")}


def test_attach_connects_the_namespace_to_the_bridge_as_the_attachment_says(scratch: Scratch) -> None:
    spec = scratch.bridge(ipv6=True)
    ns = scratch.netns()
    a = scratch.attachment(spec, mtu=1450, mac="02:42:ac:11:00:02")
    attach(ns.fd, a)
    seen = inside(ns)
    assert seen["links"]["lo"][0] is True
    assert seen["links"]["eth0"] == (True, 1450, "02:42:ac:11:00:02")
    assert seen["addresses"] == sorted([("eth0", str(a.address)), ("eth0", str(a.address6)), ("lo", "127.0.0.1/8")])
    assert seen["defaults"] == sorted([(str(spec.gateway), "eth0"), (str(spec.gateway6), "eth0")])
    assert attached_to(a.host_ifname) == spec.name
    assert host_end(a.host_ifname) == {"up": True, "mtu": 1450}


def test_an_attachment_without_gateway_leaves_no_route_out(scratch: Scratch) -> None:
    spec = scratch.bridge(internal=True)
    ns = scratch.netns()
    attach(ns.fd, scratch.attachment(spec, gateway=False))
    assert inside(ns)["defaults"] == []
    with ns.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        with pytest.raises(OSError) as info:
            probe.connect(("203.0.113.1", 9))  # a route lookup only: nothing is sent
        assert info.value.errno == errno.ENETUNREACH


def test_attach_twice_changes_nothing(scratch: Scratch) -> None:
    spec = scratch.bridge(ipv6=True)
    ns = scratch.netns()
    a = scratch.attachment(spec)
    attach(ns.fd, a)
    before = inside(ns), host_end(a.host_ifname)
    with host_iproute() as ipr:
        index = ipr.link_lookup(ifname=a.host_ifname)[0]
    attach(ns.fd, a)
    assert (inside(ns), host_end(a.host_ifname)) == before
    with host_iproute() as ipr:
        assert ipr.link_lookup(ifname=a.host_ifname) == [index]  # the same pair, not a new one


def test_attach_makes_the_pair_again_when_the_container_end_was_deleted(scratch: Scratch) -> None:
    spec = scratch.bridge()
    ns = scratch.netns()
    a = scratch.attachment(spec)
    attach(ns.fd, a)
    expected = inside(ns)
    with netns_iproute(ns.fd) as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname="eth0")[0])
    assert not link_exists(a.host_ifname)  # the pair goes as a whole
    attach(ns.fd, a)
    assert without_macs(inside(ns)) == without_macs(expected)
    assert attached_to(a.host_ifname) == spec.name


def without_macs(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "links": {name: found[:2] for name, found in state["links"].items()}}


def test_attach_puts_back_a_removed_address_and_default_route(scratch: Scratch) -> None:
    spec = scratch.bridge()
    ns = scratch.netns()
    a = scratch.attachment(spec)
    attach(ns.fd, a)
    expected = inside(ns)
    with netns_iproute(ns.fd) as ipr:
        index = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("del", index=index, address=str(a.address.ip), prefixlen=a.address.network.prefixlen)
        assert not [r for r in ipr.route("dump", family=socket.AF_INET) if r["dst_len"] == 0]
        ipr.link("set", index=index, state="down")
    attach(ns.fd, a)
    assert inside(ns) == expected


def test_attach_replaces_a_wrong_address_and_gateway(scratch: Scratch) -> None:
    spec = scratch.bridge()
    ns = scratch.netns()
    a = scratch.attachment(spec)
    attach(ns.fd, a)
    moved = scratch.attachment(spec, host_ifname=a.host_ifname)
    attach(ns.fd, moved)
    seen = inside(ns)
    assert ("eth0", str(moved.address)) in seen["addresses"]
    assert ("eth0", str(a.address)) not in seen["addresses"]
    assert seen["defaults"] == [(str(spec.gateway), "eth0")]


def test_attach_without_gateway_removes_a_default_route_through_that_link(scratch: Scratch) -> None:
    spec = scratch.bridge()
    ns = scratch.netns()
    a = scratch.attachment(spec)
    attach(ns.fd, a)
    attach(ns.fd, Attachment(**{**a.__dict__, "gateway": None}))
    assert inside(ns)["defaults"] == []


def test_attach_puts_the_host_end_back_on_its_bridge(scratch: Scratch) -> None:
    spec = scratch.bridge()
    ns = scratch.netns()
    a = scratch.attachment(spec)
    attach(ns.fd, a)
    with host_iproute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=a.host_ifname)[0], master=0, state="down")
    assert attached_to(a.host_ifname) is None
    attach(ns.fd, a)
    assert attached_to(a.host_ifname) == spec.name
    assert host_end(a.host_ifname)["up"] is True


def test_attach_moves_the_pair_to_a_new_namespace_of_the_container(scratch: Scratch) -> None:
    spec = scratch.bridge()
    old, new = scratch.netns(), scratch.netns()
    a = scratch.attachment(spec)
    attach(old.fd, a)
    attach(new.fd, a)  # the container was restarted: its namespace is another one
    assert "eth0" in inside(new)["links"]
    assert "eth0" not in inside(old)["links"]


def test_attach_refuses_a_bridge_that_does_not_exist(scratch: Scratch) -> None:
    ns = scratch.netns()
    a = Attachment(bridge=f"cbt{scratch.tag}none", host_ifname=f"cv-{scratch.tag}x", address=IPv4Interface("10.0.0.2/24"))
    with pytest.raises(NetworkError, match=r"bridge cbt.*none does not exist"):
        attach(ns.fd, a)
    assert not link_exists(a.host_ifname)


def test_an_attachment_refuses_a_gateway_outside_its_subnet() -> None:
    with pytest.raises(NetworkError, match=r"gateway 10.0.1.1 is outside 10.0.0.0/24"):
        Attachment(bridge="cb-x", host_ifname="cv-x", address=IPv4Interface("10.0.0.2/24"), gateway=ip_address("10.0.1.1"))  # type: ignore[arg-type]


def test_detach_removes_both_ends_and_does_nothing_when_they_are_gone(scratch: Scratch) -> None:
    spec = scratch.bridge()
    ns = scratch.netns()
    a = scratch.attachment(spec)
    attach(ns.fd, a)
    detach(a.host_ifname)
    assert not link_exists(a.host_ifname)
    assert "eth0" not in inside(ns)["links"]
    detach(a.host_ifname)


def test_detach_refuses_to_remove_a_link_that_is_not_a_veth(scratch: Scratch) -> None:
    spec = scratch.bridge()
    with pytest.raises(NetworkError, match="is not a veth \\(bridge\\): not removing it"):
        detach(spec.name)
    assert link_exists(spec.name)


def test_attached_to_is_none_for_a_link_that_does_not_exist() -> None:
    assert attached_to("cv-nonexistent") is None


def test_loopback_up_is_all_a_namespace_without_network_gets(scratch: Scratch) -> None:
    ns = scratch.netns()
    loopback_up(ns.fd)
    loopback_up(ns.fd)
    seen = inside(ns)
    assert seen["links"] == {"lo": (True, 65536, "00:00:00:00:00:00")}
    assert seen["defaults"] == []


def test_attach_replaces_a_leftover_link_that_has_the_container_ends_name(scratch: Scratch) -> None:
    spec = scratch.bridge()
    ns = scratch.netns()
    with netns_iproute(ns.fd) as ipr:
        ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": "stale0"})
    a = scratch.attachment(spec)
    attach(ns.fd, a)
    assert set(inside(ns)["links"]) == {"lo", "eth0"}  # the stale pair is gone, as a whole
    assert attached_to(a.host_ifname) == spec.name


def test_attach_refuses_a_bridge_name_that_is_another_kind_of_link(scratch: Scratch) -> None:
    spec = scratch.bridge()
    first_ns, second_ns = scratch.netns(), scratch.netns()
    first = scratch.attachment(spec)
    attach(first_ns.fd, first)
    second = scratch.attachment(spec, bridge=first.host_ifname)
    with pytest.raises(NetworkError, match=f"{first.host_ifname} is not a bridge \\(veth\\)"):
        attach(second_ns.fd, second)
    assert not link_exists(second.host_ifname)


def host_neighbours(bridge: str) -> dict[str, tuple[str, int]]:
    """The host's neighbour entries on `bridge`: address → (MAC, NUD state)."""
    with host_iproute() as ipr:
        index = ipr.link_lookup(ifname=bridge)[0]
        return {
            str(ip_address(n.get_attr("NDA_DST"))): (n.get_attr("NDA_LLADDR"), n["state"])
            for n in ipr.get_neighbours(ifindex=index)
            if n.get_attr("NDA_LLADDR")
        }


def test_the_host_knows_where_an_attached_namespace_is_without_asking(scratch: Scratch) -> None:
    # After a bridge is made anew (a heal), a packet sent before a container is back on it
    # leaves an unanswered ARP question that the kernel asks again only a second later.
    from engine.network import ensure_bridge, remove_bridge

    spec = scratch.bridge(ipv6=True)
    ns = scratch.netns()
    a = scratch.attachment(spec)  # no MAC given: the kernel's
    attach(ns.fd, a)
    mac = inside(ns)["links"]["eth0"][2]
    assert host_neighbours(spec.name)[str(a.address.ip)][0] == mac
    assert host_neighbours(spec.name)[str(a.address6.ip)][0] == mac
    remove_bridge(spec.name)
    ensure_bridge(spec)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # asks, unanswered
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, spec.name.encode())
        probe.sendto(b"?", (str(a.address.ip), 9))
    attach(ns.fd, a)
    known, state = host_neighbours(spec.name)[str(a.address.ip)]
    assert known == mac
    assert state not in (0x01, 0x20)  # neither INCOMPLETE nor FAILED
