"""Processes as the kernel shows them in /proc: what `top` lists of each (ids, owner, start,
CPU time, terminal, command line), the namespaces a process is in, its cgroup, and what its
network namespace has received and sent."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

__all__ = ["ProcessInfo", "cgroup_of", "namespaces", "network_bytes", "process_info", "processes"]


@dataclass(frozen=True)
class ProcessInfo:
    """One process: `uid` is its effective one (on the host), `started` seconds since the
    epoch, `cpu_seconds` its user and system time, `tty` as ps names it ("?" for none),
    `command` its command line (or its name in brackets when it has none)."""

    pid: int
    ppid: int
    uid: int
    tty: str
    started: float
    cpu_seconds: float
    command: str


@cache
def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _tty_name(number: int) -> str:
    """The terminal of a stat's tty_nr, as ps names it."""
    if number == 0:
        return "?"
    major = (number >> 8) & 0xFFF
    minor = (number & 0xFF) | ((number >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    return f"{major}:{minor}"


def process_info(pid: int) -> ProcessInfo | None:
    """What /proc says of process `pid`; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    uid = next(
        (int(line.split()[2]) for line in status.splitlines() if line.startswith("Uid:")), 0
    )
    words = [w.decode(errors="replace") for w in cmdline.rstrip(b"\0").split(b"\0") if w]
    return ProcessInfo(
        pid=pid,
        ppid=int(fields[1]),
        uid=uid,
        tty=_tty_name(int(fields[4])),
        started=_boot_time() + int(fields[19]) / ticks,
        cpu_seconds=(int(fields[11]) + int(fields[12])) / ticks,
        command=" ".join(words) if words else f"[{name}]",
    )


def processes(pids: Iterable[int]) -> list[ProcessInfo]:
    """The processes of `pids` that still exist, by pid."""
    found = (process_info(pid) for pid in sorted(pids))
    return [info for info in found if info is not None]


def namespaces(pid: int) -> dict[str, str]:
    """The namespaces of process `pid` as /proc/PID/ns shows them, e.g. "net": "net:[4026532]";
    empty once it is gone."""
    directory = f"/proc/{pid}/ns"
    found = {}
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, ProcessLookupError):
        return {}
    for name in names:
        try:
            found[name] = os.readlink(f"{directory}/{name}")
        except OSError:
            continue
    return found


def cgroup_of(pid: int, version: int = 2) -> str | None:
    """The cgroup of process `pid`, relative to the hierarchy's root ("composer/web-1"): in
    the unified hierarchy (`version` 2), or in that of its pids, memory or cpu controller
    (version 1); None once it is gone."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    paths: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path.strip("/")
    for controller in ("",) if version == 2 else ("pids", "memory", "cpu"):
        if controller in paths:
            return paths[controller]
    return None


def network_bytes(pid: int) -> tuple[int, int]:
    """Bytes received and sent by the network interfaces of process `pid`'s network namespace
    (loopback aside); (0, 0) once it is gone."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    received = sent = 0
    for line in lines:
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = counters.split()
        received += int(fields[0])
        sent += int(fields[8])
    return received, sent
