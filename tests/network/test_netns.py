"""Handles that act inside another network namespace, made in a passing thread (root)."""

from __future__ import annotations

import os
import socket
import threading
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from engine import linux
from engine.network import NetworkError, netns_rtnl, open_netns, run_in_netns
from engine.network.rtnl import Rtnl
from tests.iproute import host_iproute, netns_iproute
from tests.network.conftest import Scratch

pytestmark = pytest.mark.kernel


def _here() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_a_netns_rtnl_sees_the_links_of_the_namespace_and_not_the_hosts(scratch: Scratch) -> None:
    ns = scratch.netns()
    with netns_rtnl(ns.fd) as rtnl:
        inside = [link.name for link in rtnl.links()]
    with host_iproute() as ipr:
        outside = [link.get("ifname") for link in ipr.link("dump")]
    assert inside == ["lo"]
    assert len(outside) > 1


def test_a_netns_rtnl_changes_the_namespace_and_not_the_host(scratch: Scratch) -> None:
    ns = scratch.netns()
    with netns_rtnl(ns.fd) as rtnl:
        rtnl.set_link("bring lo up", 1, up=True)
        assert rtnl.do(Rtnl.address_request(True, 1, IPv4Interface("10.77.0.1/32"))) == [0]
    with netns_iproute(ns.fd) as ipr:
        addresses = [a.get("address") for a in ipr.addr("dump")]
    assert "10.77.0.1" in addresses
    with host_iproute() as ipr:
        assert "10.77.0.1" not in [a.get("address") for a in ipr.addr("dump")]


def test_run_in_netns_runs_in_the_namespace_and_leaves_the_callers_thread_where_it_was(scratch: Scratch) -> None:
    ns = scratch.netns()
    before = _here()
    assert run_in_netns(ns.fd, _here) == os.fstat(ns.fd).st_ino != before
    assert _here() == before
    assert not [t for t in threading.enumerate() if t.name == "netns"]  # it has ended


def test_run_in_netns_works_in_a_process_of_one_thread_that_cannot_start_threads(scratch: Scratch) -> None:
    ns = scratch.netns()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # as the container's init: one thread, and none possible after this
        try:
            linux.unshare(linux.CLONE_NEWPID)
            before = _here()
            inside = run_in_netns(ns.fd, _here)
            os.write(write, f"{inside} {before} {_here()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        inside, before, after = answer.read().split()
    os.waitpid(child, 0)
    assert int(inside) == os.fstat(ns.fd).st_ino
    assert before == after != inside


def test_run_in_netns_raises_what_the_function_raised(scratch: Scratch) -> None:
    ns = scratch.netns()

    def fail() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        run_in_netns(ns.fd, fail)


def test_run_in_netns_refuses_an_fd_that_is_not_a_network_namespace(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: setns")
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        with pytest.raises(NetworkError, match="cannot enter network namespace"):
            run_in_netns(fd, _here)
    finally:
        os.close(fd)


def test_a_socket_made_in_a_namespace_stays_there_when_used_from_the_callers_thread(scratch: Scratch) -> None:
    ns = scratch.netns()
    with netns_iproute(ns.fd) as ipr:
        ipr.link("set", index=1, state="up")
    server = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with server, client:
        server.bind(("127.0.0.1", 0))
        client.sendto(b"ping", server.getsockname())
        assert server.recvfrom(16)[0] == b"ping"
        # The host's loopback is another one: nothing listens there on that port.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host:
            host.bind(("127.0.0.1", server.getsockname()[1]))  # free on the host


def test_open_netns_refuses_a_process_that_does_not_exist() -> None:
    with pytest.raises(NetworkError, match="network namespace of process"):
        open_netns(2**22 + 1)


def test_open_netns_opens_the_namespace_of_a_process(scratch: Scratch) -> None:
    ns = scratch.netns()
    fd = open_netns(ns.pid)
    try:
        assert os.fstat(fd).st_ino == os.fstat(ns.fd).st_ino
    finally:
        os.close(fd)
