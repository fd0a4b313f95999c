"""Published ports: a userland proxy that listens on host addresses and relays every TCP
connection and UDP flow to a container's address — all the ports of a stack in one event loop.

A binding with no host address listens on one dual-stack socket (`::` with IPV6_V6ONLY off),
which takes IPv4 and IPv6 clients alike; where the host has no IPv6 it falls back to `0.0.0.0`.
TCP bytes move from socket to socket through a pipe with splice(2) and never enter Python
(through anyio's socket streams, 1 MB transfers took 2.5 times as long); the end of one
direction is passed on as a half-close, and the other direction goes on. UDP gets a socket
towards the container per client address, closed after `udp_idle_timeout` seconds without a
datagram either way.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Final, Literal, Self

import anyio
import anyio.abc
from anyio.from_thread import start_blocking_portal

from engine.network.errors import NetworkError

__all__ = [
    "UDP_IDLE_TIMEOUT",
    "PortBinding",
    "PortError",
    "PortProxy",
    "ProxyThread",
    "PublishedPort",
    "check_available",
]

UDP_IDLE_TIMEOUT: Final = 90.0  # seconds without a datagram either way that end a UDP flow
_CHUNK: Final = 256 * 1024  # a pipe's size: the most a connection holds in the proxy, each way
_CONNECT_TIMEOUT: Final = 10.0
_ACCEPT_BACKOFF: Final = 0.1  # out of file descriptors: wait, rather than spin on accept
_BACKLOG: Final = 4096

Transport = Literal["tcp", "udp"]


class PortError(NetworkError):
    """A host port cannot be published: in use, not an address of this host, or refused."""


@dataclass(frozen=True, kw_only=True)
class PortBinding:
    """One published port of a service: host address and port → container address and port."""

    service: str
    container_port: int
    target_ip: str  # the container's address
    host_port: int = 0  # 0: any free port, chosen by the kernel
    host_port_end: int = 0  # above host_port: the first free port of host_port..host_port_end
    host_ip: str = ""  # "": every address of the host, IPv4 and IPv6
    protocol: Transport = "tcp"

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp"):
            raise PortError(f"service {self.service}: {self.protocol} ports cannot be published")
        for port in (self.container_port, self.host_port, self.host_port_end):
            if not 0 <= port <= 65535:
                raise PortError(f"service {self.service}: {port} is not a port number")
        if self.host_port_end and not 0 < self.host_port <= self.host_port_end:
            raise PortError(
                f"service {self.service}: {self.host_port}-{self.host_port_end} is not a port range"
            )
        for address in (self.host_ip, self.target_ip) if self.host_ip else (self.target_ip,):
            try:
                ipaddress.ip_address(address.strip("[]"))
            except ValueError:
                raise PortError(
                    f"service {self.service}: {address!r} is not an IP address"
                ) from None

    def describe(self, host_port: int | None = None) -> str:
        """The host side as a user reads it: `127.0.0.1:8080/tcp`, `[::1]:8000-8010/udp`."""
        if host_port is None:
            host_port = self.host_port
            if self.host_port_end > self.host_port:
                return f"{_host(self.host_ip)}:{host_port}-{self.host_port_end}/{self.protocol}"
        return f"{_host(self.host_ip)}:{host_port}/{self.protocol}"


@dataclass(frozen=True, kw_only=True)
class PublishedPort:
    """A binding being served, with the host port it actually got."""

    binding: PortBinding
    host_port: int
    host_ips: tuple[str, ...]  # the addresses listened on: ("0.0.0.0", "::") for every address

    @property
    def addresses(self) -> tuple[str, ...]:
        """`0.0.0.0:32768`, `[::]:32768`: what `composer port` prints."""
        return tuple(f"{_host(ip)}:{self.host_port}" for ip in self.host_ips)


def _host(ip: str) -> str:
    ip = ip.strip("[]") or "0.0.0.0"
    return f"[{ip}]" if ":" in ip else ip


def _bound(family: socket.AddressFamily, binding: PortBinding, ip: str, port: int) -> socket.socket:
    stream = binding.protocol == "tcp"
    sock = socket.socket(family, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:  # only the "every address" socket takes IPv4 clients too
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(bool(binding.host_ip)))
        if stream:  # TIME_WAIT connections of a previous proxy must not hold the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        if stream:
            sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _open_port(binding: PortBinding, port: int) -> tuple[socket.socket, tuple[str, ...]]:
    """A socket bound (and listening, for TCP) on the binding's host address and `port`."""
    ip = binding.host_ip.strip("[]")
    if ip:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return _bound(family, binding, ip, port), (ip,)
    try:
        return _bound(socket.AF_INET6, binding, "::", port), ("0.0.0.0", "::")
    except OSError as exc:
        if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            raise  # the port is taken, refused…: IPv4 alone would hide it
        return _bound(socket.AF_INET, binding, "0.0.0.0", port), ("0.0.0.0",)


