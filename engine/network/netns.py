"""Sockets, and so netlink handles, that live in another network namespace, made without a
helper process.

A socket belongs for its whole life to the network namespace of the thread that created it.
So a short-lived thread enters the target namespace (setns(2) with CLONE_NEWNET changes the
namespace of the calling thread only, and is allowed in a multi-threaded process, unlike a
mount or user namespace), creates the socket, goes back, and ends; the caller then uses the
socket from any thread. (pyroute2's `netns=` support forks a process per handle, ~20 ms);
this costs a thread start (~0.2 ms). A process of one thread enters and comes back itself.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from engine.linux import CLONE_NEWNET, setns
from engine.network.errors import NetworkError
from engine.network.rtnl import Rtnl

__all__ = ["netns_rtnl", "netns_socket", "open_netns", "run_in_netns"]

_T = TypeVar("_T")
_NETLINK_ROUTE = 0


def open_netns(pid: int) -> int:
    """An fd on the network namespace of process `pid` (it keeps the namespace alive while
    open; close it when done)."""
    try:
        return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetworkError(f"cannot open the network namespace of process {pid}: {exc}") from exc


def run_in_netns(netns_fd: int, function: Callable[[], _T]) -> _T:
    """Call `function` inside the network namespace `netns_fd` and return what it returned
    (or raise what it raised). Whatever it creates there (sockets) stays in that namespace;
    the calling thread is back in its own when this returns. In a process of several threads
    it runs in a new thread, so the caller's never leaves its namespace."""
    if len(os.listdir("/proc/self/task")) == 1:
        return _entered(netns_fd, function)
    results: list[_T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            results.append(_entered(netns_fd, function))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=body, name="netns", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def _entered(netns_fd: int, function: Callable[[], _T]) -> _T:
    """`function()` with the calling thread in namespace `netns_fd`, then back in its own."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            setns(netns_fd, CLONE_NEWNET)
        except OSError as exc:
            raise NetworkError(
                f"cannot enter network namespace fd {netns_fd}: {exc.strerror}"
            ) from exc
        try:
            return function()
        finally:
            setns(home, CLONE_NEWNET)
    finally:
        os.close(home)


def netns_socket(netns_fd: int, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket of the network namespace `netns_fd` (close-on-exec)."""
    return run_in_netns(netns_fd, lambda: socket.socket(family, kind | socket.SOCK_CLOEXEC, proto))


def netns_rtnl(netns_fd: int) -> Rtnl:
    """An rtnetlink handle whose every request acts inside the network namespace `netns_fd`
    (close it when done, or use it in a `with`)."""
    return Rtnl(netns_socket(netns_fd, socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE))
