"""cgroup v1: one hierarchy per controller (cpu, memory, pids, cpuset, freezer, blkio)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

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

__all__ = ["V1"]

_CONTROLLERS: Final = ("cpu", "cpuacct", "memory", "pids", "cpuset", "freezer", "blkio")


class V1:
    version = 1

    def __init__(self, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.root = root
        seen: dict[str, Path] = {}
        for controller in _CONTROLLERS:
            path = root / controller
            if path.is_dir():
                seen.setdefault(os.path.realpath(path), path)
        self._hierarchies = {p.name: p for p in seen.values()}
        self._by_controller = {c: root / c for c in _CONTROLLERS if (root / c).is_dir()}

    def _path(self, controller: str, name: str) -> Path:
        base = self._by_controller.get(controller)
        if base is None:
            raise CgroupError(f"the {controller} cgroup controller is not mounted at {self.root}")
        return base / check_name(name)

    def _all(self, name: str) -> list[Path]:
        return [base / check_name(name) for base in self._hierarchies.values()]

    def create(self, name: str, limits: CgroupLimits) -> None:
        for base in self._hierarchies.values():
            path = base
            for part in check_name(name).split("/"):
                path = path / part
                if not path.is_dir():
                    path.mkdir()
                    if (path / "cpuset.cpus").exists():  # empty cpusets admit no process
                        write(path / "cpuset.cpus", (path.parent / "cpuset.cpus").read_text())
                        write(path / "cpuset.mems", (path.parent / "cpuset.mems").read_text())
        cpu = self._path("cpu", name)
        if limits.cpu_quota_us is not None:
            write(cpu / "cpu.cfs_period_us", str(limits.cpu_period_us))
            write(cpu / "cpu.cfs_quota_us", str(limits.cpu_quota_us))
        if limits.cpu_shares is not None:
            write(cpu / "cpu.shares", str(limits.cpu_shares))
        if limits.cpuset_cpus is not None:
            write(self._path("cpuset", name) / "cpuset.cpus", limits.cpuset_cpus)
        if limits.cpuset_mems is not None:
            write(self._path("cpuset", name) / "cpuset.mems", limits.cpuset_mems)
        memory = self._path("memory", name)
        if limits.memory_limit is not None:
            write(memory / "memory.limit_in_bytes", str(limits.memory_limit))
        if limits.memory_swap is not None:
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():
                write(swap, str(limits.memory_swap))
            elif limits.memory_swap != -1:
                raise CgroupError("memswap_limit needs swap accounting, which this kernel has off")
        if limits.memory_reservation is not None:
            write(memory / "memory.soft_limit_in_bytes", str(limits.memory_reservation))
        if limits.pids_limit is not None:
            value = "max" if limits.pids_limit <= 0 else str(limits.pids_limit)
            write(self._path("pids", name) / "pids.max", value)

    def join_files(self, name: str) -> list[Path]:
        return [path / "cgroup.procs" for path in self._all(name)]

    def oom_file(self, name: str) -> str:
        return str(self._path("memory", name) / "memory.oom_control")

    def add(self, name: str, pid: int) -> None:
        for path in self.join_files(name):
            write(path, str(pid))

    def pids(self, name: str) -> list[int]:
        try:
            text = (self._path("pids", name) / "cgroup.procs").read_text()
        except FileNotFoundError:
            return []
        return [int(line) for line in text.split()]

    def exists(self, name: str) -> bool:
        return any(path.is_dir() for path in self._all(name))

    def stats(self, name: str) -> CgroupStats:
        memory = self._path("memory", name)
        limit = read_int(memory / "memory.limit_in_bytes")
        read_bytes = write_bytes = 0
        try:
            blkio = (self._path("blkio", name) / "blkio.throttle.io_service_bytes").read_text()
            for line in blkio.splitlines():
                fields = line.split()
                if len(fields) == 3 and fields[1] == "Read":
                    read_bytes += int(fields[2])
                elif len(fields) == 3 and fields[1] == "Write":
                    write_bytes += int(fields[2])
        except (FileNotFoundError, CgroupError):
            pass
        return CgroupStats(
            cpu_usage_ns=read_int(self._path("cpuacct", name) / "cpuacct.usage") or 0,
            memory_usage=read_int(memory / "memory.usage_in_bytes") or 0,
            memory_limit=limit if limit is not None and limit < 1 << 60 else None,
            pids=read_int(self._path("pids", name) / "pids.current") or 0,
            io_read_bytes=read_bytes,
            io_write_bytes=write_bytes,
            oom_kills=self.oom_kills(name),
        )

    def oom_kills(self, name: str) -> int:
        try:
            text = (self._path("memory", name) / "memory.oom_control").read_text()
        except FileNotFoundError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def _freezer(self, name: str, state: str) -> None:
        path = self._path("freezer", name) / "freezer.state"
        write(path, state)
        deadline = time.monotonic() + 5
        while path.read_text().strip() != state:
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup {name} did not become {state}")
            time.sleep(0.001)

    def freeze(self, name: str) -> None:
        self._freezer(name, "FROZEN")

    def thaw(self, name: str) -> None:
        self._freezer(name, "THAWED")

    def frozen(self, name: str) -> bool:
        try:
            return (self._path("freezer", name) / "freezer.state").read_text().strip() != "THAWED"
        except FileNotFoundError:
            return False

    def kill(self, name: str, sig: int = 9) -> None:
        if not self.exists(name):
            return
        self.freeze(name)  # no fork escapes while each process is signalled
        try:
            signal_all(self.pids(name), sig)
        finally:
            self.thaw(name)

    def remove(self, name: str) -> None:
        for path in self._all(name):
            rmdir(path)
