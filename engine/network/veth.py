"""A container's link to a stack network: a veth pair whose host end is a port of the
network's bridge and whose other end is made directly inside the container's network
namespace (moving a link between namespaces afterwards makes the kernel wait), with the
container's address, MTU and default route set from there; level-triggered like the bridge.

The container end's IPv6 address is added without duplicate address detection (IFA_F_NODAD),
so it works at once and adds nothing to the start of a container. An attachment without a
gateway (an internal network, or every network but the one that carries the default route)
leaves the container no route through it beyond its subnet.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
)
from typing import Any, Final

from engine.network.errors import NetworkError
from engine.network.links import remove_link, set_addresses, set_default_route
from engine.network.names import check_ifname, name_tag
from engine.network.netns import netns_rtnl
from engine.network.rtnl import Link, NetlinkError, Rtnl, check

__all__ = [
    "Attachment",
    "attach",
    "attached_to",
    "detach",
    "link_exists",
    "loopback_up",
    "veth_name",
]

LOOPBACK_INDEX: Final = 1  # the kernel's LOOPBACK_IFINDEX, in every namespace
_MAX_INDEX: Final = 999


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """A container on a network as it should be: the bridge, the pair's two names, and the
    container end's settings. `gateway` None: no default route through this network."""

    bridge: str
    host_ifname: str
    ifname: str = "eth0"
    address: IPv4Interface
    gateway: IPv4Address | None = None
    mtu: int = 1500
    mac: str | None = None
    address6: IPv6Interface | None = None
    gateway6: IPv6Address | None = None

    def __post_init__(self) -> None:
        check_ifname(self.host_ifname)
        check_ifname(self.ifname)
        if self.gateway is not None and self.gateway not in self.address.network:
            raise NetworkError(f"gateway {self.gateway} is outside {self.address.network}")
        if self.gateway6 is not None and (
            self.address6 is None or self.gateway6 not in self.address6.network
        ):
            raise NetworkError(f"IPv6 gateway {self.gateway6} is outside {self.address6}")

    @classmethod
    def from_plain(cls, doc: Mapping[str, Any]) -> Attachment:
        """The attachment `spec.plain` made `doc` of (addresses as strings)."""
        values = dict(doc)
        for key in ("address", "address6"):
            if values.get(key) is not None:
                values[key] = ip_interface(values[key])
        for key in ("gateway", "gateway6"):
            if values.get(key) is not None:
                values[key] = ip_address(values[key])
        return cls(**values)

    @property
    def addresses(self) -> tuple[IPv4Interface | IPv6Interface, ...]:
        return (self.address,) if self.address6 is None else (self.address, self.address6)


def veth_name(container_id: str, index: int) -> str:
    """The host end of the veth pair of a container's `index`th network (0 to 999): "cv-", 40
    bits of a hash of the container's id (the same for all its pairs), "-" and the index, e.g.
    cv-k3x9q2ab-0."""
    if not 0 <= index <= _MAX_INDEX:
        raise NetworkError(f"network index {index} of {container_id} is not within 0-{_MAX_INDEX}")
    return f"cv-{name_tag(container_id)}-{index}"


def attach(netns_fd: int, attachment: Attachment) -> None:
    """Connect the network namespace `netns_fd` to `attachment.bridge` as `attachment` says,
    making or fixing whatever is missing or different."""
    a = attachment
    with Rtnl() as host, netns_rtnl(netns_fd) as inside:
        bridge = host.index(a.bridge)
        if bridge is None:
            raise NetworkError(f"bridge {a.bridge} does not exist (ensure the network first)")
        container_end = None
        if host.index(a.host_ifname) is not None:
            container_end = _existing_pair(host, inside, a, bridge)
        if container_end is None:  # the usual case: a new container, nothing to look at
            _make_pair(host, inside, netns_fd, a, bridge)
            container_end = _configure_new_end(inside, a)
        else:
            _fix_container_end(inside, container_end, a)
            inside.set_link("bring lo up", LOOPBACK_INDEX, up=True)
            set_addresses(inside, container_end.index, a.ifname, a.addresses)
            for family, gateway in ((socket.AF_INET, a.gateway), (socket.AF_INET6, a.gateway6)):
                set_default_route(inside, container_end.index, a.ifname, family, gateway)
        _introduce(host, bridge, a, a.mac or container_end.mac)


def _introduce(host: Rtnl, bridge: int, a: Attachment, mac: str) -> None:
    """The host learns where the container's addresses are (its neighbour entries on the
    bridge) instead of asking: a question asked while the pair was being made, as when a
    deleted bridge is healed under traffic, goes unanswered, and the kernel asks again only a
    second later, holding the packets meanwhile."""
    addresses = [a.address.ip] + ([a.address6.ip] if a.address6 is not None else [])
    requests = [Rtnl.neighbour_request(bridge, address, mac) for address in addresses]
    for address, code in zip(addresses, host.do(*requests), strict=True):
        check(f"tell {a.bridge} that {address} is at {mac}", code)


