"""What the runtime asks of a cgroup driver, whatever the cgroup version: make a group with
limits, put a process in it, read its usage, freeze, kill, remove."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.errors import EngineError

__all__ = ["CgroupDriver", "CgroupError", "CgroupLimits", "CgroupStats", "check_name", "rmdir"]


class CgroupError(EngineError):
    """A cgroup could not be made, limited, read or removed."""


@dataclass(frozen=True)
class CgroupLimits:
    cpu_quota_us: int | None = None
    cpu_period_us: int = 100_000
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    memory_limit: int | None = None
    memory_swap: int | None = None  # memory + swap; -1: unlimited
    memory_reservation: int | None = None
    pids_limit: int | None = None  # 0 or -1: unlimited


@dataclass(frozen=True)
class CgroupStats:
    cpu_usage_ns: int
    memory_usage: int
    memory_limit: int | None
    pids: int
    io_read_bytes: int | None
    io_write_bytes: int | None
    oom_kills: int


class CgroupDriver(Protocol):
    version: int

    def create(self, name: str, limits: CgroupLimits) -> None: ...
    def join_files(self, name: str) -> list[Path]: ...
    def oom_file(self, name: str) -> str: ...
    def add(self, name: str, pid: int) -> None: ...
    def pids(self, name: str) -> list[int]: ...
    def exists(self, name: str) -> bool: ...
    def stats(self, name: str) -> CgroupStats: ...
    def oom_kills(self, name: str) -> int: ...
    def freeze(self, name: str) -> None: ...
    def thaw(self, name: str) -> None: ...
    def frozen(self, name: str) -> bool: ...
    def kill(self, name: str, sig: int = 9) -> None: ...
    def remove(self, name: str) -> None: ...


def check_name(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise CgroupError(f"invalid cgroup name {name!r}")
    return name


def read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, OSError):
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from exc


def rmdir(path: Path) -> None:
    """Remove a cgroup directory (its processes gone), retrying briefly while the kernel still
    counts one; children first."""
    if not path.is_dir():
        return
    for child in sorted((p for p in path.iterdir() if p.is_dir()), reverse=True):
        rmdir(child)
    deadline = time.monotonic() + 2.0
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(f"cannot remove cgroup {path}: {exc.strerror}") from exc
            time.sleep(0.01)


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
