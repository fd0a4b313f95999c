"""cgroup v1: one hierarchy per controller (cpu, cpuacct, cpuset, memory, pids, freezer, blkio),
each mounted under the root, with the group made in every one of them."""

from __future__ import annotations

import contextlib
import os
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

__all__ = ["V1"]

_CONTROLLERS: Final = (
    "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices",
)  # fmt: skip
# Docker's default device rules: any device node may be made (m), but only these used.
DEFAULT_DEVICE_RULES: Final = (
    "c *:* m", "b *:* m",
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",  # null … urandom
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",  # tty console ptmx pts
    "c 10:200 rwm",  # tun
)  # fmt: skip
# The kernel's "no limit" for memory is PAGE_COUNTER_MAX pages; anything this large is none.
_UNLIMITED: Final = 1 << 62
# Block I/O byte counts, the first file this kernel has (the CFQ one left in 5.0).
_IO_FILES: Final = (
    "blkio.io_service_bytes_recursive",
    "blkio.throttle.io_service_bytes_recursive",
    "blkio.throttle.io_service_bytes",
)


class V1:
    """The v1 hierarchies mounted as `root`/<controller> (co-mounted ones counted once)."""

    version = 1

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), busy_timeout: float = 3.0) -> None:
        self.root = root
        self.busy_timeout = busy_timeout  # how long remove waits for exiting processes
        self._mounts = {c: root / c for c in _CONTROLLERS if (root / c).is_dir()}
        unique: dict[str, Path] = {}  # "cpu" and "cpuacct" may be links to "cpu,cpuacct"
        for path in self._mounts.values():
            unique.setdefault(os.path.realpath(path), path)
        self._hierarchies = list(unique.values())
        cpuset = self._mounts.get("cpuset")
        self._cpuset = None if cpuset is None else unique[os.path.realpath(cpuset)]

    def _path(self, controller: str, name: str) -> Path:
        base = self._mounts.get(controller)
        if base is None:
            raise CgroupError(f"the {controller} cgroup controller is not mounted at {self.root}")
        return base / check_name(name)

    def _paths(self, name: str) -> list[Path]:
        check_name(name)
        return [base / name for base in self._hierarchies]

    def _require_hierarchies(self) -> None:
        if not self._hierarchies:
            known = ", ".join(_CONTROLLERS)
            raise CgroupError(f"no cgroup hierarchy is mounted at {self.root} (looked for {known})")

    def create(self, name: str, limits: CgroupLimits) -> None:
        check_limits(limits)
        self._require_hierarchies()
        for controller in needed_controllers(limits):
            self._path(controller, name)  # absent: refuse before anything is made
        parts = check_name(name).split("/")
        for base in self._hierarchies:
            if base == self._cpuset:  # the hierarchy holding it, co-mounted or not
                path = base
                for part in parts:  # each level checked: a new cpuset needs its parent's
                    path = path / part
                    path.mkdir(exist_ok=True)
                    _inherit_cpuset(path)
            else:
                try:
                    (base / name).mkdir(exist_ok=True)  # its parents: there after the first
                except FileNotFoundError:
                    (base / name).mkdir(parents=True, exist_ok=True)
        devices = self._mounts.get("devices")
        if devices is not None:  # no device of the host but the harmless ones
            group = devices / name
            write(group / "devices.deny", "a")
            write(group / "devices.allow", *DEFAULT_DEVICE_RULES)
        if limits.cpu_quota_us is not None:
            cpu = self._path("cpu", name)
            write(cpu / "cpu.cfs_period_us", str(limits.cpu_period_us))
            quota = limits.cpu_quota_us if limits.cpu_quota_us > 0 else -1
            write(cpu / "cpu.cfs_quota_us", str(quota))
        if limits.cpu_shares is not None:
            write(self._path("cpu", name) / "cpu.shares", str(limits.cpu_shares))
        if limits.cpuset_cpus is not None:
            write(self._path("cpuset", name) / "cpuset.cpus", limits.cpuset_cpus)
        if limits.cpuset_mems is not None:
            write(self._path("cpuset", name) / "cpuset.mems", limits.cpuset_mems)
        if limits.memory_limit is not None or limits.memory_swap is not None:
            self._set_memory(self._path("memory", name), limits)
        if limits.memory_reservation is not None:
            soft = self._path("memory", name) / "memory.soft_limit_in_bytes"
            write(soft, str(limits.memory_reservation))
        if limits.pids_limit is not None:
            value = "max" if limits.pids_limit <= 0 else str(limits.pids_limit)
            write(self._path("pids", name) / "pids.max", value)

    @staticmethod
    def _set_memory(path: Path, limits: CgroupLimits) -> None:
        """memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes, so whichever
        moves away from the other is written first (as runc does)."""
        memory, swap = limits.memory_limit, limits.memory_swap
        memsw = path / "memory.memsw.limit_in_bytes"
        if memory == -1 and swap is None and memsw.exists():
            swap = -1  # an unlimited memory above a finite memory+swap is refused
        if swap is not None and not memsw.exists():
            if swap == -1:
                swap = None  # unlimited swap is what a kernel without swap accounting gives
            else:
                raise CgroupError(
                    f"memswap_limit needs swap accounting, which this kernel has off ({memsw} "
                    "is missing; boot with swapaccount=1)"
                )
        swap_first = swap is not None and (
            swap == -1 or (read_int(path / "memory.limit_in_bytes") or 0) < swap
        )
        if swap is not None and swap_first:
            write(memsw, str(swap))
        if memory is not None:
            write(path / "memory.limit_in_bytes", str(memory))
        if swap is not None and not swap_first:
            write(memsw, str(swap))

    def join_files(self, name: str) -> list[Path]:
        # `tasks`: the writer alone moves (the container's init, one thread), without the
        # lock of cgroup.procs that every fork on the host waits on while it is held: a
        # dozen containers joining at once waited 10-16 ms each for it, 2-4 ms this way.
        self._require_hierarchies()
        return [path / "tasks" for path in self._paths(name)]

    def oom_file(self, name: str) -> str:
        return str(self._path("memory", name) / "memory.oom_control")

    def add(self, name: str, pid: int) -> None:
        self._require_hierarchies()
        for path in self._paths(name):
            write(path / "cgroup.procs", str(pid))  # the whole process, whatever its threads

    def pids(self, name: str) -> list[int]:
        return procs(self._paths(name))  # every hierarchy: a half-joined process counts too

    def exists(self, name: str) -> bool:
        return any(path.is_dir() for path in self._paths(name))

    def _file(self, controller: str, name: str, file: str) -> Path | None:
        base = self._mounts.get(controller)
        return None if base is None else base / check_name(name) / file

    def stats(self, name: str) -> CgroupStats:
        if not self.exists(name):
            raise CgroupError(f"no cgroup {name} under {self.root}")
        usage = self._file("cpuacct", name, "cpuacct.usage")
        current = self._file("memory", name, "memory.usage_in_bytes")
        limit_file = self._file("memory", name, "memory.limit_in_bytes")
        limit = read_int(limit_file) if limit_file else None
        count = self._file("pids", name, "pids.current")
        read_bytes, write_bytes = self._io(name)
        return CgroupStats(
            cpu_usage_ns=(read_int(usage) if usage else None) or 0,
            memory_usage=(read_int(current) if current else None) or 0,
            memory_limit=limit if limit is not None and limit < _UNLIMITED else None,
            pids=(read_int(count) if count else None) or len(self.pids(name)),
            io_read_bytes=read_bytes,
            io_write_bytes=write_bytes,
            oom_kills=self.oom_kills(name),
        )

    def _io(self, name: str) -> tuple[int | None, int | None]:
        """Bytes read and written, from lines such as "8:0 Read 4096" ("Total" skipped)."""
        for file in _IO_FILES:
            path = self._file("blkio", name, file)
            text = read_text(path) if path else None
            if text is None:
                continue
            totals = {"Read": 0, "Write": 0}
            for fields in (line.split() for line in text.splitlines()):
                if len(fields) == 3 and fields[1] in totals:
                    totals[fields[1]] += int(fields[2])
            return totals["Read"], totals["Write"]
        return None, None

    def oom_kills(self, name: str) -> int:
        path = self._file("memory", name, "memory.oom_control")
        return read_keyed(path).get("oom_kill", 0) if path else 0

    def _set_state(self, name: str, state: str) -> None:
        path = self._path("freezer", name) / "freezer.state"
        write(path, state)
        wait_until(lambda: (read_text(path) or "").strip() == state, f"cgroup {name} not {state}")

    def freeze(self, name: str) -> None:
        try:
            self._set_state(name, "FROZEN")
        except CgroupError:
            with contextlib.suppress(CgroupError):  # not left half frozen
                self._set_state(name, "THAWED")
            raise

    def thaw(self, name: str) -> None:
        self._set_state(name, "THAWED")

    def frozen(self, name: str) -> bool:
        path = self._file("freezer", name, "freezer.state")
        state = read_text(path) if path else None
        return state is not None and state.strip() != "THAWED"

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        if not self.exists(name):
            return
        # Frozen, no process can fork a child past the signal; without a freezer, best effort.
        # A group paused before keeps still unless the signal is SIGKILL, which needs a thaw.
        paused = self.frozen(name)
        frozen = paused
        if "freezer" in self._mounts and not paused:
            with contextlib.suppress(CgroupError):
                self.freeze(name)
                frozen = True
        try:
            signal_all(self.pids(name), sig)
        finally:
            if frozen and (sig == signal.SIGKILL or not paused):
                self.thaw(name)

    def remove(self, name: str) -> None:
        failures: list[CgroupError] = []
        deadline = time.monotonic() + self.busy_timeout
        memory = self._mounts.get("memory")
        if memory is not None:
            # What the group's processes left in the page cache (their logs, the files they
            # read first) stays charged to it, and the kernel keeps a removed group as long
            # as that is cached: such dying groups pile up and slow every later cgroup and
            # mount operation. Reclaimed now, the group goes with its directory.
            with contextlib.suppress(OSError):
                (memory / check_name(name) / "memory.force_empty").write_text("0")
        for path in self._paths(name):
            try:
                rmdir(path, deadline)
            except CgroupError as exc:  # the other hierarchies are still removed
                failures.append(exc)
        if failures:
            raise failures[0]


def _inherit_cpuset(path: Path) -> None:
    """A new v1 cpuset starts with no cpus and no memory nodes, and no process can join it:
    give it its parent's (unless it already has its own)."""
    for file in ("cpuset.cpus", "cpuset.mems"):
        own = read_text(path / file)
        if own is not None and not own.strip():
            write(path / file, (read_text(path.parent / file) or "").strip())
