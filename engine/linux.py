"""The one boundary to Linux system calls Python 3.11 does not offer (openat2, mount, umount2).

Everything else the engine needs from the kernel goes through the `os` module; what is here
goes through ctypes and turns a failure into OSError with the errno and the path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import Final

__all__ = [
    "MNT_DETACH",
    "MS_BIND",
    "MS_NODEV",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "RESOLVE_IN_ROOT",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_XDEV",
    "machine_architecture",
    "mount",
    "mount_fs",
    "openat2",
    "umount",
]

MS_RDONLY: Final = 0x1
MS_NOSUID: Final = 0x2
MS_NODEV: Final = 0x4
MS_REMOUNT: Final = 0x20
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MS_PRIVATE: Final = 0x40000
MNT_DETACH: Final = 0x2

RESOLVE_NO_XDEV: Final = 0x01
RESOLVE_NO_MAGICLINKS: Final = 0x02
RESOLVE_IN_ROOT: Final = 0x10

# These have one number on every architecture (they came after the syscall tables were unified).
_SYS_OPENAT2: Final = 437
_SYS_MOVE_MOUNT: Final = 429
_SYS_FSOPEN: Final = 430
_SYS_FSCONFIG: Final = 431
_SYS_FSMOUNT: Final = 432
_FSCONFIG_SET_STRING: Final = 1
_FSCONFIG_CMD_CREATE: Final = 6
_FSOPEN_CLOEXEC: Final = 1
_FSMOUNT_CLOEXEC: Final = 1
_MOVE_MOUNT_F_EMPTY_PATH: Final = 4

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def _raise(path: str | bytes) -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), os.fsdecode(path))


def openat2(dir_fd: int, path: str | bytes, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open `path` relative to `dir_fd` with `resolve` restrictions; returns an fd."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path)
    while True:
        fd = _libc.syscall(
            _SYS_OPENAT2,
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(raw),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        if ctypes.get_errno() != 4:  # EINTR
            _raise(raw)


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str = "") -> None:
    """mount(2); `target` may be a /proc/self/fd/N path to mount on an already-resolved handle."""
    if (
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        )
        != 0
    ):
        _raise(target)


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    if _libc.umount2(target.encode(), flags) != 0:
        _raise(target)


def _syscall(number: int, *args: object) -> int:
    while True:
        result = int(_libc.syscall(number, *args))
        if result >= 0 or ctypes.get_errno() != 4:  # EINTR
            return result


def _fs_messages(fd: int) -> str:
    """What the kernel logged on a filesystem context (`e ...` lines), for error messages."""
    messages = []
    while True:
        try:
            line = os.read(fd, 1024).decode(errors="replace").strip()
        except OSError:
            break
        if not line:
            break
        messages.append(line[2:] if line[:2] in ("e ", "w ", "i ") else line)
    return "; ".join(messages)


def mount_fs(fstype: str, target: str, options: list[tuple[str, str]], flags: int = 0) -> None:
    """Mount a new `fstype` at `target` through the new mount API (fsopen, fsconfig, fsmount,
    move_mount): each option is passed on its own, so there is no page-size limit on them, and
    the kernel's own explanation of a refusal is part of the OSError. `flags`: MS_RDONLY."""
    fs = _syscall(_SYS_FSOPEN, ctypes.c_char_p(fstype.encode()), ctypes.c_uint(_FSOPEN_CLOEXEC))
    if fs < 0:
        _raise(fstype)
    try:
        for key, value in options:
            if (
                _syscall(
                    _SYS_FSCONFIG,
                    ctypes.c_int(fs),
                    ctypes.c_uint(_FSCONFIG_SET_STRING),
                    ctypes.c_char_p(key.encode()),
                    ctypes.c_char_p(value.encode()),
                    ctypes.c_int(0),
                )
                < 0
            ):
                err = ctypes.get_errno()
                raise OSError(err, f"{key}={value}: {_fs_messages(fs) or os.strerror(err)}")
        if (
            _syscall(
                _SYS_FSCONFIG, ctypes.c_int(fs), ctypes.c_uint(_FSCONFIG_CMD_CREATE), None, None, 0
            )
            < 0
        ):
            err = ctypes.get_errno()
            raise OSError(err, _fs_messages(fs) or os.strerror(err), target)
        attrs = 0x1 if flags & MS_RDONLY else 0  # MOUNT_ATTR_RDONLY
        mnt = _syscall(
            _SYS_FSMOUNT, ctypes.c_int(fs), ctypes.c_uint(_FSMOUNT_CLOEXEC), ctypes.c_uint(attrs)
        )
        if mnt < 0:
            _raise(target)
        try:
            if (
                _syscall(
                    _SYS_MOVE_MOUNT,
                    ctypes.c_int(mnt),
                    ctypes.c_char_p(b""),
                    ctypes.c_int(-100),  # AT_FDCWD
                    ctypes.c_char_p(target.encode()),
                    ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
                )
                < 0
            ):
                _raise(target)
        finally:
            os.close(mnt)
    finally:
        os.close(fs)


def machine_architecture() -> str:
    """This machine's architecture as OCI names it (amd64, arm64, …)."""
    machine = platform.machine()
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "arm",
        "i686": "386",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(machine, machine)
