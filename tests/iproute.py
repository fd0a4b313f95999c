"""pyroute2 handles for tests: what the engine did to links, addresses and routes is read
back through another implementation of rtnetlink than the engine's own (engine/network/
rtnl.py), and drift is caused through it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from pyroute2 import IPRoute  # type: ignore[import-untyped]

from engine.network.netns import netns_socket

__all__ = ["host_iproute", "link_index", "netns_iproute"]


@contextlib.contextmanager
def host_iproute() -> Iterator[Any]:
    """A pyroute2 IPRoute on the test process's own network namespace."""
    handle = IPRoute(groups=0)
    try:
        yield handle
    finally:
        handle.close()


@contextlib.contextmanager
def netns_iproute(netns_fd: int) -> Iterator[Any]:
    """A pyroute2 IPRoute whose requests act inside the network namespace `netns_fd`."""
    sock = netns_socket(netns_fd, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
    handle = IPRoute(use_socket=sock, groups=0)
    try:
        yield handle
    finally:
        handle.close()


def link_index(ipr: Any, name: str) -> int | None:
    """The index of link `name` in the namespace of `ipr`, or None."""
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None
