"""What the runtime asks of a cgroup driver, whatever the cgroup version: make a group with
limits, put a process in it, read its usage, freeze, kill, remove; and the file operations
both drivers share."""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.errors import EngineError

__all__ = [
    "CgroupDriver",
    "CgroupError",
    "CgroupLimits",
    "CgroupStats",
    "check_limits",
    "check_name",
    "needed_controllers",
    "procs",
    "read_int",
    "read_keyed",
    "read_text",
    "rmdir",
    "signal_all",
    "wait_until",
    "write",
]


class CgroupError(EngineError):
    """A cgroup could not be made, limited, joined, frozen, read or removed."""


@dataclass(frozen=True)
class CgroupLimits:
    """A container's resource limits, in docker's terms; None leaves the kernel's value."""

    cpu_quota_us: int | None = None  # from `cpus` (cpus * period); -1: unlimited
    cpu_period_us: int = 100_000
    cpu_shares: int | None = None  # docker semantics: 1024 is the default weight
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    memory_limit: int | None = None  # bytes; -1: unlimited
    memory_swap: int | None = None  # memory + swap, bytes; -1: unlimited
    memory_reservation: int | None = None  # soft limit (v1) / memory.low (v2)
    pids_limit: int | None = None  # 0 or -1: unlimited


@dataclass(frozen=True)
class CgroupStats:
    """A group's usage; None where the kernel keeps no such count."""

    cpu_usage_ns: int
    memory_usage: int
    memory_limit: int | None
    pids: int
    io_read_bytes: int | None
    io_write_bytes: int | None
    oom_kills: int


class CgroupDriver(Protocol):
    """A cgroup hierarchy (v1: one per controller; v2: unified) under a root directory.

    Names are relative paths such as "composer/stack/ctr"; every operation is safe to repeat.
    """

    version: int

    def create(self, name: str, limits: CgroupLimits) -> None:
        """Make the group (and its parents) if missing and set `limits`."""
        ...

    def join_files(self, name: str) -> list[Path]:
        """The files a process of one thread writes "0" (itself) to, to enter the group
        before it execs."""
        ...

    def oom_file(self, name: str) -> str:
        """The file whose "oom_kill N" line counts the group's OOM kills."""
        ...

    def add(self, name: str, pid: int) -> None:
        """Move process `pid` into the group."""
        ...

    def pids(self, name: str) -> list[int]:
        """The processes in the group and its descendants; none when it does not exist."""
        ...

    def exists(self, name: str) -> bool: ...

    def stats(self, name: str) -> CgroupStats:
        """The group's usage; a count the kernel does not keep reads as None or 0."""
        ...

    def oom_kills(self, name: str) -> int:
        """How many of the group's processes the OOM killer killed."""
        ...

    def freeze(self, name: str) -> None:
        """Stop every process of the group; returns when they are all frozen."""
        ...

    def thaw(self, name: str) -> None:
        """Let a frozen group's processes run again; returns when they do."""
        ...

    def frozen(self, name: str) -> bool: ...

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to every process of the group; nothing when it does not exist."""
        ...

    def remove(self, name: str) -> None:
        """Remove the group and its descendants, once their processes have gone."""
        ...


def check_name(name: str) -> str:
    """`name` if it is a relative path of plain components, else CgroupError."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise CgroupError(f"invalid cgroup name {name!r}: a relative path without '.' or '..'")
    if "\0" in name or "\n" in name:
        raise CgroupError(f"invalid cgroup name {name!r}: it holds a NUL or newline")
    return name


def check_limits(limits: CgroupLimits) -> None:
    """Refuse limits the kernel would refuse halfway through, before anything is written."""
    swap, memory = limits.memory_swap, limits.memory_limit
    if swap is None or swap == -1:
        return
    if memory is None or memory < 0:
        raise CgroupError(f"memswap_limit {swap} needs a finite memory limit (mem_limit)")
    if swap < memory:
        raise CgroupError(f"memswap_limit {swap} is below mem_limit {memory}: it counts both")


def needed_controllers(limits: CgroupLimits) -> list[str]:
    """The controllers `limits` write to (named alike in v1 and v2)."""
    needed = []
    if limits.cpu_quota_us is not None or limits.cpu_shares is not None:
        needed.append("cpu")
    if limits.cpuset_cpus is not None or limits.cpuset_mems is not None:
        needed.append("cpuset")
    if (limits.memory_limit, limits.memory_swap, limits.memory_reservation) != (None, None, None):
        needed.append("memory")
    if limits.pids_limit is not None:
        needed.append("pids")
    return needed


def read_text(path: Path) -> str | None:
    """The file's text, or None when it (or its group) does not exist."""
    try:
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENODEV:  # the group was removed while we read
            return None
        raise CgroupError(f"cannot read {path}: {exc.strerror}") from exc


def read_int(path: Path) -> int | None:
    """A one-number file; None when missing or "max"."""
    text = read_text(path)
    if text is None or not text.strip().lstrip("-").isdigit():
        return None
    return int(text)


def read_keyed(path: Path) -> dict[str, int]:
    """A flat keyed file ("key value" lines: cpu.stat, memory.events, memory.oom_control)."""
    values: dict[str, int] = {}
    for line in (read_text(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def write(path: Path, *values: str) -> None:
    """Write each value to an existing interface file, one write(2) each through one open of
    it (never create it: a missing file means the controller is absent or not enabled)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as exc:
        raise CgroupError(f"cannot write {values[0]!r} to {path}: {exc.strerror}") from exc
    try:
        for value in values:
            try:
                os.write(fd, value.encode())
            except OSError as exc:
                raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def wait_until(done: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll `done` (quickly, then every 10 ms) until it holds; CgroupError after `timeout`."""
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while not done():
        if time.monotonic() > deadline:
            raise CgroupError(f"{what} (waited {timeout:g} s)")
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


def rmdir(path: Path, deadline: float) -> None:
    """Remove a cgroup directory and its descendants, deepest first, retrying until `deadline`
    (time.monotonic) while the kernel still counts an exiting process (EBUSY); nothing when it
    is already gone."""
    try:
        with os.scandir(path) as entries:  # the type from the directory: no stat per file
            children = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return
    for child in children:
        rmdir(child, deadline)
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                left = (read_text(path / "cgroup.procs") or "").split()
                because = f" (processes still in it: {' '.join(left)})" if left else ""
                raise CgroupError(f"cannot remove cgroup {path}: {exc.strerror}{because}") from exc
            time.sleep(0.01)


def procs(paths: Iterable[Path]) -> list[int]:
    """The pids in the cgroup.procs files of `paths` and of all their descendants, sorted."""
    found: set[int] = set()
    for top in paths:
        for directory, _, _ in os.walk(top):
            text = read_text(Path(directory) / "cgroup.procs") or ""
            found.update(int(pid) for pid in text.split())
    return sorted(found)


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send `sig` to each process that still exists."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
