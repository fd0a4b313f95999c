"""rtnetlink (NETLINK_ROUTE), the kernel's interface to links, addresses and routes, spoken
with nothing but the standard library: what bridge.py, veth.py, links.py and ipam.py ask of
it.

Hand-written rather than through pyroute2 (which the tests still use to check what we did):
pyroute2 0.9 loads its whole API on first use (~140 ms, every package of it) and runs an
asyncio event loop per request (~0.3 ms of Python each), which made plumbing a container
cost ~9 ms of the orchestrator's CPU. Here a request is a few struct.pack
calls, several requests travel in one sendmsg, and a handle is one socket.

Messages are the kernel's (include/uapi/linux/rtnetlink.h, if_link.h, if_addr.h): a netlink
header, a fixed body (ifinfomsg, ifaddrmsg, rtmsg), then attributes (type, length, value,
padded to 4 bytes; nested ones hold attributes).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_interface,
)
from typing import Final

from engine.network.errors import NetworkError

__all__ = [
    "IFA_F_NODAD",
    "IFF_UP",
    "Address",
    "Link",
    "NetlinkError",
    "Route",
    "Rtnl",
    "check",
]

IFF_UP: Final = 0x1
IFA_F_NODAD: Final = 0x02  # an IPv6 address usable at once, without duplicate detection
RT_TABLE_MAIN: Final = 254
RT_SCOPE_UNIVERSE: Final = 0

_NETLINK_ROUTE: Final = 0
_SIOCGIFINDEX: Final = 0x8933
# message types
_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 20, 21, 22
_RTM_NEWROUTE, _RTM_DELROUTE, _RTM_GETROUTE = 24, 25, 26
_RTM_NEWNEIGH = 28
# header flags
_F_REQUEST, _F_MULTI, _F_ACK, _F_DUMP_INTR = 0x1, 0x2, 0x4, 0x10
_F_DUMP = 0x300
_F_REPLACE, _F_EXCL, _F_CREATE = 0x100, 0x200, 0x400
# link attributes
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_LINK, _IFLA_MASTER = 1, 3, 4, 5, 10
_IFLA_LINKINFO, _IFLA_EXT_MASK, _IFLA_NET_NS_FD = 18, 29, 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_RTEXT_FILTER_SKIP_STATS: Final = 1 << 3
# address attributes
_IFA_ADDRESS, _IFA_LOCAL, _IFA_BROADCAST, _IFA_FLAGS = 1, 2, 4, 8
# route attributes and values
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_PRIORITY, _RTA_TABLE = 1, 4, 5, 6, 15
_RTPROT_BOOT, _RTN_UNICAST = 3, 1
# neighbour attributes and states
_NDA_DST, _NDA_LLADDR = 1, 2
_NUD_STALE: Final = 0x04

_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol,
#                                       scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")  # family, index, state, flags, type
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_RECEIVE = 1 << 18


class NetlinkError(NetworkError):
    """The kernel refused a request: `code` is the errno."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"cannot {what}: {os.strerror(code)}")
        self.code = code


@dataclass(frozen=True)
class Link:
    """A network interface as RTM_NEWLINK describes it. `peer`: IFLA_LINK, for a veth the
    index of its other end (in the other end's namespace)."""

    index: int
    name: str
    flags: int
    kind: str | None = None  # "bridge", "veth", … (None: a physical device)
    mtu: int = 0
    master: int = 0
    mac: str = ""
    peer: int = 0

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


@dataclass(frozen=True)
class Address:
    """An address of a link (scope: 0 universe, 253 link, 254 host)."""

    index: int
    interface: IPv4Interface | IPv6Interface
    scope: int


@dataclass(frozen=True)
class Route:
    """A route as RTM_NEWROUTE describes it (dst None with dst_len 0: a default route)."""

    family: int
    dst: IPv4Address | IPv6Address | None
    dst_len: int
    table: int
    gateway: IPv4Address | IPv6Address | None = None
    oif: int = 0
    priority: int | None = None


