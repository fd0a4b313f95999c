"""Container start latency and supervision memory, against runc in the same run.

Start: create + start of a container running `true` (its shim makes it: init.c), until its
process has been executed (our launch returns once the service's binary replaced the init)
and has ended, median over N runs; runc: `runc run` of the same root filesystem (a copy of
the image's merged tree) with an equivalent config.json, also until `true` ended.
Memory: 50 containers running `sleep`; the RSS of their shims plus the group's supervisor,
divided by 50 (containerd-shim ~13 MB and conmon ~2 MB per container, measured by the issue).

Run as root: .venv/bin/python bench/runtime_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cgroups import detect
from engine.container.config import ContainerConfig
from engine.container.runtime import Runtime
from engine.images.archive import ConfigChanges, import_rootfs
from engine.images.reference import parse_reference
from engine.images.store import ImageStore
from engine.supervisor import ensure_supervisor, supervisor_pid
from tests.images.imagetools import busybox_rootfs, tar_dir


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_runc(rootfs: Path, runs: int) -> list[float]:
    bundle = rootfs.parent
    (bundle / "config.json").unlink(missing_ok=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    config["root"] = {"path": str(rootfs), "readonly": False}
    (bundle / "config.json").write_text(json.dumps(config))
    times = []
    for _n in range(runs):
        name = f"bench-{secrets.token_hex(4)}"
        started = time.perf_counter()
        subprocess.run(
            ["runc", "run", "--bundle", str(bundle), name],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--containers", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runtime-bench-"))
    root = work / "state"
    group = f"bench{os.getpid()}"
    runtime = Runtime(root, detect(), cgroup_parent=f"composer-bench-{secrets.token_hex(3)}")
    try:
        rootfs = busybox_rootfs(work / "bundle" / "rootfs")
        store = ImageStore(root / "images")
        image = import_rootfs(
            store,
            tar_dir(rootfs, work / "rootfs.tar", compression=None),
            parse_reference("bench:1"),
            ConfigChanges(),
        )
        layers = tuple(str(store.layer_link(layer.diff_id)) for layer in image.layers)

        def config(*argv: str, **fields: object) -> ContainerConfig:
            return ContainerConfig(
                id=f"b-{secrets.token_hex(4)}",
                image_id=image.id,
                layers=layers,
                argv=argv,
                **fields,
            )  # type: ignore[arg-type]

        def create_start_wait(runs: int) -> list[float]:
            times = []
            for _ in range(runs):
                made = config("true")
                started = time.perf_counter()
                runtime.create(made)
                runtime.start(made.id)
                runtime.wait(made.id, 10)
                times.append(time.perf_counter() - started)
                runtime.remove(made.id)
            return times

        ours = create_start_wait(args.runs)
        start_only = []
        for _ in range(min(args.runs, 20)):
            made = config("true")
            runtime.create(made)
            started = time.perf_counter()
            runtime.start(made.id)
            start_only.append(time.perf_counter() - started)
            runtime.wait(made.id, 10)
            runtime.remove(made.id)
        theirs = bench_runc(rootfs, args.runs) if shutil.which("runc") else []

        running = [config("sleep", "600", group=group) for _ in range(args.containers)]
        for made in running:
            runtime.create(made)
            runtime.start(made.id)
        supervisor = ensure_supervisor(root, group)
        time.sleep(2)
        shims = [
            json.loads((runtime.containers / m.id / "state.json").read_text())["shim_pid"]
            for m in running
        ]
        shim_kb = [rss_kb(pid) for pid in shims]
        supervisor_kb = rss_kb(supervisor)
        per_container = (sum(shim_kb) + supervisor_kb) / len(running)
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "runs": args.runs,
            "create_start_wait_true_ms_median": round(statistics.median(ours) * 1000, 1),
            "start_only_ms_median": round(statistics.median(start_only) * 1000, 1),
            "runc_run_true_ms_median": round(statistics.median(theirs) * 1000, 1)
            if theirs
            else None,
            "containers": len(running),
            "shim_rss_kb_median": statistics.median(shim_kb),
            "supervisor_rss_kb": supervisor_kb,
            "supervision_kb_per_container": round(per_container),
        }
        if theirs:
            runc = statistics.median(theirs)
            result["ratio_ours_to_runc"] = round(statistics.median(ours) / runc, 2)
        print(json.dumps(result, indent=2))
        out = Path(__file__).with_name("results")
        out.mkdir(exist_ok=True)
        (out / "runtime.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        pid = supervisor_pid(root, group)
        if pid:
            os.kill(pid, 9)
        for container_id in runtime.ids():
            runtime.remove(container_id, force=True)
        runtime.cgroups.remove(runtime.cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
