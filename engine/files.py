"""Files replaced whole (written beside their place under a unique name, then renamed over
it, so a reader sees the old content or the new, never a part), directory trees removed, and
directories whose subdirectories the filesystem should place apart."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import struct
from pathlib import Path

__all__ = ["discard_tree", "make_spread_directory", "remove_tree", "remove_tree_at", "write_atomic"]

_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000  # chattr +T


def write_atomic(path: Path, data: bytes, durable: bool = False) -> None:
    """Replace `path` by a file holding `data`; `durable`: on disk (fsync) before the rename,
    so a crash leaves the old file or the whole new one."""
    tmp = path.with_name(f".tmp-{secrets.token_hex(6)}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_tree(path: Path) -> None:
    """Remove the directory `path` and all in it, however deep: shutil.rmtree recurses once per
    level and fails at about a thousand, which a layer reaches with a 2000-character path.
    Symlinks in it are removed, not followed. Nothing may change in the tree meanwhile."""
    parent = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_tree_at(parent, path.name)
    finally:
        os.close(parent)


def discard_tree(path: Path) -> None:
    """remove_tree, for clean-up: what is already gone, or cannot go, is left as it is."""
    with contextlib.suppress(OSError):
        remove_tree(path)


def remove_tree_at(parent: int, name: str) -> None:
    """remove_tree of the directory `name` in the directory `parent` (a handle): walk down by
    name and back up by `..`, one directory handle open at a time."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=parent)
    try:
        pending = [_empty_but_dirs(fd)]  # per level, the subdirectories still to remove
        below: list[str] = []  # the directories from `name` down to `fd`
        while pending:
            if pending[-1]:
                sub = pending[-1].pop()
                child = os.open(sub, flags, dir_fd=fd)
                os.close(fd)
                fd = child
                below.append(sub)
                pending.append(_empty_but_dirs(fd))
            else:
                pending.pop()
                if below:
                    up = os.open("..", flags, dir_fd=fd)
                    os.close(fd)
                    fd = up
                    os.rmdir(below.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _empty_but_dirs(fd: int) -> list[str]:
    """Remove all but the subdirectories of the directory `fd`; return their names."""
    dirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                dirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    return dirs


def make_spread_directory(path: Path) -> None:
    """Make the directory `path` (and its parents) if needed, and ask its filesystem to place
    the directories made in it apart, each where inodes are free (ext4's "top of directory
    hierarchies" flag, chattr +T, as for /home). On ext4 without a journal every new inode is
    searched past each inode of its block group freed in the last minutes: with one block
    group for all containers, an up after a down spent most of its kernel time so (50
    containers: 2 of 3 s). Filesystems without the flag ignore the request."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0" * 4))[0]
        if not flags & _FS_TOPDIR_FL:
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("i", flags | _FS_TOPDIR_FL))
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM):
            raise
    finally:
        os.close(fd)
