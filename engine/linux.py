"""The one boundary to Linux system calls Python 3.11 does not offer (openat2, mount, umount2).

Everything else the engine needs from the kernel goes through the `os` module; what is here
goes through ctypes and turns a failure into OSError with the errno and the path.
"""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "CAPABILITIES",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "MNT_DETACH",
    "MS_BIND",
    "MS_NODEV",
    "MS_NOSUID",
    "MS_RDONLY",
    "MS_REMOUNT",
    "PR_SET_NO_NEW_PRIVS",
    "PR_SET_PDEATHSIG",
    "RESOLVE_IN_ROOT",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_XDEV",
    "attach_tree",
    "idmap_tree",
    "machine_architecture",
    "mount",
    "mount_fs",
    "open_tree",
    "openat2",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "punch_hole",
    "setns",
    "umount",
    "unshare",
]

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MNT_DETACH = 0x2

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

# Capability numbers (linux/capability.h).
CAPABILITIES = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL "
            "CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE "
            "CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER "
            "CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT "
            "CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME "
            "CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL "
            "CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM "
            "CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE"
        ).split()
    )
}

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

_SYS_PIDFD_OPEN = 434
_SYS_PIDFD_SEND_SIGNAL = 424
_SYS_SETNS_BY_ARCH = {"x86_64": 308, "aarch64": 268}

# These have one number on every architecture (they came after the syscall tables were unified).
_SYS_OPENAT2 = 437
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSOPEN_CLOEXEC = 1
_FSMOUNT_CLOEXEC = 1
_MOVE_MOUNT_F_EMPTY_PATH = 4
_SYS_MOUNT_SETATTR = 442  # the same number on every architecture
_MOUNT_ATTR_IDMAP = 0x00100000
_AT_EMPTY_PATH = 0x1000


def _load_libc() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)  # glibc: no search (ctypes.util is slow)
    except OSError:
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("c"), use_errno=True)


_libc = _load_libc()
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
    the kernel's own explanation of a refusal is part of the OSError. `flags`: MS_RDONLY,
    MS_NOSUID, MS_NODEV."""
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
        attrs = (  # MOUNT_ATTR_RDONLY, _NOSUID, _NODEV
            (0x1 if flags & MS_RDONLY else 0)
            | (0x2 if flags & MS_NOSUID else 0)
            | (0x4 if flags & MS_NODEV else 0)
        )
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


def _check(result: int, what: str) -> None:
    if result < 0:
        _raise(what)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = int(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(arg3),
            ctypes.c_ulong(arg4),
            ctypes.c_ulong(arg5),
        )
    )
    _check(result, "prctl")
    return result


def pidfd_open(pid: int) -> int:
    fd = _syscall(_SYS_PIDFD_OPEN, ctypes.c_int(pid), ctypes.c_uint(0))
    _check(fd, f"pidfd_open {pid}")
    return fd


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _check(
        _syscall(
            _SYS_PIDFD_SEND_SIGNAL, ctypes.c_int(pidfd), ctypes.c_int(sig), None, ctypes.c_uint(0)
        ),
        "pidfd_send_signal",
    )


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Free the disk blocks of a byte range of a file, keeping its size (fallocate(2)
    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)."""
    _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _check(_libc.fallocate(fd, 0x02 | 0x01, offset, length), "fallocate")


def open_tree(path: str | int, recursive: bool = True) -> int:
    """A detached copy of the mount tree at `path` (a path, or an fd on it) (open_tree(2)
    OPEN_TREE_CLONE): an fd that can be attached anywhere, in another mount namespace too,
    with `attach_tree`."""
    flags = 1 | os.O_CLOEXEC | (0x8000 if recursive else 0)  # OPEN_TREE_CLONE, AT_RECURSIVE
    if isinstance(path, int):
        where, name, flags = path, b"", flags | _AT_EMPTY_PATH
    else:
        where, name = -100, path.encode()  # AT_FDCWD
    fd = _syscall(_SYS_OPEN_TREE, ctypes.c_int(where), ctypes.c_char_p(name), ctypes.c_uint(flags))
    _check(fd, str(path))
    return fd


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def idmap_tree(tree: int, userns: int) -> None:
    """Make the detached mount `tree` (from open_tree) an idmapped one (mount_setattr(2)
    MOUNT_ATTR_IDMAP): its files' owners are seen through the id maps of the user namespace
    `userns` (an fd on /proc/PID/ns/user), so uid 0 on disk is that namespace's root."""
    attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, userns)
    _check(
        _syscall(
            _SYS_MOUNT_SETATTR,
            ctypes.c_int(tree),
            ctypes.c_char_p(b""),
            ctypes.c_uint(_AT_EMPTY_PATH),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        "mount_setattr",
    )


def attach_tree(tree: int, target: int) -> None:
    """Attach the detached mount `tree` (from open_tree) on the directory or file `target`
    (an O_PATH fd): move_mount(2) with both ends given as descriptors."""
    flags = _MOVE_MOUNT_F_EMPTY_PATH | 0x40  # MOVE_MOUNT_T_EMPTY_PATH
    _check(
        _syscall(
            _SYS_MOVE_MOUNT,
            ctypes.c_int(tree),
            ctypes.c_char_p(b""),
            ctypes.c_int(target),
            ctypes.c_char_p(b""),
            ctypes.c_uint(flags),
        ),
        "move_mount",
    )


def machine_architecture() -> str:
    """This machine's architecture as OCI names it (amd64, arm64, …)."""
    import platform  # only here: few callers need it

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
