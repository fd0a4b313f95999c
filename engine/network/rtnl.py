"""What bridge.py and veth.py share of rtnetlink (through pyroute2, imported on first use):
a handle on the host's namespace, finding a link by name, and making the addresses and the
default routes of one link equal to the wanted ones."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import socket
import struct
from collections.abc import Iterable, Iterator
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
)
from typing import TYPE_CHECKING, Any, Final

from engine.network.errors import NetworkError

if TYPE_CHECKING:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

__all__ = [
    "IFA_F_NODAD",
    "IFF_UP",
    "host_iproute",
    "kind_of",
    "link_by_name",
    "link_index",
    "netlink_call",
    "remove_link",
    "set_addresses",
    "set_default_route",
]

IFF_UP: Final = 0x1
IFA_F_NODAD: Final = 0x02  # an IPv6 address usable at once, without duplicate detection
_SIOCGIFINDEX: Final = 0x8933
_RT_TABLE_MAIN: Final = 254
_RT_SCOPE_UNIVERSE: Final = 0

Interface = IPv4Interface | IPv6Interface


@contextlib.contextmanager
def host_iproute() -> Iterator[IPRoute]:
    """A pyroute2 IPRoute on the calling process's own network namespace."""
    from pyroute2 import IPRoute

    handle = IPRoute(groups=0)  # no notifications: only answers to our requests
    try:
        yield handle
    finally:
        handle.close()


def netlink_call(what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
    """`method(*args, **kwargs)`, a pyroute2 request; a refusal becomes a NetworkError that
    says `what` was being done."""
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    try:
        return method(*args, **kwargs)
    except NetlinkError as exc:
        raise NetworkError(f"cannot {what}: {exc.args[1] if len(exc.args) > 1 else exc}") from exc


def link_by_name(ipr: IPRoute, name: str) -> Any | None:
    """The RTM_NEWLINK message of link `name`, or None when there is none."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise NetworkError(f"cannot look up link {name}: {exc.args[1]}") from exc


def link_index(ipr: IPRoute, name: str) -> int | None:
    """The index of link `name` in the namespace of `ipr`, or None when there is none: the
    SIOCGIFINDEX ioctl on the handle's netlink socket, which the kernel answers for the
    socket's namespace in microseconds (a netlink request and its parsing take ~0.3 ms)."""
    request = name.encode().ljust(16, b"\0") + bytes(24)  # struct ifreq
    try:
        answer = fcntl.ioctl(ipr.fileno(), _SIOCGIFINDEX, request)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise NetworkError(f"cannot look up link {name}: {exc.strerror}") from exc
    index: int = struct.unpack_from("i", answer, 16)[0]
    return index


def kind_of(link: Any) -> str | None:
    """The kind of a link message: 'bridge', 'veth', … (None for a physical device)."""
    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return str(kind) if kind is not None else None


def remove_link(name: str, kind: str, what: str) -> None:
    """Remove the host's link `name`, which must be of `kind` (else NetworkError: it is not
    ours to remove); nothing to do when it is gone, also when it went while we acted."""
    with host_iproute() as ipr:
        link = link_by_name(ipr, name)
        if link is None:
            return
        if kind_of(link) != kind:
            raise NetworkError(f"{name} is not a {kind} ({kind_of(link)}): not removing it")
        try:
            netlink_call(f"remove {what}", ipr.link, "del", index=link["index"])
        except NetworkError:
            if link_by_name(ipr, name) is not None:
                raise


def set_addresses(
    ipr: IPRoute, index: int, name: str, wanted: Iterable[Interface], fresh: bool = False
) -> None:
    """Make the IPv4 and global IPv6 addresses of link `index` exactly `wanted` (link-local
    IPv6 addresses are the kernel's and stay). IPv6 ones are added without duplicate address
    detection, so they work at once. `fresh`: the link was just made and has none yet."""
    wanted = set(wanted)
    present: set[Interface] = set()
    for message in () if fresh else ipr.addr("dump", index=index):
        if message["index"] != index:
            continue
        if message["family"] == socket.AF_INET6 and message["scope"] != _RT_SCOPE_UNIVERSE:
            continue
        found = ip_interface(f"{message.get('address')}/{message['prefixlen']}")
        if found in wanted:
            present.add(found)
        else:
            netlink_call(
                f"remove address {found} from {name}",
                ipr.addr,
                "del",
                index=index,
                address=str(found.ip),
                prefixlen=found.network.prefixlen,
            )
    for address in sorted(wanted - present, key=str):
        extra = {"flags": IFA_F_NODAD} if address.version == 6 else {}
        netlink_call(
            f"add address {address} to {name}",
            ipr.addr,
            "add",
            index=index,
            address=str(address.ip),
            prefixlen=address.network.prefixlen,
            **extra,
        )


def set_default_route(
    ipr: IPRoute,
    index: int,
    name: str,
    family: int,
    gateway: IPv4Address | IPv6Address | None,
    fresh: bool = False,
) -> None:
    """Make the default routes of `family` through link `index` (main table) be one via
    `gateway`, or none at all when `gateway` is None. `fresh`: the link was just made, so
    there is nothing to look at first."""
    dst = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
    if not fresh:
        current = [
            route
            for route in ipr.route("dump", family=family)
            if route["dst_len"] == 0
            and route["table"] == _RT_TABLE_MAIN
            and route.get("oif") == index
        ]
        via = [r.get("gateway") for r in current]
        if gateway is not None and [ip_address(v) if v else None for v in via] == [gateway]:
            return
        for route in current:
            match = {
                key: value
                for key, value in (
                    ("gateway", route.get("gateway")),
                    ("priority", route.get("priority")),
                )
                if value is not None
            }
            with contextlib.suppress(NetworkError):  # gone meanwhile: what was wanted
                netlink_call(
                    f"remove the default route of {name}",
                    ipr.route,
                    "del",
                    dst=dst,
                    oif=index,
                    family=family,
                    **match,
                )
    if gateway is not None:
        netlink_call(
            f"add a default route via {gateway} on {name}",
            ipr.route,
            "replace",
            dst=dst,
            gateway=str(gateway),
            oif=index,
            family=family,
        )
