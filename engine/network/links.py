"""What bridge.py and veth.py share, level-triggered: a link's addresses and default routes
made what they should be, and a link of a given kind removed."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from engine.network.errors import NetworkError
from engine.network.rtnl import RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, NetlinkError, Rtnl, check

__all__ = ["remove_link", "set_addresses", "set_default_route"]


def remove_link(name: str, kind: str, what: str) -> None:
    """Remove the host's link `name`, which must be of `kind` (else NetworkError: it is not
    ours to remove); nothing to do when it is gone, also when it went while we acted."""
    with Rtnl() as rtnl:
        link = rtnl.link(name)
        if link is None:
            return
        if link.kind != kind:
            raise NetworkError(f"{name} is not a {kind} ({link.kind}): not removing it")
        try:
            rtnl.delete_link(f"remove {what}", link.index)
        except NetlinkError:
            if rtnl.link(name) is not None:
                raise


def set_addresses(
    rtnl: Rtnl, index: int, name: str, wanted: Iterable[IPv4Interface | IPv6Interface]
) -> None:
    """Make the IPv4 and global IPv6 addresses of link `index` exactly `wanted` (link-local
    IPv6 addresses are the kernel's and stay). IPv6 ones are added without duplicate address
    detection, so they work at once."""
    wanted = set(wanted)
    present: set[IPv4Interface | IPv6Interface] = set()
    changes = []
    for found in rtnl.addresses():
        if found.index != index:
            continue
        if found.interface.version == 6 and found.scope != RT_SCOPE_UNIVERSE:
            continue
        if found.interface in wanted:
            present.add(found.interface)
        else:
            changes.append((f"remove address {found.interface} from {name}",
                            Rtnl.address_request(False, index, found.interface)))  # fmt: skip
    for address in sorted(wanted - present, key=str):
        changes.append((f"add address {address} to {name}",
                        Rtnl.address_request(True, index, address)))  # fmt: skip
    for (what, _), code in zip(changes, rtnl.do(*(r for _, r in changes)), strict=True):
        check(what, code)


def set_default_route(
    rtnl: Rtnl,
    index: int,
    name: str,
    family: int,
    gateway: IPv4Address | IPv6Address | None,
) -> None:
    """Make the default routes of `family` through link `index` (main table) be one via
    `gateway`, or none at all when `gateway` is None."""
    current = [
        route
        for route in rtnl.routes(family)
        if route.dst_len == 0 and route.table == RT_TABLE_MAIN and route.oif == index
    ]
    if gateway is not None and [r.gateway for r in current] == [gateway]:
        return
    for route in current:  # gone meanwhile: what was wanted
        rtnl.do(Rtnl.default_route_request(False, family, route.gateway, index, route.priority))
    if gateway is not None:
        what = f"add a default route via {gateway} on {name}"
        check(what, rtnl.do(Rtnl.default_route_request(True, family, gateway, index))[0])