def _configure_new_end(inside: Rtnl, a: Attachment) -> Link:
    """The container end just made up, loopback up, the addresses and the default routes:
    requests in one datagram, answered in order. The end as it was made."""
    end = inside.link(a.ifname)
    if end is None:
        raise NetworkError(f"{a.ifname} vanished from the namespace as it was made")
    index = end.index
    requests = [
        (f"bring {a.ifname} up", Rtnl.set_link_request(index, up=True)),
        ("bring lo up", Rtnl.set_link_request(LOOPBACK_INDEX, up=True)),
    ]
    for address in a.addresses:
        requests.append((f"add address {address} to {a.ifname}",
                         Rtnl.address_request(True, index, address)))  # fmt: skip
    for family, gateway in ((socket.AF_INET, a.gateway), (socket.AF_INET6, a.gateway6)):
        if gateway is not None:
            requests.append((f"add a default route via {gateway} on {a.ifname}",
                             Rtnl.default_route_request(True, family, gateway, index)))  # fmt: skip
    for (what, _), code in zip(requests, inside.do(*(r for _, r in requests)), strict=True):
        check(what, code)
    return end


def _existing_pair(host: Rtnl, inside: Rtnl, a: Attachment, bridge: int) -> Link | None:
    """The container end of the pair whose host end is already there, its host end fixed;
    None (and the host end removed) when its other end is not in this namespace."""
    _require_bridge(host, a.bridge)
    host_end = host.link(a.host_ifname)
    if host_end is None:
        return None
    if host_end.kind != "veth":
        raise NetworkError(f"{a.host_ifname} exists and is not a veth ({host_end.kind})")
    container_end = _peer_inside(inside, a.ifname, host_end.index)
    if container_end is None:  # a pair to an earlier namespace of the container
        host.delete_link(f"remove {a.host_ifname}", host_end.index)
    else:
        _fix_host_end(host, host_end, a, bridge)
    return container_end


def _require_bridge(host: Rtnl, name: str) -> None:
    link = host.link(name)
    if link is None:
        raise NetworkError(f"bridge {name} does not exist (ensure the network first)")
    if link.kind != "bridge":
        raise NetworkError(f"{name} is not a bridge ({link.kind})")


def _peer_inside(inside: Rtnl, ifname: str, host_index: int) -> Link | None:
    """Link `ifname` of the namespace if it is the other end of host link `host_index`; a link
    of that name that is not is removed (it is a leftover of an earlier pair)."""
    link = inside.link(ifname)
    if link is None:
        return None
    if link.kind == "veth" and link.peer == host_index:
        return link
    inside.delete_link(f"remove the leftover {ifname} of the namespace", link.index)
    return None


def _make_pair(host: Rtnl, inside: Rtnl, netns_fd: int, a: Attachment, bridge: int) -> None:
    """Create the pair, its container end directly in the namespace, the host end up and on
    the bridge, both with the MTU (and the container end with the MAC address)."""
    for attempt in (1, 2):
        try:
            host.add_veth(a.host_ifname, a.ifname, peer_netns=netns_fd, mtu=a.mtu,
                          master=bridge, peer_mac=a.mac)  # fmt: skip
            return
        except NetlinkError as exc:
            leftover = inside.index(a.ifname) if exc.code == errno.EEXIST else None
            if attempt == 2 or leftover is None:
                if exc.code != errno.EEXIST:
                    _require_bridge(host, a.bridge)  # the likely reason, said plainly
                raise
            inside.delete_link(f"remove the leftover {a.ifname} of the namespace", leftover)


def _fix_host_end(host: Rtnl, link: Link, a: Attachment, bridge: int) -> None:
    changes: dict[str, Any] = {}
    if link.master != bridge:
        changes["master"] = bridge
    if link.mtu != a.mtu:
        changes["mtu"] = a.mtu
    if not link.up:
        changes["up"] = True
    if changes:
        host.set_link(f"set up {a.host_ifname}", link.index, **changes)


def _fix_container_end(inside: Rtnl, link: Link, a: Attachment) -> None:
    changes: dict[str, Any] = {}
    if link.mtu != a.mtu:
        changes["mtu"] = a.mtu
    if a.mac is not None and link.mac.lower() != a.mac.lower():
        changes["mac"] = a.mac
    if not link.up:
        changes["up"] = True
    if changes:
        inside.set_link(f"set up {a.ifname}", link.index, **changes)


def detach(host_ifname: str) -> None:
    """Remove the veth pair whose host end is `host_ifname` (both ends go); nothing to do when
    it is gone."""
    remove_link(host_ifname, "veth", host_ifname)


def loopback_up(netns_fd: int) -> None:
    """Bring up the loopback of namespace `netns_fd` (all a `network_mode: none` container
    gets)."""
    with netns_rtnl(netns_fd) as inside:
        inside.set_link("bring lo up", LOOPBACK_INDEX, up=True)


def link_exists(name: str) -> bool:
    """Whether the host has a link called `name`."""
    with Rtnl() as host:
        return host.index(name) is not None


def attached_to(host_ifname: str) -> str | None:
    """The bridge whose port `host_ifname` is, or None (no such link, or no bridge)."""
    with Rtnl() as host:
        link = host.link(host_ifname)
        if link is None or not link.master:
            return None
        bridge = host.link(index=link.master)
        return bridge.name if bridge is not None else None
