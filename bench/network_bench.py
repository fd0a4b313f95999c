"""Container network plumbing: the time `attach` takes per container, and 200 containers on
one bridge.

Attach: one bridge; N network namespaces (each held by a forked child, as a container's
process holds its own); `engine.network.attach` of each (veth pair with the container end
made in the namespace, host end on the bridge, lo up, address, default route), timed one by
one, median over N. Also timed: `detach`, `ensure_bridge` (new, and again on an existing
bridge), and the fixed costs inside attach (a netlink handle on the host, one inside a
namespace through a passing thread).
Crowd: 200 namespaces attached to one bridge; every one then sends a UDP datagram from
inside to the gateway (the host's address on the bridge), which answers each: all 200 must
get their answer (ARP and delivery both ways on every port).

No packet leaves the bench's bridges; forwarding is not touched. Run as root:
.venv/bin/python bench/network_bench.py [--runs 100] [--crowd 200]
Writes bench/results/network.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import select
import socket
import statistics
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.network import (
    Attachment,
    BridgeSpec,
    allocate_subnet,
    attach,
    detach,
    ensure_bridge,
    gateway_of,
    host_networks,
    remove_bridge,
    veth_name,
)
from engine.network.netns import netns_rtnl
from engine.network.rtnl import Rtnl
from tests.iproute import host_iproute
from tests.network.netnstools import Netns, spawn_netns


def ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 3),
        "min_ms": round(ordered[0] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


class Bench:
    """The bench's bridges, pairs and namespaces, all removed by `cleanup`."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridges: list[str] = []
        self.veths: list[str] = []
        self.namespaces: list[Netns] = []
        self.subnets: list[IPv4Network] = []

    def bridge(self, prefixlen: int) -> BridgeSpec:
        base = IPv4Network(f"10.{128 + secrets.randbelow(128)}.0.0/16")
        subnet = allocate_subnet([(base, prefixlen)], [*host_networks(), *self.subnets])
        self.subnets.append(subnet)
        spec = BridgeSpec(f"cbb{self.tag}{len(self.bridges):02d}", subnet, gateway_of(subnet))
        self.bridges.append(spec.name)
        return spec

    def netns(self, count: int) -> list[Netns]:
        made = [spawn_netns() for _ in range(count)]
        self.namespaces.extend(made)
        return made

    def attachment(self, spec: BridgeSpec, n: int) -> Attachment:
        name = veth_name(f"bench-{self.tag}-{spec.name}-{n}", 0)
        self.veths.append(name)
        return Attachment(
            bridge=spec.name,
            host_ifname=name,
            address=IPv4Interface(f"{spec.gateway + 1 + n}/{spec.subnet.prefixlen}"),
            gateway=spec.gateway,
        )

    def cleanup(self) -> None:
        for name in self.veths:
            detach(name)
        for name in self.bridges:
            remove_bridge(name)
        for made in self.namespaces:
            made.end()
        self.namespaces.clear()


def bench_attach(bench: Bench, runs: int) -> dict[str, object]:
    spec = bench.bridge(24)
    new_bridge = timed(lambda: ensure_bridge(spec))
    again = [timed(lambda: ensure_bridge(spec)) for _ in range(20)]
    namespaces = bench.netns(runs)
    attachments = [bench.attachment(spec, n) for n in range(runs)]
    for ns, a in zip(namespaces[:3], attachments[:3], strict=True):  # warm-up: imports, caches
        attach(ns.fd, a)
        detach(a.host_ifname)
    attach_times = [
        timed(lambda ns=ns, a=a: attach(ns.fd, a))  # type: ignore[misc]
        for ns, a in zip(namespaces, attachments, strict=True)
    ]
    reattach = [
        timed(lambda ns=ns, a=a: attach(ns.fd, a))  # type: ignore[misc]
        for ns, a in zip(namespaces[:20], attachments[:20], strict=True)
    ]
    host_handle = [timed(lambda: Rtnl().close()) for _ in range(50)]

    def open_close_inside(ns: Netns) -> None:
        with netns_rtnl(ns.fd):
            pass

    inside_handle = [timed(lambda: open_close_inside(namespaces[0])) for _ in range(50)]
    detach_times = [timed(lambda a=a: detach(a.host_ifname)) for a in attachments]  # type: ignore[misc]
    for made in namespaces:
        made.end()
    bench.namespaces.clear()
    remove = timed(lambda: remove_bridge(spec.name))
    return {
        "runs": runs,
        "attach": ms(attach_times),
        "attach_again_nothing_to_do": ms(reattach),
        "detach": ms(detach_times),
        "ensure_bridge_new_ms": round(new_bridge * 1000, 3),
        "ensure_bridge_existing": ms(again),
        "remove_bridge_ms": round(remove * 1000, 3),
        "host_netlink_handle_open_close": ms(host_handle),
        "netns_netlink_handle_open_close": ms(inside_handle),
    }


def bench_crowd(bench: Bench, count: int) -> dict[str, object]:
    spec = bench.bridge(22 if count > 250 else 24)
    ensure_bridge(spec)
    namespaces = bench.netns(count)
    attachments = [bench.attachment(spec, n) for n in range(count)]
    times = []
    started = time.perf_counter()
    for ns, a in zip(namespaces, attachments, strict=True):
        times.append(timed(lambda ns=ns, a=a: attach(ns.fd, a)))  # type: ignore[misc]
    all_attached = time.perf_counter() - started
    with host_iproute() as ipr:
        bridge_index = ipr.link_lookup(ifname=spec.name)[0]
        ports = [
            link
            for link in ipr.link("dump")
            if link.get("master") == bridge_index and link["flags"] & 1
        ]
    # Every namespace sends to the gateway; the host answers each; every answer must come.
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((str(spec.gateway), 0))
    clients = [ns.socket(socket.AF_INET, socket.SOCK_DGRAM) for ns in namespaces]
    try:
        started = time.perf_counter()
        for n, client in enumerate(clients):
            client.sendto(f"ping {n}".encode(), server.getsockname())
        server.settimeout(5)
        answered_to = set()
        while len(answered_to) < count:
            try:
                data, source = server.recvfrom(64)
            except TimeoutError:
                break
            server.sendto(b"pong " + data[5:], source)
            answered_to.add(source[0])
        received = 0
        pending = {c.fileno(): c for c in clients}
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(list(pending), [], [], 0.5)
            for fd in ready:
                if pending.pop(fd).recv(64).startswith(b"pong"):
                    received += 1
        round_trips = time.perf_counter() - started
    finally:
        server.close()
        for client in clients:
            client.close()
    return {
        "namespaces": count,
        "attach_each": ms(times),
        "attach_all_s": round(all_attached, 3),
        "ports_up_on_bridge": len(ports),
        "reached_gateway": len(answered_to),
        "got_answer": received,
        "udp_round_trips_all_s": round(round_trips, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--crowd", type=int, default=200)
    args = parser.parse_args()
    bench = Bench()
    try:
        result: dict[str, object] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "kernel": Path("/proc/sys/kernel/osrelease").read_text().strip(),
            "python": sys.version.split()[0],
            "attach": bench_attach(bench, args.runs),
            "crowd": bench_crowd(bench, args.crowd),
        }
    finally:
        bench.cleanup()
    print(json.dumps(result, indent=2))
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "network.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
