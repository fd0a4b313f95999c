"""User namespaces: id maps (a container's root is an unprivileged uid of the host) and the
handle on a namespace that carries them, for idmapped mounts."""

from __future__ import annotations

import os
from collections.abc import Sequence

from engine.linux import CLONE_NEWUSER, unshare

__all__ = ["IdMap", "format_map", "host_root", "user_namespace", "write_maps"]

IdMap = tuple[tuple[int, int, int], ...]  # (first id inside, first id on the host, count)


def host_root(id_map: IdMap) -> int:
    """The host id that the container's id 0 maps to (ValueError when 0 is not mapped)."""
    for inside, outside, count in id_map:
        if inside == 0 and count > 0:
            return outside
    raise ValueError("an id map must map id 0 (the container's root)")


def format_map(id_map: Sequence[Sequence[int]]) -> str:
    """The text of /proc/PID/uid_map (or gid_map) for `id_map`."""
    return "".join(f"{inside} {outside} {count}\n" for inside, outside, count in id_map)


def write_maps(pid: int, uid_map: IdMap, gid_map: IdMap) -> None:
    """Give the user namespace of process `pid` its maps (one write each: the kernel takes
    a map once). The writer must be privileged in the parent namespace: the host's root."""
    for name, id_map in (("uid_map", uid_map), ("gid_map", gid_map)):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, format_map(id_map).encode())
        finally:
            os.close(fd)


def user_namespace(uid_map: IdMap, gid_map: IdMap) -> int:
    """An fd on a new user namespace with these maps (for mount_setattr's idmap). The process
    that made it is gone at return: the fd keeps the namespace alive."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        code = 0
        try:
            os.close(ready_r)
            os.close(done_w)
            unshare(CLONE_NEWUSER)
            os.write(ready_w, b"u")
            os.read(done_r, 1)  # the parent has the namespace: end
        except BaseException:
            code = 1
        os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"u":
            raise OSError(1, "could not make a user namespace")
        write_maps(child, uid_map, gid_map)
        return os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(child, 0)
