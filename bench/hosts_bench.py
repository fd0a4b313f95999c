"""Discovery: how soon peers' hosts files follow a stack's changes (target: within 100 ms).

A stack of `web` and 10 `client` replicas (busybox), in a temporary COMPOSER_ROOT:
- scale up: `up --scale web=2`; the time from web-2's process starting to every client's
  hosts file naming it (negative: the peers knew before it started — addresses are allocated
  before anything starts, and peers' files rewritten then);
- scale down: `up --scale web=1`; the time from web-2's directory disappearing to every
  client's hosts file no longer naming it;
- tampering: a client's hosts file overwritten from outside; the time until the stack's
  reconciler (inotify) has rewritten it.
Each repeated `--runs` times (default 10); medians. Run as root:
.venv/bin/python bench/hosts_bench.py [--runs 10]
Writes bench/results/hosts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPOSER = str(Path(sys.executable).with_name("composer"))
CLIENTS = 10
STACK = f"""name: hostsbench
services:
  web:
    image: busybox:local
    command: ["httpd", "-f", "-p", "80"]
  client:
    image: busybox:local
    command: ["sleep", "3600"]
    deploy: {{replicas: {CLIENTS}}}
"""


def composer(root: Path, stack: Path, *args: str) -> None:
    env = {**os.environ, "COMPOSER_ROOT": str(root)}
    subprocess.run([COMPOSER, "-f", str(stack), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def hosts(root: Path, number: int) -> Path:
    return root / "stacks" / "hostsbench" / "files" / f"hostsbench-client-{number}" / "hosts"


def watch(root: Path, condition: str, stop: threading.Event, seen: dict[str, float]) -> None:
    """Poll every client's hosts file (every 0.5 ms) and note when all satisfy `condition`
    ("has" or "lacks" web-2), and when web-2's directory appears or disappears."""
    directory = root / "containers" / "hostsbench-web-2"
    while not stop.is_set():
        now = time.time()
        texts = []
        for n in range(1, CLIENTS + 1):
            try:
                texts.append(hosts(root, n).read_text())
            except OSError:
                texts.append("")
        named = ["hostsbench-web-2" in t for t in texts]
        if "hosts" not in seen and (all(named) if condition == "has" else not any(named)):
            seen["hosts"] = now
        if condition == "lacks" and "gone" not in seen and not directory.exists():
            seen["gone"] = now
        if len(seen) == (1 if condition == "has" else 2):
            return
        time.sleep(0.0005)


def started_at(root: Path, name: str) -> float:
    from datetime import datetime

    record = json.loads((root / "containers" / name / "state.json").read_text())
    return datetime.fromisoformat(record["started_at"].replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="hostsbench.") as temp:
        root, stack = Path(temp) / "root", Path(temp) / "compose.yaml"
        stack.write_text(STACK)
        env = {
            **os.environ,
            "COMPOSER_ROOT": str(root),
            "PATH": f"{Path(COMPOSER).parent}:{os.environ['PATH']}",
        }
        subprocess.run([str(REPO / "examples" / "busybox-image.sh")], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        up, down, tamper = [], [], []
        try:
            composer(root, stack, "up", "-d", "--progress", "quiet")
            for _ in range(runs):
                for condition, scale in (("has", "web=2"), ("lacks", "web=1")):
                    seen: dict[str, float] = {}
                    stop = threading.Event()
                    watcher = threading.Thread(target=watch, args=(root, condition, stop, seen))
                    watcher.start()
                    composer(root, stack, "up", "-d", "--progress", "quiet", "--scale", scale)
                    watcher.join(10)
                    stop.set()
                    if condition == "has":
                        up.append(seen["hosts"] - started_at(root, "hostsbench-web-2"))
                    else:
                        down.append(seen["hosts"] - seen["gone"])
                path = hosts(root, 1)
                good = path.read_text()
                time.sleep(0.2)
                began = time.time()
                with open(path, "r+") as f:  # in place, as an edit inside the container would
                    f.write("10.9.9.9 web\n")
                    f.truncate()
                while path.read_text() != good:
                    if time.time() - began > 30:
                        raise SystemExit("the hosts file was not healed within 30 s")
                    time.sleep(0.0005)
                tamper.append(time.time() - began)
        finally:
            composer(root, stack, "down", "-t", "0", "--progress", "quiet")

    def ms(values: list[float]) -> dict[str, float]:
        return {
            "median_ms": round(statistics.median(values) * 1000, 1),
            "min_ms": round(min(values) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
        }

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": ".venv/bin/python bench/hosts_bench.py",
        "runs": runs,
        "clients": CLIENTS,
        "load_average": os.getloadavg()[0],
        "scale_up_peers_know_relative_to_its_start": ms(up),
        "scale_down_peers_forget_after_removal": ms(down),
        "tampered_hosts_file_rewritten_after": ms(tamper),
    }
    out = REPO / "bench" / "results" / "hosts.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
