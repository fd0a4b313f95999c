"""Packets between namespaces the test made, over its own bridges: what must pass does, and
two stacks' networks stay apart, whether this host forwards or not, once their bridges have
their firewall (root; no packet leaves the test's bridges; the firewall's rules are added to
this host's nftables ruleset and removed)."""

from __future__ import annotations

import socket
from functools import partial
from ipaddress import IPv4Address, IPv6Address

import pytest

from engine.network import BridgeSpec, attach, ensure_firewall, remove_firewall
from tests.network.conftest import Scratch
from tests.network.netnstools import Netns

pytestmark = pytest.mark.kernel

Address = IPv4Address | IPv6Address


def _family(address: Address) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def udp_round_trip(server_ns: Netns, server: Address, client_ns: Netns) -> tuple[bytes, str]:
    """A datagram from `client_ns` to `server` and the answer back: (answer, client's address
    as the server saw it)."""
    family = _family(server)
    with server_ns.socket(family, socket.SOCK_DGRAM) as srv, client_ns.socket(family, socket.SOCK_DGRAM) as cli:
        srv.bind((str(server), 0))
        cli.sendto(b"ping", srv.getsockname()[:2])
        data, source = srv.recvfrom(64)
        assert data == b"ping"
        srv.sendto(b"pong", source)
        return cli.recv(64), source[0]


def tcp_round_trip(server_ns: Netns, server: Address, client_ns: Netns) -> tuple[bytes, str]:
    family = _family(server)
    with server_ns.socket(family, socket.SOCK_STREAM) as listener, client_ns.socket(family, socket.SOCK_STREAM) as cli:
        listener.bind((str(server), 0))
        listener.listen(1)
        cli.connect(listener.getsockname()[:2])
        connection, peer = listener.accept()
        with connection:
            cli.sendall(b"hello")
            assert connection.recv(64) == b"hello"
            connection.sendall(b"hello back")
            return cli.recv(64), peer[0]


def cannot_reach(server_ns: Netns, server: Address, client_ns: Netns) -> bool:
    """Whether neither a TCP connection nor a UDP datagram from `client_ns` reaches `server`
    within half a second each (a refused connection did reach it)."""
    family = _family(server)
    with server_ns.socket(family, socket.SOCK_STREAM) as listener, client_ns.socket(family, socket.SOCK_STREAM) as cli:
        listener.bind((str(server), 0))
        listener.listen(1)
        cli.settimeout(0.5)
        try:
            cli.connect(listener.getsockname()[:2])
        except ConnectionRefusedError:
            return False
        except OSError:  # a timeout, or unreachable
            pass
        else:
            return False
    with server_ns.socket(family, socket.SOCK_DGRAM) as srv, client_ns.socket(family, socket.SOCK_DGRAM) as cli:
        srv.bind((str(server), 0))
        srv.settimeout(0.5)
        try:
            cli.sendto(b"ping", srv.getsockname()[:2])
            srv.recvfrom(64)
        except OSError:
            return True
        return False


def with_firewalls(request: pytest.FixtureRequest, *specs: BridgeSpec) -> None:
    """Give the bridges their firewall, as composer gives its own: on a host whose forward
    policy drops (Docker's, with br_netfilter loaded) even the traffic between two ports of one
    bridge passes only so. Removed after the test, also when it fails."""
    for spec in specs:
        request.addfinalizer(partial(remove_firewall, spec.name))
        ensure_firewall(spec.name)


def test_two_namespaces_on_one_bridge_exchange_udp_and_tcp(scratch: Scratch, request: pytest.FixtureRequest) -> None:
    spec = scratch.bridge()
    with_firewalls(request, spec)
    a_ns, b_ns = scratch.netns(), scratch.netns()
    a, b = scratch.attachment(spec), scratch.attachment(spec)
    attach(a_ns.fd, a)
    attach(b_ns.fd, b)
    assert udp_round_trip(a_ns, a.address.ip, b_ns) == (b"pong", str(b.address.ip))
    assert tcp_round_trip(b_ns, b.address.ip, a_ns) == (b"hello back", str(a.address.ip))


def test_ipv6_works_as_soon_as_attach_returns(scratch: Scratch, request: pytest.FixtureRequest) -> None:
    spec = scratch.bridge(ipv6=True)
    with_firewalls(request, spec)
    a_ns, b_ns = scratch.netns(), scratch.netns()
    a, b = scratch.attachment(spec), scratch.attachment(spec)
    attach(a_ns.fd, a)
    attach(b_ns.fd, b)
    assert a.address6 is not None and b.address6 is not None
    assert udp_round_trip(a_ns, a.address6.ip, b_ns) == (b"pong", str(b.address6.ip))
    assert tcp_round_trip(b_ns, b.address6.ip, a_ns) == (b"hello back", str(a.address6.ip))


def test_a_namespace_on_two_bridges_reaches_the_namespaces_of_both(scratch: Scratch, request: pytest.FixtureRequest) -> None:
    front, back = scratch.bridge(), scratch.bridge()
    with_firewalls(request, front, back)
    web_ns, proxy_ns, db_ns = scratch.netns(), scratch.netns(), scratch.netns()
    attach(proxy_ns.fd, proxy := scratch.attachment(front))
    attach(db_ns.fd, db := scratch.attachment(back))
    on_front = scratch.attachment(front, index=0)
    attach(web_ns.fd, on_front)
    on_back = scratch.attachment(back, index=1, gateway=False)
    attach(web_ns.fd, on_back)
    assert udp_round_trip(proxy_ns, proxy.address.ip, web_ns) == (b"pong", str(on_front.address.ip))
    assert udp_round_trip(db_ns, db.address.ip, web_ns) == (b"pong", str(on_back.address.ip))
    assert tcp_round_trip(db_ns, db.address.ip, web_ns)[0] == b"hello back"
    assert tcp_round_trip(web_ns, on_front.address.ip, proxy_ns)[0] == b"hello back"


def test_the_networks_of_two_stacks_cannot_reach_each_other(scratch: Scratch, request: pytest.FixtureRequest) -> None:
    first, second = scratch.bridge(), scratch.bridge()
    with_firewalls(request, first, second)
    a_ns, b_ns, neighbour_ns = scratch.netns(), scratch.netns(), scratch.netns()
    attach(a_ns.fd, a := scratch.attachment(first))
    attach(b_ns.fd, b := scratch.attachment(second))
    attach(neighbour_ns.fd, neighbour := scratch.attachment(second))
    assert udp_round_trip(b_ns, b.address.ip, neighbour_ns) == (b"pong", str(neighbour.address.ip))
    assert a.gateway is not None and b.gateway is not None  # routes through the host: it drops
    assert cannot_reach(b_ns, b.address.ip, a_ns)
    assert cannot_reach(a_ns, a.address.ip, b_ns)