def _attr(kind: int, value: bytes) -> bytes:
    size = _ATTR.size + len(value)
    return _ATTR.pack(size, kind) + value + bytes(-size % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _name(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def _attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """The attributes in `data` from `offset` on (type → value; nested ones left packed)."""
    found: dict[int, bytes] = {}
    end = len(data)
    while offset + _ATTR.size <= end:
        size, kind = _ATTR.unpack_from(data, offset)
        if size < _ATTR.size:
            break
        found[kind & 0x3FFF] = bytes(data[offset + _ATTR.size : offset + size])
        offset += (size + 3) & ~3
    return found


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.split(b"\0", 1)[0].decode()


def _ip(family: int, value: bytes | None) -> IPv4Address | IPv6Address | None:
    if value is None:
        return None
    return IPv4Address(value) if family == socket.AF_INET else IPv6Address(value)


def _link(body: bytes) -> Link:
    _, _, index, flags, _ = _IFINFO.unpack_from(body)
    attrs = _attrs(body, _IFINFO.size)
    info = _attrs(attrs.get(_IFLA_LINKINFO, b""))
    mac = attrs.get(_IFLA_ADDRESS, b"")
    return Link(
        index=index,
        name=_text(attrs.get(_IFLA_IFNAME)) or "",
        flags=flags,
        kind=_text(info.get(_IFLA_INFO_KIND)),
        mtu=_U32.unpack(attrs[_IFLA_MTU])[0] if _IFLA_MTU in attrs else 0,
        master=_U32.unpack(attrs[_IFLA_MASTER])[0] if _IFLA_MASTER in attrs else 0,
        mac=":".join(f"{b:02x}" for b in mac),
        peer=_U32.unpack(attrs[_IFLA_LINK])[0] if _IFLA_LINK in attrs else 0,
    )


def _address(body: bytes) -> Address | None:
    family, prefixlen, _, scope, index = _IFADDR.unpack_from(body)
    attrs = _attrs(body, _IFADDR.size)
    value = attrs.get(_IFA_LOCAL, attrs.get(_IFA_ADDRESS))
    found = _ip(family, value)
    if found is None:
        return None
    return Address(index, ip_interface(f"{found}/{prefixlen}"), scope)


def _route(body: bytes) -> Route:
    family, dst_len, _, _, table, _, _, _, _ = _RTMSG.unpack_from(body)
    attrs = _attrs(body, _RTMSG.size)
    if _RTA_TABLE in attrs:
        table = _U32.unpack(attrs[_RTA_TABLE])[0]
    return Route(
        family=family,
        dst=_ip(family, attrs.get(_RTA_DST)),
        dst_len=dst_len,
        table=table,
        gateway=_ip(family, attrs.get(_RTA_GATEWAY)),
        oif=_U32.unpack(attrs[_RTA_OIF])[0] if _RTA_OIF in attrs else 0,
        priority=_U32.unpack(attrs[_RTA_PRIORITY])[0] if _RTA_PRIORITY in attrs else None,
    )


def _ifinfo(index: int = 0, up: bool | None = None) -> bytes:
    flags = IFF_UP if up else 0
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, IFF_UP if up is not None else 0)


def _route_body(
    family: int, gateway: IPv4Address | IPv6Address | None, oif: int, priority: int | None
) -> bytes:
    body = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, _RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                       _RTN_UNICAST, 0)  # fmt: skip
    body += _u32(_RTA_OIF, oif)
    if gateway is not None:
        body += _attr(_RTA_GATEWAY, gateway.packed)
    if priority is not None:
        body += _u32(_RTA_PRIORITY, priority)
    return body