def _open(binding: PortBinding) -> tuple[socket.socket, int, tuple[str, ...]]:
    """Bind the binding's host port (the first free one of its range); the socket, the port
    and the addresses. Raises PortError naming the service and the port."""
    last = max(binding.host_port, binding.host_port_end)
    for port in range(binding.host_port, last + 1):
        try:
            sock, ips = _open_port(binding, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and port < last:
                continue
            raise PortError(_refusal(binding, port, exc)) from exc
        return sock, sock.getsockname()[1], ips
    raise AssertionError("unreachable: the range holds at least one port")


def _refusal(binding: PortBinding, port: int, exc: OSError) -> str:
    what = binding.describe(port)
    if exc.errno == errno.EADDRINUSE:
        if binding.host_port_end > binding.host_port:
            return f"service {binding.service}: every host port of {binding.describe()} is in use"
        return f"service {binding.service}: host port {what} is already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"service {binding.service}: cannot publish {what}: "
            f"{binding.host_ip} is not an address of this host"
        )
    if exc.errno == errno.EACCES:
        return f"service {binding.service}: cannot publish {what}: a port this low needs root"
    return f"service {binding.service}: cannot publish {what}: {exc.strerror or exc}"


def _overlap(a: PortBinding, a_port: int, b: PortBinding) -> bool:
    """Whether `b`'s fixed port would collide with `a` published on `a_port`."""
    if a.protocol != b.protocol or a_port != b.host_port:
        return False
    if not a.host_ip or not b.host_ip:
        return True  # every address, both families
    ip_a, ip_b = (ipaddress.ip_address(x.host_ip.strip("[]")) for x in (a, b))
    return ip_a.version == ip_b.version and (
        ip_a == ip_b or ip_a.is_unspecified or ip_b.is_unspecified
    )


def check_available(bindings: Iterable[PortBinding]) -> None:
    """Raise PortError for the first binding whose host port cannot be taken now (in use, also
    asked for by an earlier binding, not a local address, privileged). Call it before starting
    any container, with the bindings not published yet; `PortProxy.add` still reports a port
    taken in between."""
    held: list[tuple[PortBinding, int, socket.socket]] = []
    try:
        for binding in bindings:
            if binding.host_port and binding.host_port_end <= binding.host_port:
                for other, port, _sock in held:
                    if _overlap(other, port, binding):
                        raise PortError(
                            f"service {binding.service}: host port {binding.describe()} "
                            f"is also published by service {other.service}"
                        )
            sock, port, _ips = _open(binding)  # kept open: later bindings see it taken
            held.append((binding, port, sock))
    finally:
        for _binding, _port, sock in held:
            sock.close()


@dataclass(eq=False)
class _Entry:
    published: PublishedPort  # replaced by `retarget`; read at each new connection or flow
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    closed: anyio.Event = field(default_factory=anyio.Event)


@dataclass(eq=False)
class _Flow:
    backend: anyio.abc.ConnectedUDPSocket
    last: float  # anyio.current_time() of the last datagram either way


@dataclass(eq=False)
class _UdpPort:
    listener: anyio.abc.UDPSocket
    flows: dict[tuple[str, int], _Flow] = field(default_factory=dict)  # by client address
    sending: anyio.Lock = field(default_factory=anyio.Lock)  # the flows share the listener


