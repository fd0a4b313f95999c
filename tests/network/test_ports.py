"""Published ports: the userland proxy relays TCP and UDP from host ports to a container's
address. Everything runs on loopback: backends listen on 127.0.0.1 (or 127.0.0.2, standing for
another container), clients connect to the proxy's host ports."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from engine.errors import EngineError
from engine.network.ports import (
    PortBinding,
    PortError,
    PortProxy,
    ProxyThread,
    PublishedPort,
    check_available,
)

Handler = Callable[[socket.socket], None]


class _Server:
    """A threaded loopback server: `handle(conn)` per TCP connection, or per datagram
    socket for UDP (called once with the bound socket)."""

    def __init__(
        self, handle: Handler, host: str = "127.0.0.1", udp: bool = False, port: int = 0
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.bind((host, port))
        self.port: int = self.sock.getsockname()[1]
        self._handle = handle
        if not udp:
            self.sock.listen(256)
        self._thread = threading.Thread(
            target=(lambda: handle(self.sock)) if udp else self._accept, daemon=True
        )
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self._handle(conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept/recv
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    """serve(handler, host="127.0.0.1", udp=False, port=0) → a running backend, closed
    afterwards."""
    servers: list[_Server] = []

    def _serve(
        handle: Handler, host: str = "127.0.0.1", udp: bool = False, port: int = 0
    ) -> _Server:
        servers.append(_Server(handle, host, udp, port))
        return servers[-1]

    yield _serve
    for server in servers:
        server.close()


@pytest.fixture
def proxy() -> Iterator[ProxyThread]:
    with ProxyThread(udp_idle_timeout=0.5) as made:
        yield made


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def _count_then_answer(conn: socket.socket) -> None:
    """Read to the end of the client's stream, then answer with the number of bytes."""
    total = 0
    while data := conn.recv(65536):
        total += len(data)
    conn.sendall(str(total).encode())


def _udp_echo(sock: socket.socket) -> None:
    """Echo each datagram with the address it came from."""
    while True:
        try:
            data, peer = sock.recvfrom(65536)
        except OSError:
            return
        if not data:  # shutdown wakes recvfrom with an empty read
            return
        sock.sendto(data + f" from {peer[0]}:{peer[1]}".encode(), peer)


def _binding(port: int, **fields: object) -> PortBinding:
    values: dict[str, object] = {
        "service": "web",
        "host_ip": "127.0.0.1",
        "container_port": port,
        "target_ip": "127.0.0.1",
    }
    values.update(fields)
    return PortBinding(**values)  # type: ignore[arg-type]


