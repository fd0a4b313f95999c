"""Wall time of `composer config` on a generated 200-service stack, interpreter start included.

Run: .venv/bin/python bench/config_bench.py [--runs N]
Compares with `docker-compose config` on the same file when docker-compose is installed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVICES = 200


def generate(directory: Path) -> Path:
    """A realistic stack: one base service, 200 services depending on it (no `name:` key:
    docker-compose 1.29 refuses it; the project name is given with -p)."""
    lines = ["services:", "  base:", "    image: busybox:local"]
    for i in range(SERVICES):
        lines += [
            f"  svc{i}:",
            "    image: busybox:local",
            "    command: ['httpd', '-f', '-p', '80']",
            "    environment: {MODE: prod, INDEX: '" + str(i) + "'}",
            f"    ports: ['127.0.0.1:{20000 + i}:80']",
            "    volumes: ['./data:/data:ro', 'shared:/shared']",
            "    depends_on: [base]",
            "    healthcheck: {test: 'wget -q -O /dev/null http://localhost/', interval: 5s}",
            "    labels: [tier=web]",
            f"    networks: [net{i % 4}]",
            "    deploy: {resources: {limits: {cpus: '0.5', memory: 64m}}}",
        ]
    lines += ["networks:"] + [f"  net{n}: {{}}" for n in range(4)]
    lines += ["volumes:", "  shared: {}"]
    path = directory / "compose.yaml"
    path.write_text("\n".join(lines) + "\n")
    (directory / "data").mkdir()
    return path


def timed(command: list[str], runs: int) -> list[float]:
    for _ in range(2):  # warm the page cache and bytecode
        subprocess.run(command, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def row(name: str, times: list[float]) -> str:
    return f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    composer = str(Path(sys.executable).parent / "composer")
    with tempfile.TemporaryDirectory() as tmp:
        stack = generate(Path(tmp))
        results = {
            "composer config": timed([composer, "-p", "bench", "config", str(stack)], runs),
            "composer config -q": timed(
                [composer, "-p", "bench", "config", "-q", str(stack)], runs
            ),
        }
        peer = shutil.which("docker-compose")
        if peer:
            results["docker-compose config"] = timed(
                [peer, "-p", "bench", "-f", str(stack), "config"], runs
            )
    print(f"{SERVICES + 1} services, {runs} runs each (seconds, interpreter start included)")
    print("| command | median | min | max |\n|---|---|---|---|")
    for name, times in results.items():
        print(row(name, times))
    if "docker-compose config" in results:
        ratio = statistics.median(results["docker-compose config"]) / statistics.median(
            results["composer config"]
        )
        print(f"docker-compose / composer: {ratio:.1f}x")
    else:
        print("docker-compose is not installed: no peer figure")


if __name__ == "__main__":
    main()
