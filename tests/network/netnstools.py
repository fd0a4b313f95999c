"""Network namespaces for tests and benchmarks: each held by a forked child that unshared it
and waits on a pipe; ended by pid and reaped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from dataclasses import dataclass

from engine.linux import CLONE_NEWNET, unshare
from engine.network import netns_socket

TIMEOUT = 2.0  # seconds a test waits for a packet that should come


@dataclass(frozen=True)
class Netns:
    """A network namespace held by a child process that waits on a pipe."""

    pid: int
    fd: int  # /proc/PID/ns/net
    release: int  # the pipe's write end: closing it ends the child

    def socket(self, family: int, kind: int) -> socket.socket:
        """A socket of this namespace, with a timeout of TIMEOUT."""
        made = netns_socket(self.fd, family, kind)
        made.settimeout(TIMEOUT)
        return made

    def end(self) -> None:
        """Close the fd, end the child by its pid and reap it."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
        end_process(self.pid, self.release)


def spawn_netns() -> Netns:
    """Fork a child that unshares a new network namespace and waits for its pipe to close."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python cleanup, no return into the caller
        status = 1
        try:
            os.close(ready_r)
            os.close(hold_w)
            unshare(CLONE_NEWNET)
            os.write(ready_w, b"1")
            os.read(hold_r, 1)
            status = 0
        finally:
            os._exit(status)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise RuntimeError("the namespace child failed to unshare")
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        end_process(pid, hold_w)
        raise
    finally:
        os.close(ready_r)
    return Netns(pid, fd, hold_w)


def end_process(pid: int, release: int) -> None:
    with contextlib.suppress(OSError):
        os.close(release)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
