"""cgroup v2: one unified hierarchy; controllers enabled down the path in subtree_control."""

from __future__ import annotations

import time
from pathlib import Path

from engine.cgroups.base import (
    CgroupError,
    CgroupLimits,
    CgroupStats,
    check_name,
    read_int,
    rmdir,
    signal_all,
    write,
)

__all__ = ["V2", "shares_to_weight"]


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), as runc converts them."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


class V2:
    version = 2

    def __init__(self, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def _needed(self, limits: CgroupLimits) -> list[str]:
        needed = []
        if limits.cpu_quota_us is not None or limits.cpu_shares is not None:
            needed.append("cpu")
        if limits.cpuset_cpus is not None or limits.cpuset_mems is not None:
            needed.append("cpuset")
        if (limits.memory_limit, limits.memory_swap, limits.memory_reservation) != (None,) * 3:
            needed.append("memory")
        if limits.pids_limit is not None:
            needed.append("pids")
        return needed

    def create(self, name: str, limits: CgroupLimits) -> None:
        available = set((self.root / "cgroup.controllers").read_text().split())
        wanted = [c for c in ("cpu", "cpuset", "memory", "pids", "io") if c in available]
        for controller in self._needed(limits):
            if controller not in available:
                raise CgroupError(f"the {controller} controller is not available in {self.root}")
        path = self.root
        for part in check_name(name).split("/"):
            enabled = set((path / "cgroup.subtree_control").read_text().split())
            missing = [c for c in wanted if c not in enabled]
            if missing:
                write(path / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
            path = path / part
            path.mkdir(exist_ok=True)
        if limits.cpu_quota_us is not None:
            write(path / "cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}")
        if limits.cpu_shares is not None:
            write(path / "cpu.weight", str(shares_to_weight(limits.cpu_shares)))
        if limits.cpuset_cpus is not None:
            write(path / "cpuset.cpus", limits.cpuset_cpus)
        if limits.cpuset_mems is not None:
            write(path / "cpuset.mems", limits.cpuset_mems)
        if limits.memory_limit is not None:
            write(path / "memory.max", str(limits.memory_limit))
        if limits.memory_swap is not None:
            if limits.memory_swap == -1:
                swap = "max"
            else:
                swap = str(max(0, limits.memory_swap - (limits.memory_limit or 0)))
            write(path / "memory.swap.max", swap)
        if limits.memory_reservation is not None:
            write(path / "memory.low", str(limits.memory_reservation))
        if limits.pids_limit is not None:
            value = "max" if limits.pids_limit <= 0 else str(limits.pids_limit)
            write(path / "pids.max", value)

    def join_files(self, name: str) -> list[Path]:
        return [self._path(name) / "cgroup.procs"]

    def oom_file(self, name: str) -> str:
        return str(self._path(name) / "memory.events")

    def add(self, name: str, pid: int) -> None:
        write(self._path(name) / "cgroup.procs", str(pid))

    def pids(self, name: str) -> list[int]:
        found: list[int] = []
        path = self._path(name)
        if not path.is_dir():
            return found
        for procs in [path / "cgroup.procs", *path.rglob("*/cgroup.procs")]:
            try:
                found += [int(line) for line in procs.read_text().split()]
            except FileNotFoundError:
                continue
        return found

    def exists(self, name: str) -> bool:
        return self._path(name).is_dir()

    def _keyed(self, file: Path) -> dict[str, int]:
        try:
            text = file.read_text()
        except FileNotFoundError:
            return {}
        values = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                values[key] = int(value)
        return values

    def stats(self, name: str) -> CgroupStats:
        path = self._path(name)
        limit = read_int(path / "memory.max")
        read_bytes = write_bytes = None
        try:
            io = (path / "io.stat").read_text()
            read_bytes = write_bytes = 0
            for line in io.splitlines():
                for field in line.split()[1:]:
                    key, _, value = field.partition("=")
                    if key == "rbytes":
                        read_bytes += int(value)
                    elif key == "wbytes":
                        write_bytes += int(value)
        except FileNotFoundError:
            pass
        return CgroupStats(
            cpu_usage_ns=self._keyed(path / "cpu.stat").get("usage_usec", 0) * 1000,
            memory_usage=read_int(path / "memory.current") or 0,
            memory_limit=limit,
            pids=read_int(path / "pids.current") or len(self.pids(name)),
            io_read_bytes=read_bytes,
            io_write_bytes=write_bytes,
            oom_kills=self.oom_kills(name),
        )

    def oom_kills(self, name: str) -> int:
        return self._keyed(self._path(name) / "memory.events").get("oom_kill", 0)

    def _freeze(self, name: str, value: str) -> None:
        path = self._path(name)
        write(path / "cgroup.freeze", value)
        deadline = time.monotonic() + 5
        expected = f"frozen {value}"
        while expected not in (path / "cgroup.events").read_text().splitlines():
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup {name} did not {'freeze' if value == '1' else 'thaw'}")
            time.sleep(0.001)

    def freeze(self, name: str) -> None:
        self._freeze(name, "1")

    def thaw(self, name: str) -> None:
        self._freeze(name, "0")

    def frozen(self, name: str) -> bool:
        return read_int(self._path(name) / "cgroup.freeze") == 1

    def kill(self, name: str, sig: int = 9) -> None:
        path = self._path(name)
        if not path.is_dir():
            return
        if sig == 9 and (path / "cgroup.kill").exists():
            write(path / "cgroup.kill", "1")
            return
        signal_all(self.pids(name), sig)

    def remove(self, name: str) -> None:
        rmdir(self._path(name))
