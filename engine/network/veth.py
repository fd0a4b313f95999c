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
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import TYPE_CHECKING, Any, Final

from engine.network.errors import NetworkError
from engine.network.names import check_ifname, name_tag
from engine.network.netns import netns_iproute
from engine.network.rtnl import (
    IFF_UP,
    host_iproute,
    kind_of,
    link_by_name,
    link_index,
    netlink_call,
    remove_link,
    set_addresses,
    set_default_route,
)

if TYPE_CHECKING:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

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
    with host_iproute() as host, netns_iproute(netns_fd) as inside:
        bridge = link_index(host, a.bridge)
        if bridge is None:
            raise NetworkError(f"bridge {a.bridge} does not exist (ensure the network first)")
        container_end = None
        if link_index(host, a.host_ifname) is not None:
            container_end = _existing_pair(host, inside, a, bridge)
        if container_end is None:  # the usual case: a new container, nothing to look at
            _make_pair(host, inside, netns_fd, a, bridge)
            index = link_index(inside, a.ifname)
            if index is None:
                raise NetworkError(f"{a.ifname} vanished from the namespace as it was made")
            netlink_call(f"bring {a.ifname} up", inside.link, "set", index=index, state="up")
        else:
            index = container_end["index"]
            _fix_container_end(inside, container_end, a)
        fresh = container_end is None
        netlink_call("bring lo up", inside.link, "set", index=LOOPBACK_INDEX, state="up")
        set_addresses(inside, index, a.ifname, a.addresses, fresh=fresh)
        set_default_route(inside, index, a.ifname, socket.AF_INET, a.gateway, fresh=fresh)
        if a.address6 is not None or not fresh:
            set_default_route(inside, index, a.ifname, socket.AF_INET6, a.gateway6, fresh=fresh)


def _existing_pair(host: IPRoute, inside: IPRoute, a: Attachment, bridge: int) -> Any | None:
    """The container end of the pair whose host end is already there, its host end fixed;
    None (and the host end removed) when its other end is not in this namespace."""
    _require_bridge(host, a.bridge)
    host_end = link_by_name(host, a.host_ifname)
    if host_end is None:
        return None
    if kind_of(host_end) != "veth":
        raise NetworkError(f"{a.host_ifname} exists and is not a veth ({kind_of(host_end)})")
    container_end = _peer_inside(inside, a.ifname, host_end["index"])
    if container_end is None:  # a pair to an earlier namespace of the container
        netlink_call(f"remove {a.host_ifname}", host.link, "del", index=host_end["index"])
    else:
        _fix_host_end(host, host_end, a, bridge)
    return container_end


def _require_bridge(host: IPRoute, name: str) -> None:
    link = link_by_name(host, name)
    if link is None:
        raise NetworkError(f"bridge {name} does not exist (ensure the network first)")
    if kind_of(link) != "bridge":
        raise NetworkError(f"{name} is not a bridge ({kind_of(link)})")


def _peer_inside(inside: IPRoute, ifname: str, host_index: int) -> Any | None:
    """Link `ifname` of the namespace if it is the other end of host link `host_index`; a link
    of that name that is not is removed (it is a leftover of an earlier pair)."""
    link = link_by_name(inside, ifname)
    if link is None:
        return None
    if kind_of(link) == "veth" and link.get("link") == host_index:
        return link
    netlink_call(
        f"remove the leftover {ifname} of the namespace", inside.link, "del", index=link["index"]
    )
    return None


def _make_pair(host: IPRoute, inside: IPRoute, netns_fd: int, a: Attachment, bridge: int) -> None:
    """Create the pair, its container end directly in the namespace, its host end up on the
    bridge, both with the MTU (and the container end with the MAC address)."""
    peer: dict[str, Any] = {"ifname": a.ifname, "net_ns_fd": netns_fd, "mtu": a.mtu}
    if a.mac is not None:
        peer["address"] = a.mac
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    for attempt in (1, 2):
        try:
            host.link(
                "add",
                ifname=a.host_ifname,
                kind="veth",
                mtu=a.mtu,
                master=bridge,
                state="up",
                peer=peer,
            )
            return
        except NetlinkError as exc:
            leftover = link_index(inside, a.ifname) if exc.code == errno.EEXIST else None
            if attempt == 2 or leftover is None:
                if exc.code != errno.EEXIST:
                    _require_bridge(host, a.bridge)  # the likely reason, said plainly
                raise NetworkError(
                    f"cannot create veth pair {a.host_ifname}/{a.ifname}: {exc.args[1]}"
                ) from exc
            netlink_call(
                f"remove the leftover {a.ifname} of the namespace",
                inside.link,
                "del",
                index=leftover,
            )


def _fix_host_end(host: IPRoute, link: Any, a: Attachment, bridge: int) -> None:
    changes: dict[str, Any] = {}
    if link.get("master") != bridge:
        changes["master"] = bridge
    if link.get("mtu") != a.mtu:
        changes["mtu"] = a.mtu
    if not link["flags"] & IFF_UP:
        changes["state"] = "up"
    if changes:
        netlink_call(f"set up {a.host_ifname}", host.link, "set", index=link["index"], **changes)


def _fix_container_end(inside: IPRoute, link: Any, a: Attachment) -> None:
    changes: dict[str, Any] = {}
    if link.get("mtu") != a.mtu:
        changes["mtu"] = a.mtu
    if a.mac is not None and str(link.get("address")).lower() != a.mac.lower():
        changes["address"] = a.mac
    if not link["flags"] & IFF_UP:
        changes["state"] = "up"
    if changes:
        netlink_call(f"set up {a.ifname}", inside.link, "set", index=link["index"], **changes)


def detach(host_ifname: str) -> None:
    """Remove the veth pair whose host end is `host_ifname` (both ends go); nothing to do when
    it is gone."""
    remove_link(host_ifname, "veth", host_ifname)


def loopback_up(netns_fd: int) -> None:
    """Bring up the loopback of namespace `netns_fd` (all a `network_mode: none` container
    gets)."""
    with netns_iproute(netns_fd) as inside:
        netlink_call("bring lo up", inside.link, "set", index=LOOPBACK_INDEX, state="up")


def link_exists(name: str) -> bool:
    """Whether the host has a link called `name`."""
    with host_iproute() as host:
        return link_by_name(host, name) is not None


def attached_to(host_ifname: str) -> str | None:
    """The bridge whose port `host_ifname` is, or None (no such link, or no bridge)."""
    with host_iproute() as host:
        link = link_by_name(host, host_ifname)
        master = None if link is None else link.get("master")
        if not master:
            return None
        found = host.link("get", index=master)
        return str(found[0].get("ifname")) if found else None
