"""Published ports: what the userland proxy costs, against connecting to the backend directly.

Three processes, as in a real stack: a backend (a threaded socket server on 127.0.0.1 that
answers a request of N bytes with N bytes from memory, then closes), the proxy (a
`ProxyThread` publishing the backend on a random host port of 127.0.0.1, as the stack's
supervisor will run it), and this client (blocking sockets, `recv_into` a reused buffer).
Direct and proxied runs alternate so that a change in the machine's speed touches both alike.

- Connect latency: connect + a 1-byte request and answer + close; median over N connections.
- 1 MB transfers: N connections one after another, each receiving 1 MiB; MB/s over all of them.
- 10 MB single stream: one connection receiving 10 MiB; median MB/s over a few runs.

The target (from the issue): proxied throughput ≥ 50 % of direct for 1 MB transfers.

Run: .venv/bin/python bench/ports_bench.py [--connects 200] [--transfers 200] [--streams 7]
Writes bench/results/ports.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import socket
import socketserver
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_MIB = 1024 * 1024
_REQUEST = struct.Struct("!Q")  # the number of bytes the client wants


def run_backend() -> None:
    """Answer each connection's request of N bytes with N bytes, then close."""
    data = memoryview(os.urandom(16 * _MIB))

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            header = b""
            while len(header) < _REQUEST.size:
                chunk = sock.recv(_REQUEST.size - len(header))
                if not chunk:
                    return
                header += chunk
            (size,) = _REQUEST.unpack(header)
            while size > 0:
                sent = sock.send(data[: min(size, len(data))])
                size -= sent
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)  # the client closes first: no TIME_WAIT pile-up on the server side

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer.request_queue_size = 1024
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as server:
        print(server.server_address[1], flush=True)
        server.serve_forever()


def run_proxy(target_port: int) -> None:
    """Publish the backend on a random port of 127.0.0.1 until stdin closes."""
    from engine.network.ports import PortBinding, ProxyThread

    with ProxyThread() as proxy:
        published = proxy.add(
            PortBinding(
                service="bench",
                host_ip="127.0.0.1",
                container_port=target_port,
                target_ip="127.0.0.1",
            )
        )
        print(published.host_port, flush=True)
        sys.stdin.read()


def _start(*role: str) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, __file__, *role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, int(child.stdout.readline())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch(port: int, size: int, buffer: bytearray) -> int:
    """Connect, ask for `size` bytes, read them to the end; the bytes received."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_REQUEST.pack(size))
        view = memoryview(buffer)
        total = 0
        while n := sock.recv_into(view):
            total += n
    if total != size:
        raise RuntimeError(f"port {port}: received {total} bytes of {size}")
    return total


def latencies(port: int, count: int, buffer: bytearray) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        fetch(port, 1, buffer)
        times.append(time.perf_counter() - started)
    return times


def throughput(port: int, count: int, size: int, buffer: bytearray) -> float:
    """MB/s (10^6 bytes per second) over `count` fetches of `size` bytes, one after another."""
    started = time.perf_counter()
    total = sum(fetch(port, size, buffer) for _ in range(count))
    return total / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--transfers", type=int, default=200)
    parser.add_argument("--streams", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=4, help="alternations direct/proxied")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = parser.parse_args()

    backend, backend_port = _start("--backend")
    proxy, proxy_port = _start("--proxy", str(backend_port))
    buffer = bytearray(_MIB)
    try:
        ports = {"direct": backend_port, "proxy": proxy_port}
        for port in ports.values():  # warm up: threads, caches, the proxy's first connection
            throughput(port, 20, _MIB, buffer)
            latencies(port, 20, buffer)
        connect: dict[str, list[float]] = {name: [] for name in ports}
        transfer: dict[str, list[float]] = {name: [] for name in ports}
        stream: dict[str, list[float]] = {name: [] for name in ports}
        proxy_cpu = {"connect": 0.0, "transfer": 0.0}  # the proxy's CPU seconds in each phase
        for round_ in range(args.rounds):
            order = list(ports.items()) if round_ % 2 == 0 else list(reversed(ports.items()))
            for name, port in order:
                before = cpu_seconds(proxy.pid)
                connect[name] += latencies(port, args.connects // args.rounds, buffer)
                middle = cpu_seconds(proxy.pid)
                transfer[name].append(throughput(port, args.transfers // args.rounds, _MIB, buffer))
                if name == "proxy":
                    proxy_cpu["connect"] += middle - before
                    proxy_cpu["transfer"] += cpu_seconds(proxy.pid) - middle
        big = bytearray(_MIB)
        for run in range(args.streams):
            order = list(ports.items()) if run % 2 == 0 else list(reversed(ports.items()))
            for name, port in order:
                stream[name].append(throughput(port, 1, 10 * _MIB, big))
        proxy_rss_kb = next(
            int(line.split()[1])
            for line in Path(f"/proc/{proxy.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    finally:
        assert proxy.stdin is not None and backend.stdin is not None
        proxy.stdin.close()
        proxy.wait(10)
        backend.kill()
        backend.wait(10)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 3)

    # Total MB over total time for the transfers: each round moved the same number of bytes.
    def overall(rates: list[float]) -> float:
        return round(len(rates) / sum(1 / rate for rate in rates), 1)

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join([".venv/bin/python", "bench/ports_bench.py", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "anyio": importlib.metadata.version("anyio"),
        },
        "proxy_rss_kb": proxy_rss_kb,
        # CPU time of the proxy process (clock ticks of 10 ms: read as ±10 %)
        "proxy_cpu_us_per_connect": round(proxy_cpu["connect"] / len(connect["proxy"]) * 1e6),
        "proxy_cpu_us_per_1mb_transfer": round(
            proxy_cpu["transfer"] / (args.transfers // args.rounds * args.rounds) * 1e6
        ),
        "connect_roundtrip_ms_median": {name: ms(values) for name, values in connect.items()},
        "connects": len(connect["proxy"]),
        "transfer_1mb_mb_per_s": {name: overall(rates) for name, rates in transfer.items()},
        "transfer_1mb_rounds_mb_per_s": {
            name: [round(rate, 1) for rate in rates] for name, rates in transfer.items()
        },
        "transfers": args.transfers // args.rounds * args.rounds,
        "stream_10mb_mb_per_s_median": {
            name: round(statistics.median(rates), 1) for name, rates in stream.items()
        },
        "streams": args.streams,
    }
    result["ratio_proxy_to_direct"] = {
        "connect_latency": round(ms(connect["proxy"]) / ms(connect["direct"]), 2),
        "transfer_1mb_throughput": round(
            overall(transfer["proxy"]) / overall(transfer["direct"]), 2
        ),
        "stream_10mb_throughput": round(
            statistics.median(stream["proxy"]) / statistics.median(stream["direct"]), 2
        ),
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(exist_ok=True)
    (args.out / "ports.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--backend"]:
        run_backend()
    elif sys.argv[1:2] == ["--proxy"]:
        run_proxy(int(sys.argv[2]))
    else:
        main()
