"""cgroup v2: one unified hierarchy, with the controllers a group needs enabled in the
cgroup.subtree_control of every group above it."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Final

from engine.cgroups.base import (
    CgroupError,
    CgroupLimits,
    CgroupStats,
    check_limits,
    check_name,
    needed_controllers,
    procs,
    read_int,
    read_keyed,
    read_text,
    rmdir,
    signal_all,
    wait_until,
    write,
)

__all__ = ["V2", "shares_to_weight"]

# Enabled down the path whenever the root offers them: limits need some, usage figures others.
_ENABLED: Final[tuple[str, ...]] = ("cpu", "cpuset", "io", "memory", "pids")


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144, 1024 the default) to cpu.weight (1..10000), as runc converts."""
    shares = min(max(shares, 2), 262_144)
    return 1 + ((shares - 2) * 9999) // 262_142


class V2:
    """The unified hierarchy mounted at `root` (a directory with cgroup.controllers)."""

    version = 2

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), busy_timeout: float = 3.0) -> None:
        self.root = root
        self.busy_timeout = busy_timeout  # how long remove waits for exiting processes

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def create(self, name: str, limits: CgroupLimits) -> None:
        check_limits(limits)
        available = (read_text(self.root / "cgroup.controllers") or "").split()
        absent = [c for c in needed_controllers(limits) if c not in available]
        if absent:
            raise CgroupError(
                f"the {', '.join(absent)} controller{'s are' if len(absent) > 1 else ' is'} "
                f"not available in {self.root} (cgroup.controllers: {' '.join(available)})"
            )
        wanted = [c for c in _ENABLED if c in available]
        path = self.root
        for part in check_name(name).split("/"):
            _enable(path, wanted)
            path = path / part
            path.mkdir(exist_ok=True)
        if limits.cpu_quota_us is not None:
            quota = str(limits.cpu_quota_us) if limits.cpu_quota_us > 0 else "max"
            write(path / "cpu.max", f"{quota} {limits.cpu_period_us}")
        if limits.cpu_shares is not None:
            write(path / "cpu.weight", str(shares_to_weight(limits.cpu_shares)))
        if limits.cpuset_cpus is not None:
            write(path / "cpuset.cpus", limits.cpuset_cpus)
        if limits.cpuset_mems is not None:
            write(path / "cpuset.mems", limits.cpuset_mems)
        if limits.memory_limit is not None:
            write(path / "memory.max", _bytes(limits.memory_limit))
        if limits.memory_swap is not None:
            _set_swap(path, limits)
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
        return procs([self._path(name)])

    def exists(self, name: str) -> bool:
        return self._path(name).is_dir()

    def stats(self, name: str) -> CgroupStats:
        path = self._path(name)
        if not path.is_dir():
            raise CgroupError(f"no cgroup {name} under {self.root}")
        read_bytes, write_bytes = _io(path)
        return CgroupStats(
            cpu_usage_ns=read_keyed(path / "cpu.stat").get("usage_usec", 0) * 1000,
            memory_usage=read_int(path / "memory.current") or 0,
            memory_limit=read_int(path / "memory.max"),
            pids=read_int(path / "pids.current") or len(self.pids(name)),
            io_read_bytes=read_bytes,
            io_write_bytes=write_bytes,
            oom_kills=self.oom_kills(name),
        )

    def oom_kills(self, name: str) -> int:
        return read_keyed(self._path(name) / "memory.events").get("oom_kill", 0)

    def _set_frozen(self, name: str, value: int) -> None:
        path = self._path(name)
        write(path / "cgroup.freeze", str(value))
        events = path / "cgroup.events"
        wait_until(
            lambda: read_keyed(events).get("frozen") == value,
            f"cgroup {name} did not {'freeze' if value else 'thaw'}",
        )

    def freeze(self, name: str) -> None:
        try:
            self._set_frozen(name, 1)
        except CgroupError:
            with contextlib.suppress(CgroupError):  # not left half frozen
                self._set_frozen(name, 0)
            raise

    def thaw(self, name: str) -> None:
        self._set_frozen(name, 0)

    def frozen(self, name: str) -> bool:
        return read_int(self._path(name) / "cgroup.freeze") == 1

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        path = self._path(name)
        if not path.is_dir():
            return
        if sig == signal.SIGKILL and (path / "cgroup.kill").exists():  # kernel >= 5.14
            write(path / "cgroup.kill", "1")  # the whole subtree, forks included
            return
        signal_all(self.pids(name), sig)

    def remove(self, name: str) -> None:
        rmdir(self._path(name), time.monotonic() + self.busy_timeout)


def _enable(path: Path, controllers: list[str]) -> None:
    """Enable `controllers` for the children of `path` (those not enabled yet)."""
    enabled = (read_text(path / "cgroup.subtree_control") or "").split()
    missing = [c for c in controllers if c not in enabled]
    if missing:
        write(path / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _bytes(value: int) -> str:
    return "max" if value < 0 else str(value)


def _set_swap(path: Path, limits: CgroupLimits) -> None:
    """memory.swap.max counts swap alone: memswap_limit less mem_limit (as runc converts)."""
    swap, memory = limits.memory_swap, limits.memory_limit
    value = "max" if swap is None or swap == -1 else str(swap - (memory or 0))
    if not (path / "memory.swap.max").exists():
        if value == "max":
            return  # no swap accounting: nothing to lift
        raise CgroupError(
            f"memswap_limit needs swap accounting, which this kernel has off "
            f"({path / 'memory.swap.max'} is missing)"
        )
    write(path / "memory.swap.max", value)


def _io(path: Path) -> tuple[int | None, int | None]:
    """Bytes read and written, summed over devices ("8:0 rbytes=… wbytes=…" lines)."""
    text = read_text(path / "io.stat")
    if text is None:
        return None, None
    totals = {"rbytes": 0, "wbytes": 0}
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key in totals and value.isdigit():
                totals[key] += int(value)
    return totals["rbytes"], totals["wbytes"]