def _connect(published: PublishedPort, host: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection((host, published.host_port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    """Whether any socket of the host listens on TCP `port` (/proc/net/tcp and tcp6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return True
    return False


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the container\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_backend() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


# --- TCP ---------------------------------------------------------------------------------------


def test_http_get_through_the_proxy_reaches_the_container(
    proxy: ProxyThread, http_backend: int
) -> None:
    published = proxy.add(_binding(http_backend))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{published.host_port}/", timeout=10) as response:
        assert response.status == 200
        assert response.read() == b"hello from the container\n"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_through_the_proxy_reaches_the_container(
    proxy: ProxyThread, http_backend: int
) -> None:
    published = proxy.add(_binding(http_backend))
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            f"http://127.0.0.1:{published.host_port}/",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "hello from the container\n"), done.stderr


def test_random_host_port_is_chosen_and_reported(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    backend = serve(_echo)
    published = proxy.add(_binding(backend.port, host_port=0))
    assert published.host_port > 0
    assert published.addresses == (f"127.0.0.1:{published.host_port}",)
    assert proxy.published() == [published]
    with _connect(published) as client:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"


def test_every_address_binding_takes_ipv4_and_ipv6_clients(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    backend = serve(_echo)
    published = proxy.add(_binding(backend.port, host_ip=""))
    assert published.host_ips[0] == "0.0.0.0"
    hosts = ["127.0.0.1"] + (["::1"] if "::" in published.host_ips else [])
    for host in hosts:
        with _connect(published, host) as client:
            client.sendall(host.encode())
            assert client.recv(64) == host.encode()


def test_200_concurrent_connections_each_get_their_own_echo() -> None:
    async def main() -> None:
        async def echo(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                async for data in stream:
                    await stream.send(data)

        count, connected, go = 200, [0], anyio.Event()
        answers: dict[int, bytes] = {}

        async def client(port: int, n: int) -> None:
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                connected[0] += 1
                if connected[0] == count:
                    go.set()
                await go.wait()  # all 200 are open at once before anyone speaks
                await stream.send(f"client {n};".encode() * 500)
                await stream.send_eof()
                answers[n] = b"".join([chunk async for chunk in stream])

        backend = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with backend, PortProxy() as proxy, anyio.create_task_group() as servers:
            servers.start_soon(backend.serve, echo)
            published = await proxy.add(
                _binding(backend.extra(anyio.abc.SocketAttribute.local_port))
            )
            with anyio.fail_after(60):
                async with anyio.create_task_group() as clients:
                    for n in range(count):
                        clients.start_soon(client, published.host_port, n)
            servers.cancel_scope.cancel()
        assert answers == {n: f"client {n};".encode() * 500 for n in range(count)}

    anyio.run(main)


def test_50_mb_cross_both_ways_at_once_intact(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    payload = os.urandom(50 * 1024 * 1024)
    published = proxy.add(_binding(serve(_echo).port))
    with _connect(published) as client:

        def send() -> None:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = hashlib.sha256()
        size = 0
        while data := client.recv(1 << 20):
            received.update(data)
            size += len(data)
        sender.join()
    assert size == len(payload)
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_half_close_reaches_the_container_which_still_answers(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    published = proxy.add(_binding(serve(_count_then_answer).port))
    with _connect(published) as client:
        client.sendall(b"x" * 100_000)
        client.shutdown(socket.SHUT_WR)
        assert _read_all(client) == b"100000"


def test_container_refusing_closes_the_client_connection_promptly(proxy: ProxyThread) -> None:
    published = proxy.add(_binding(_free_port()))  # nothing listens there
    started = time.monotonic()
    with _connect(published) as client:
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(1) == b""
    assert time.monotonic() - started < 1.0


def test_client_reset_closes_the_container_side_promptly(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    ended = threading.Event()

    def wait_for_end(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        finally:
            ended.set()

    published = proxy.add(_binding(serve(wait_for_end).port))
    client = _connect(published)
    client.sendall(b"hello")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # with linger 0: a reset
    assert ended.wait(2)


@pytest.mark.skipif(
    not socket.has_ipv6 or not Path("/proc/net/if_inet6").read_text().strip(), reason="no IPv6"
)
def test_container_on_an_ipv6_address_is_reached(proxy: ProxyThread) -> None:
    with socket.socket(socket.AF_INET6) as backend:
        backend.bind(("::1", 0))
        backend.listen()
        published = proxy.add(_binding(backend.getsockname()[1], target_ip="::1"))
        with _connect(published) as client:
            conn, _ = backend.accept()
            with conn:
                conn.sendall(b"over IPv6")
                conn.shutdown(socket.SHUT_WR)
                assert _read_all(client) == b"over IPv6"


def test_removing_one_binding_leaves_the_others_serving(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    backend = serve(_echo)
    kept = proxy.add(_binding(backend.port))
    removed = proxy.add(_binding(backend.port, service="api"))
    proxy.remove(removed.binding)
    assert proxy.published() == [kept]
    with _connect(kept) as client:
        client.sendall(b"still here")
        assert client.recv(64) == b"still here"


def test_removing_a_binding_closes_its_listener_and_connections(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    published = proxy.add(_binding(serve(_echo).port))
    with _connect(published) as client:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        proxy.remove(published)
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(1) == b""
    assert proxy.published() == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", published.host_port), timeout=5)


def test_closing_the_proxy_leaves_no_listening_socket(serve: Callable[..., _Server]) -> None:
    backend = serve(_echo)
    with ProxyThread() as proxy:
        ports = [
            proxy.add(_binding(backend.port)).host_port,
            proxy.add(_binding(backend.port, host_ip="")).host_port,
        ]
        client = _connect(proxy.published()[0])
        assert all(_listening(port) for port in ports)
    with client:
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(1) == b""
    assert not any(_listening(port) for port in ports)
    for port in ports:
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
            again.listen()


def test_retarget_sends_new_connections_to_the_new_address(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    def answer(word: bytes) -> Handler:
        return lambda conn: conn.sendall(word)

    old = serve(answer(b"old"), "127.0.0.1")
    binding = _binding(old.port)
    published = proxy.add(binding)
    with _connect(published) as client:
        assert _read_all(client) == b"old"
    serve(answer(b"new"), "127.0.0.2", port=old.port)  # the recreated container's new address
    retargeted = proxy.retarget(binding, "127.0.0.2")
    assert retargeted.host_port == published.host_port
    assert retargeted.binding == _binding(old.port, target_ip="127.0.0.2")
    assert proxy.published() == [retargeted]
    with _connect(published) as client:
        assert _read_all(client) == b"new"


def test_adding_a_published_binding_again_changes_nothing(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    binding = _binding(serve(_echo).port)
    first = proxy.add(binding)
    assert proxy.add(binding) == first
    assert proxy.published() == [first]


# --- UDP ---------------------------------------------------------------------------------------


def test_udp_datagrams_cross_both_ways_for_two_clients(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    backend = serve(_udp_echo, udp=True)
    published = proxy.add(_binding(backend.port, protocol="udp"))
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as two,
    ):
        for client in (one, two):
            client.settimeout(5)
        for round_ in range(3):
            one.sendto(f"one {round_}".encode(), ("127.0.0.1", published.host_port))
            two.sendto(f"two {round_}".encode(), ("127.0.0.1", published.host_port))
            reply_one, source = one.recvfrom(1024)
            reply_two, _ = two.recvfrom(1024)
            assert source == ("127.0.0.1", published.host_port)
            assert reply_one.startswith(f"one {round_} from 127.0.0.1:".encode())
            assert reply_two.startswith(f"two {round_} from 127.0.0.1:".encode())
        # Each client has a flow of its own: the container sees two different peers.
        assert reply_one.split(b" from ")[1] != reply_two.split(b" from ")[1]


def test_udp_replies_reach_50_clients_speaking_at_once(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    backend = serve(_udp_echo, udp=True)
    published = proxy.add(_binding(backend.port, protocol="udp"))
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            for _n in range(50)
        ]
        for n, client in enumerate(clients):
            client.settimeout(5)
            client.sendto(f"client {n}".encode(), ("127.0.0.1", published.host_port))
        replies = [client.recv(1024).split(b" from ")[0] for client in clients]
    assert replies == [f"client {n}".encode() for n in range(50)]


def test_udp_flow_ends_when_idle_and_a_new_one_starts(
    proxy: ProxyThread, serve: Callable[..., _Server]
) -> None:
    backend = serve(_udp_echo, udp=True)
    published = proxy.add(_binding(backend.port, protocol="udp"))  # idle timeout: 0.5 s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)

        def peer_seen() -> bytes:
            client.sendto(b"hi", ("127.0.0.1", published.host_port))
            return client.recv(1024).split(b" from ")[1]

        first = peer_seen()
        assert peer_seen() == first  # within the timeout: the same flow
        time.sleep(1.0)
        assert peer_seen() != first  # the idle flow was closed; a new socket carries this one


# --- Refusals ----------------------------------------------------------------------------------


def test_port_in_use_is_refused_before_any_container_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        binding = _binding(80, host_port=port)
        with pytest.raises(PortError) as info:
            check_available([binding])
    assert str(info.value) == f"service web: host port 127.0.0.1:{port}/tcp is already in use"
    assert isinstance(info.value, EngineError)


def test_udp_port_in_use_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(
            PortError, match=f"service dns: host port 127.0.0.1:{port}/udp is already in use"
        ):
            check_available([_binding(53, service="dns", host_port=port, protocol="udp")])


def test_port_in_use_is_refused_by_add(proxy: ProxyThread) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            PortError, match=f"^service api: host port 127.0.0.1:{port}/tcp is already in use$"
        ):
            proxy.add(_binding(80, service="api", host_port=port))
    assert proxy.published() == []


def test_port_asked_twice_names_both_services() -> None:
    port = _free_port()
    with pytest.raises(PortError) as info:
        check_available(
            [
                _binding(80, service="web", host_port=port, host_ip=""),
                _binding(81, service="api", host_port=port),
            ]
        )
    assert str(info.value) == (
        f"service api: host port 127.0.0.1:{port}/tcp is also published by service web"
    )


def test_same_port_on_other_addresses_or_protocols_passes_the_check() -> None:
    port = _free_port()
    check_available(
        [
            _binding(80, host_port=port, host_ip="127.0.0.1"),
            _binding(80, host_port=port, host_ip="127.0.0.2"),
            _binding(80, host_port=port, host_ip="127.0.0.1", protocol="udp"),
        ]
    )


def test_free_ports_pass_the_check_and_stay_free() -> None:
    port = _free_port()
    check_available([_binding(80, host_port=port), _binding(80, host_port=port, protocol="udp")])
    assert not _listening(port)
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def _two_free_ports() -> int:
    """A port p such that p and p + 1 are both free now."""
    for _attempt in range(50):
        port = _free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    pytest.skip("found no two consecutive free ports")


def test_host_port_range_takes_its_first_free_port(proxy: ProxyThread) -> None:
    first = _two_free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        published = proxy.add(_binding(80, host_port=first, host_port_end=first + 1))
    assert published.host_port == first + 1
    assert published.binding.describe() == f"127.0.0.1:{first}-{first + 1}/tcp"


def test_range_with_every_port_in_use_is_refused() -> None:
    port = _two_free_ports()
    with socket.socket() as one, socket.socket() as two:
        for taken, number in ((one, port), (two, port + 1)):
            taken.bind(("127.0.0.1", number))
            taken.listen()
        with pytest.raises(PortError) as info:
            check_available([_binding(80, host_port=port, host_port_end=port + 1)])
    assert str(info.value) == (
        f"service web: every host port of 127.0.0.1:{port}-{port + 1}/tcp is in use"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"protocol": "sctp"}, "service web: sctp ports cannot be published"),
        ({"host_ip": "localhost"}, "service web: 'localhost' is not an IP address"),
        ({"target_ip": ""}, "service web: '' is not an IP address"),
        ({"host_port": 70000}, "service web: 70000 is not a port number"),
        ({"host_port": 8010, "host_port_end": 8000}, "service web: 8010-8000 is not a port range"),
    ],
)
def test_malformed_binding_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(PortError, match=f"^{message}$"):
        _binding(80, **fields)


def test_describe_shows_the_host_side_as_users_write_it() -> None:
    assert _binding(80, host_port=8080).describe() == "127.0.0.1:8080/tcp"
    assert (
        _binding(80, host_ip="", host_port=8000, host_port_end=8010).describe()
        == "0.0.0.0:8000-8010/tcp"
    )
    assert _binding(53, host_ip="::1", host_port=53, protocol="udp").describe() == "[::1]:53/udp"