class Rtnl:
    """A NETLINK_ROUTE socket and the requests made on it; it acts in the network namespace
    the socket was made in (by default the caller's: see netns.netns_rtnl for another)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self._sock = sock or socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE
        )
        self._sequence = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    # -- the exchange -------------------------------------------------------------------------

    def _send(self, requests: Iterable[tuple[int, int, bytes]]) -> list[int]:
        """Send (type, flags, body) requests in one datagram; their sequence numbers."""
        packet = bytearray()
        numbers = []
        for kind, flags, body in requests:
            self._sequence += 1
            numbers.append(self._sequence)
            packet += _HEADER.pack(_HEADER.size + len(body), kind, flags | _F_REQUEST,
                                   self._sequence, 0)  # fmt: skip
            packet += body
        self._sock.send(packet)
        return numbers

    def _messages(self) -> Iterator[tuple[int, int, int, bytes]]:
        """(type, flags, sequence, body) of each message the kernel sends next."""
        while True:
            data = self._sock.recv(_RECEIVE)
            offset = 0
            while offset + _HEADER.size <= len(data):
                size, kind, flags, sequence, _ = _HEADER.unpack_from(data, offset)
                if size < _HEADER.size:
                    return
                yield kind, flags, sequence, data[offset + _HEADER.size : offset + size]
                offset += (size + 3) & ~3

    def do(self, *requests: tuple[int, int, bytes]) -> list[int]:
        """Send requests (type, flags, body), each asking for an acknowledgement, and wait for
        all of them; the errno of each (0: done). Several requests cost one system call."""
        if not requests:
            return []
        numbers = self._send((kind, flags | _F_ACK, body) for kind, flags, body in requests)
        pending = dict.fromkeys(numbers, 0)
        answered = 0
        for kind, _, sequence, body in self._messages():
            if kind == _NLMSG_ERROR and sequence in pending:
                pending[sequence] = -struct.unpack_from("=i", body)[0]
                answered += 1
                if answered == len(numbers):
                    break
        return [pending[n] for n in numbers]

    def request(self, what: str, kind: int, flags: int, body: bytes) -> None:
        """One request; NetlinkError saying `what` when the kernel refuses it."""
        check(what, self.do((kind, flags, body))[0])

    def _dump(self, kind: int, body: bytes) -> list[bytes]:
        """The bodies of the answers to a dump request (retried when a change interrupted
        it, which the kernel flags)."""
        for _ in range(10):
            (number,) = self._send([(kind, _F_DUMP, body)])
            found: list[bytes] = []
            interrupted = False
            for answer, flags, sequence, payload in self._messages():
                if sequence != number:
                    continue
                interrupted |= bool(flags & _F_DUMP_INTR)
                if answer == _NLMSG_DONE:
                    break
                if answer == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    check("read the kernel's tables", code)
                    break
                found.append(payload)
            if not interrupted:
                return found
        raise NetlinkError(errno.EINTR, "read the kernel's tables: they kept changing")

    # -- links --------------------------------------------------------------------------------

    def index(self, name: str) -> int | None:
        """The index of link `name`, or None when there is none: the SIOCGIFINDEX ioctl on
        this socket, which the kernel answers for the socket's namespace."""
        request = name.encode().ljust(16, b"\0") + bytes(24)  # struct ifreq
        try:
            answer = fcntl.ioctl(self._sock.fileno(), _SIOCGIFINDEX, request)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        index: int = struct.unpack_from("i", answer, 16)[0]
        return index

    def link(self, name: str | None = None, index: int = 0) -> Link | None:
        """Link `name` (or number `index`), or None when there is none."""
        body = _ifinfo(index) + _u32(_IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS)
        if name is not None:
            body += _name(_IFLA_IFNAME, name)
        self._send([(_RTM_GETLINK, 0, body)])
        for kind, _, _, payload in self._messages():
            if kind == _NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code in (errno.ENODEV, errno.EINVAL):
                    return None
                raise NetlinkError(code, f"look up link {name or index}")
            if kind == _RTM_NEWLINK:
                return _link(payload)
        return None  # pragma: no cover - the kernel always answers

    def links(self) -> list[Link]:
        body = _ifinfo() + _u32(_IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS)
        return [_link(b) for b in self._dump(_RTM_GETLINK, body)]

    def add_bridge(self, name: str, mtu: int, mac: str) -> None:
        body = (_ifinfo() + _name(_IFLA_IFNAME, name) + _u32(_IFLA_MTU, mtu)
                + _attr(_IFLA_ADDRESS, _mac_bytes(mac))
                + _attr(_IFLA_LINKINFO, _name(_IFLA_INFO_KIND, "bridge")))  # fmt: skip
        self.request(f"create bridge {name}", _RTM_NEWLINK, _F_CREATE | _F_EXCL, body)

    def add_veth(
        self,
        name: str,
        peer: str,
        *,
        peer_netns: int,
        mtu: int,
        master: int | None = None,
        peer_mac: str | None = None,
    ) -> None:
        """A veth pair: this end `name` up (on bridge `master` when given), the other `peer`
        made in the namespace `peer_netns` (an fd), down: the kernel refuses to bring it up
        from here."""
        peer_body = (_ifinfo() + _name(_IFLA_IFNAME, peer) + _u32(_IFLA_MTU, mtu)
                     + _u32(_IFLA_NET_NS_FD, peer_netns))  # fmt: skip
        if peer_mac is not None:
            peer_body += _attr(_IFLA_ADDRESS, _mac_bytes(peer_mac))
        info = _name(_IFLA_INFO_KIND, "veth") + _attr(
            _IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer_body)
        )
        body = _ifinfo(up=True) + _name(_IFLA_IFNAME, name) + _u32(_IFLA_MTU, mtu)
        if master is not None:
            body += _u32(_IFLA_MASTER, master)
        body += _attr(_IFLA_LINKINFO, info)
        self.request(f"create veth pair {name}/{peer}", _RTM_NEWLINK, _F_CREATE | _F_EXCL, body)

    @staticmethod
    def set_link_request(
        index: int,
        *,
        up: bool | None = None,
        mtu: int | None = None,
        master: int | None = None,
        mac: str | None = None,
    ) -> tuple[int, int, bytes]:
        """The request that changes what is given of link `index` (for `do`)."""
        body = _ifinfo(index, up)
        if mtu is not None:
            body += _u32(_IFLA_MTU, mtu)
        if master is not None:
            body += _u32(_IFLA_MASTER, master)
        if mac is not None:
            body += _attr(_IFLA_ADDRESS, _mac_bytes(mac))
        return _RTM_NEWLINK, 0, body

    def set_link(self, what: str, index: int, **changes: object) -> None:
        self.request(what, *self.set_link_request(index, **changes))  # type: ignore[arg-type]

    def delete_link(self, what: str, index: int) -> None:
        self.request(what, _RTM_DELLINK, 0, _ifinfo(index))

    # -- addresses ----------------------------------------------------------------------------

    def addresses(self, family: int = socket.AF_UNSPEC) -> list[Address]:
        found = (_address(b) for b in self._dump(_RTM_GETADDR, _IFADDR.pack(family, 0, 0, 0, 0)))
        return [a for a in found if a is not None]

    @staticmethod
    def address_request(
        add: bool, index: int, address: IPv4Interface | IPv6Interface
    ) -> tuple[int, int, bytes]:
        """The request that adds (IPv6: without duplicate detection) or removes `address`."""
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        flags = IFA_F_NODAD if address.version == 6 and add else 0
        body = _IFADDR.pack(family, address.network.prefixlen, flags, RT_SCOPE_UNIVERSE, index)
        body += _attr(_IFA_LOCAL, address.ip.packed) + _attr(_IFA_ADDRESS, address.ip.packed)
        if add and address.version == 4 and address.network.prefixlen < 31:
            body += _attr(_IFA_BROADCAST, address.network.broadcast_address.packed)
        if add:
            return _RTM_NEWADDR, _F_CREATE | _F_EXCL, body
        return _RTM_DELADDR, 0, body

    # -- neighbours ---------------------------------------------------------------------------

    @staticmethod
    def neighbour_request(
        index: int, address: IPv4Address | IPv6Address, mac: str
    ) -> tuple[int, int, bytes]:
        """The request that tells link `index` that `address` is at `mac` (replacing what it
        thought: a stale entry, used at once and checked again by the kernel later)."""
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        body = _NDMSG.pack(family, index, _NUD_STALE, 0, 0)
        body += _attr(_NDA_DST, address.packed) + _attr(_NDA_LLADDR, _mac_bytes(mac))
        return _RTM_NEWNEIGH, _F_CREATE | _F_REPLACE, body

    # -- routes -------------------------------------------------------------------------------

    def routes(self, family: int) -> list[Route]:
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        return [_route(b) for b in self._dump(_RTM_GETROUTE, body)]

    @staticmethod
    def default_route_request(
        add: bool,
        family: int,
        gateway: IPv4Address | IPv6Address | None,
        oif: int,
        priority: int | None = None,
    ) -> tuple[int, int, bytes]:
        """The request that makes (replacing one there) or removes the default route of
        `family` through link `oif` via `gateway`."""
        body = _route_body(family, gateway, oif, priority)
        if add:
            return _RTM_NEWROUTE, _F_CREATE | _F_REPLACE, body
        return _RTM_DELROUTE, 0, body


def check(what: str, code: int) -> None:
    """NetlinkError when `code` (an errno from Rtnl.do) says the kernel refused `what`."""
    if code:
        raise NetlinkError(code, what)