class PortProxy:
    """Serves published ports in the current event loop, inside `async with PortProxy() as
    proxy:`; leaving it closes every listener and connection."""

    def __init__(
        self,
        *,
        udp_idle_timeout: float = UDP_IDLE_TIMEOUT,
        connect_timeout: float = _CONNECT_TIMEOUT,
    ) -> None:
        self.udp_idle_timeout = udp_idle_timeout
        self.connect_timeout = connect_timeout
        self._entries: dict[PortBinding, _Entry] = {}
        self._group: anyio.abc.TaskGroup | None = None
        # listeners bound again after they vanished (a deque: another thread may take them)
        self.restored: collections.deque[PublishedPort] = collections.deque()

    async def __aenter__(self) -> Self:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._group is not None
        group, self._group = self._group, None
        self._entries.clear()
        group.cancel_scope.cancel()
        return await group.__aexit__(kind, error, traceback)

    def published(self) -> list[PublishedPort]:
        """The ports being served, in the order they were added."""
        return [entry.published for entry in self._entries.values()]

    async def add(self, binding: PortBinding) -> PublishedPort:
        """Listen on the binding's host port now (PortError if it cannot) and relay it to the
        container; the published port, with the host port taken. Adding a binding already
        served changes nothing and returns it."""
        if binding in self._entries:
            return self._entries[binding].published
        if self._group is None:
            raise RuntimeError("PortProxy.add outside `async with PortProxy()`")
        sock, port, ips = _open(binding)
        entry = _Entry(PublishedPort(binding=binding, host_port=port, host_ips=ips))
        self._entries[binding] = entry
        serve = self._serve_tcp if binding.protocol == "tcp" else self._serve_udp
        try:
            await self._group.start(serve, entry, sock)
        except BaseException:
            if self._entries.get(binding) is entry:
                del self._entries[binding]
            raise
        return entry.published

    async def remove(self, which: PortBinding | PublishedPort) -> None:
        """Close the listener of a binding and its connections; nothing if not served."""
        binding = which.binding if isinstance(which, PublishedPort) else which
        entry = self._entries.pop(binding, None)
        if entry is not None:
            entry.scope.cancel()
            await entry.closed.wait()

    async def retarget(self, binding: PortBinding, target_ip: str) -> PublishedPort:
        """Send the binding's new connections and flows to `target_ip` (its container was
        recreated with a new address), keeping its host port; open ones are left alone."""
        entry = self._entries.pop(binding, None)
        if entry is None:
            raise PortError(f"service {binding.service}: {binding.describe()} is not published")
        moved = replace(binding, target_ip=target_ip)
        entry.published = replace(entry.published, binding=moved)
        self._entries[moved] = entry
        return entry.published

    async def _serve_tcp(
        self,
        entry: _Entry,
        sock: socket.socket,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with entry.scope:
                async with anyio.create_task_group() as relays:
                    task_status.started()
                    while True:
                        await anyio.wait_readable(sock)
                        try:
                            client, _address = sock.accept()
                        except BlockingIOError:
                            continue  # another process sharing the socket took it
                        except OSError:  # EMFILE and the like: the backlog waits meanwhile
                            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                                sock = await self._listen_again(entry, sock)
                                continue
                            await anyio.sleep(_ACCEPT_BACKOFF)
                            continue
                        relays.start_soon(self._relay, entry, client)
        finally:
            sock.close()
            entry.closed.set()

    async def _listen_again(self, entry: _Entry, sock: socket.socket) -> socket.socket:
        """The listener stopped listening (closed from outside: `ss -K`, SOCK_DESTROY): the
        same host port is bound again, as soon as it can be; recorded in `restored`."""
        sock.close()
        binding = replace(entry.published.binding, host_port=entry.published.host_port,
                          host_port_end=0)  # fmt: skip
        while True:
            try:
                fresh, _ips = _open_port(binding, entry.published.host_port)
            except OSError:
                await anyio.sleep(_ACCEPT_BACKOFF)  # taken meanwhile: try again
                continue
            self.restored.append(entry.published)
            return fresh

    async def _relay(self, entry: _Entry, client: socket.socket) -> None:
        binding = entry.published.binding
        with client:
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            backend = await _connect(
                binding.target_ip, binding.container_port, self.connect_timeout
            )
            if backend is None:
                return  # refused or unreachable: the client sees its connection closed at once
            with backend:
                async with anyio.create_task_group() as pipes:
                    pipes.start_soon(_pipe, client, backend, pipes.cancel_scope)
                    await _pipe(backend, client, pipes.cancel_scope)

    async def _serve_udp(
        self,
        entry: _Entry,
        sock: socket.socket,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with entry.scope:
                try:
                    port = _UdpPort(await anyio.abc.UDPSocket.from_socket(sock))
                except BaseException:
                    sock.close()
                    raise
                async with port.listener, anyio.create_task_group() as replies:
                    task_status.started()
                    while True:
                        data, client = await port.listener.receive()
                        flow = port.flows.get(client)
                        if flow is None:
                            flow = await _udp_flow(entry.published.binding)
                            if flow is None:
                                continue  # no route to the container: the datagram is lost
                            port.flows[client] = flow
                            replies.start_soon(self._udp_replies, port, client, flow)
                        flow.last = anyio.current_time()
                        with contextlib.suppress(OSError, anyio.BrokenResourceError):
                            await flow.backend.send(data)
        finally:
            entry.closed.set()

    async def _udp_replies(self, port: _UdpPort, client: tuple[str, int], flow: _Flow) -> None:
        """Send the container's datagrams back to the client until the flow is idle."""
        try:
            async with flow.backend:
                while (idle := anyio.current_time() - flow.last) < self.udp_idle_timeout:
                    with anyio.move_on_after(self.udp_idle_timeout - idle):
                        data = await flow.backend.receive()
                        flow.last = anyio.current_time()
                        async with port.sending:
                            await port.listener.send((data, client))
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the listener or the flow's socket went away: the flow ends
        finally:
            if port.flows.get(client) is flow:
                del port.flows[client]


async def _connect(ip: str, port: int, timeout: float) -> socket.socket | None:
    """A non-blocking TCP socket connected to ip:port, or None if that failed."""
    ip = ip.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with anyio.move_on_after(timeout):
            failure = sock.connect_ex((ip, port))
            if failure == errno.EINPROGRESS:
                await anyio.wait_writable(sock)
                failure = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not failure:
                return sock
    except BaseException:
        sock.close()
        raise
    sock.close()
    return None


async def _pipe(source: socket.socket, sink: socket.socket, both: anyio.CancelScope) -> None:
    """Move one direction's bytes through a pipe with splice(2), never through Python; pass
    its end on as a half-close (shutdown SHUT_WR), so the other direction goes on."""
    into, out = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    try:
        with contextlib.suppress(OSError):  # past the user's pipe quota: the default size
            fcntl.fcntl(out, fcntl.F_SETPIPE_SZ, _CHUNK)
        while True:
            try:
                moved = os.splice(source.fileno(), out, _CHUNK, flags=flags)
            except BlockingIOError:
                await anyio.wait_readable(source)
                continue
            if not moved:
                sink.shutdown(socket.SHUT_WR)
                return
            while moved:
                try:
                    moved -= os.splice(into, sink.fileno(), moved, flags=flags)
                except BlockingIOError:
                    await anyio.wait_writable(sink)
    except OSError:
        both.cancel()  # a reset or a failed write ends the connection both ways
    finally:
        os.close(into)
        os.close(out)


async def _udp_flow(binding: PortBinding) -> _Flow | None:
    ip = binding.target_ip.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((ip, binding.container_port))
    except OSError:
        sock.close()
        return None
    backend = await anyio.abc.ConnectedUDPSocket.from_socket(sock)
    return _Flow(backend, anyio.current_time())


class ProxyThread:
    """A PortProxy in a thread of its own, for a caller without an event loop (the stack's
    supervisor): the same operations, blocking. Started when made; `close()` stops it."""

    def __init__(
        self,
        *,
        udp_idle_timeout: float = UDP_IDLE_TIMEOUT,
        connect_timeout: float = _CONNECT_TIMEOUT,
    ) -> None:
        self._stack = contextlib.ExitStack()
        try:
            self._portal = self._stack.enter_context(start_blocking_portal())
            proxy = PortProxy(udp_idle_timeout=udp_idle_timeout, connect_timeout=connect_timeout)
            self._proxy = self._stack.enter_context(self._portal.wrap_async_context_manager(proxy))
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every listener and connection, and end the thread."""
        self._stack.close()

    def add(self, binding: PortBinding) -> PublishedPort:
        return self._portal.call(self._proxy.add, binding)

    def remove(self, which: PortBinding | PublishedPort) -> None:
        self._portal.call(self._proxy.remove, which)

    def retarget(self, binding: PortBinding, target_ip: str) -> PublishedPort:
        return self._portal.call(self._proxy.retarget, binding, target_ip)

    def published(self) -> list[PublishedPort]:
        return self._portal.call(self._proxy.published)

    def take_restored(self) -> list[PublishedPort]:
        """The listeners bound again since the last call (see PortProxy._listen_again); read
        without waking the proxy's thread (deque pops are atomic)."""
        taken = []
        with contextlib.suppress(IndexError):
            while True:
                taken.append(self._proxy.restored.popleft())
        return taken
