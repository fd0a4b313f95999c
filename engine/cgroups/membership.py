"""Which cgroups a process is in, read from /proc, and moving this process into those of
another: a process that works for another (a forked command on behalf of the program a user
started) belongs where that program is, so its limits and accounting apply and whoever ends
that group (systemd stopping a unit) ends it too."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["join_cgroups_of", "membership"]


def membership(pid: int | str = "self") -> dict[str, str]:
    """The cgroup of `pid` in each hierarchy it is in: controllers (v1, sorted and joined with
    commas: "cpu,cpuacct", "name=systemd"; "" for the unified v2 hierarchy) -> path."""
    found = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        found[",".join(sorted(controllers.split(","))) if controllers else ""] = path
    return found


def join_cgroups_of(pid: int) -> list[str]:
    """Move this process (single-threaded) into each cgroup `pid` is in where it is not: the
    cgroups it could not join (not mounted here, gone, or refused), as `controllers:path`.
    Nothing is written when both are in the same groups already."""
    target = membership(pid)
    own = membership()
    moves = {key: path for key, path in target.items() if own.get(key) != path}
    if not moves:
        return []
    mounts = _mounts()
    missed = []
    for key, path in moves.items():
        directory = _directory(mounts, key, path)
        # A v1 "tasks" file moves one thread, all this process has: it spares the lock that
        # cgroup.procs takes over every fork on the host. v2 has only cgroup.procs.
        name = "cgroup.procs" if key == "" else "tasks"
        try:
            if directory is None:
                raise FileNotFoundError
            fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")  # 0: the writer itself
            finally:
                os.close(fd)
        except OSError:
            missed.append(f"{key}:{path}")
    return missed


def _mounts() -> list[tuple[frozenset[str], str, str]]:
    """Each mounted cgroup hierarchy: its superblock options (v1: its controllers among them;
    the unified hierarchy: {""}), mount point, and the hierarchy's directory mounted there."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        fstype, _source, options = [*rest.split(" "), "", ""][:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        parts = fields.split(" ")
        point = parts[4].replace("\\040", " ")
        found.append((frozenset(options.split(",")) if fstype == "cgroup" else frozenset({""}),
                      point, parts[3]))  # fmt: skip
    return found


def _directory(mounts: list[tuple[frozenset[str], str, str]], key: str, path: str) -> str | None:
    """Where the cgroup `path` of the hierarchy `key` is in this mount namespace, if any."""
    controllers = set(key.split(","))
    for options, point, mounted in mounts:
        if not controllers <= options:
            continue
        if mounted != "/":
            if path != mounted and not path.startswith(mounted + "/"):
                continue  # outside what is mounted here (another cgroup namespace's view)
            path = path[len(mounted) :]
        return point + path
    return None
