"""A container's seccomp filter: Docker's default profile, compiled to BPF with libseccomp.

The profile is moby's `profiles/seccomp/default.json` as Docker 28.2 to 29.x ship it (moby
pull requests 50077 and 50097, 2025, now maintained in github.com/moby/profiles), with the
AF_ALG socket rule of moby pull request 52494 (2026, CVE-2026-31431): EPERM for every call
not named; an allowlist for all; calls a capability makes safe (mount and unshare with
CAP_SYS_ADMIN, kcmp with CAP_SYS_PTRACE …) only with that capability; clone without
namespace flags and clone3 answered ENOSYS (so libc falls back to clone) unless CAP_SYS_ADMIN;
five personality values; socket for every family but AF_ALG and AF_VSOCK; the calls of the
native architecture; and the compat architectures filtered as well (x86 and x32 on amd64,
arm on arm64, s390 on s390x). ptrace and process_vm_* are allowed, as Docker does on
kernels from 4.8 on; keyctl, add_key and request_key stay denied.

As runc does, a call numbered above the highest the filter names answers ENOSYS rather than
EPERM, so a libc falls back from a call newer than the profile; and calls the profile allows
that an older libseccomp cannot name (kernel 6.8 to 6.13: statmount, mseal, *xattrat …) are
allowed by number. The runtime builds the program (`default_filter`, ~12 ms, kept in a cache
directory when given one); the container's shim installs it (init.c, prctl
PR_SET_SECCOMP). `install` does the same in a Python process, for checking what a program
lets through.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import struct
from pathlib import Path

from engine import linux
from engine.errors import EngineError
from engine.files import write_atomic

__all__ = ["SeccompUnavailable", "default_filter", "install"]


class SeccompUnavailable(EngineError):
    """libseccomp is missing or refused the profile: containers cannot get their filter."""


_ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday
getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64
ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset
landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listmount listxattr
listxattrat llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock
mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect
open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free
pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease
pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename
renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
sched_get_priority_min sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select
semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg
sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer
setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid
setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount statx
symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate
truncate64 ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat utimensat_time64
utimes vfork vmsplice wait4 waitid waitpid write writev
""".split()

_PTRACE = ("process_vm_readv", "process_vm_writev", "ptrace")  # for all on kernels >= 4.8

_WITH_CAPABILITY = {
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_ADMIN": """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick
        lookup_dcookie lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr
        move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname
        setns syslog umount umount2 unshare""",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

# By native machine: the compat architectures the filter covers too (libseccomp names) and
# the calls allowed only there.
_ARCHES = {
    "x86_64": (("x86", "x32"), "arch_prctl modify_ldt"),
    "aarch64": (
        ("arm",),
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ),
    "ppc64le": ((), "sync_file_range2 swapcontext"),
    "s390x": (("s390",), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    "riscv64": ((), "riscv_flush_icache"),
}

# Calls of kernels 6.8 to 6.13 an older libseccomp (Debian 12's 2.5.4) cannot name. Since
# Linux 5.1 a new call has the same number on every architecture (x32 adds its bit).
_NUMBERS = {
    "statmount": 457,
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "mseal": 462,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
}

_PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)  # LINUX, LINUX32, UNAME26, query
_CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
_AF_ALG, _AF_VSOCK = 38, 40

_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_CMP_LT, _CMP_EQ, _CMP_GT, _CMP_MASKED_EQ = 2, 4, 6, 7
_NR_SCMP_ERROR = -1
_X32_BIT = 0x40000000

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_BPF_MAXINSNS = 4096


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(
            "libseccomp is not installed (Debian: apt-get install libseccomp2), so containers "
            "cannot get their seccomp filter; install it or run them with seccomp=unconfined"
        ) from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


# (call, action, conditions): each condition (argument, comparison, value); MASKED_EQ
# compares `argument & value` with 0.
_Rule = tuple[str, int, tuple[tuple[int, int, int], ...]]


def _rules(capabilities: frozenset[str], machine: str) -> list[_Rule]:
    names = set(_ALLOWED) | set(_ARCHES.get(machine, ((), ""))[1].split())
    if _kernel_at_least(4, 8):
        names.update(_PTRACE)
    for capability, calls in _WITH_CAPABILITY.items():
        if capability in capabilities:
            names.update(calls.split())
    rules: list[_Rule] = [(name, _ACT_ALLOW, ()) for name in sorted(names)]
    rules += [("personality", _ACT_ALLOW, ((0, _CMP_EQ, value),)) for value in _PERSONALITIES]
    rules += [
        ("socket", _ACT_ALLOW, ((0, _CMP_LT, _AF_ALG),)),
        ("socket", _ACT_ALLOW, ((0, _CMP_EQ, _AF_ALG + 1),)),
        ("socket", _ACT_ALLOW, ((0, _CMP_GT, _AF_VSOCK),)),
    ]
    if "CAP_SYS_ADMIN" not in capabilities:
        flags = 1 if machine == "s390x" else 0  # s390's clone takes the flags second
        rules.append(("clone", _ACT_ALLOW, ((flags, _CMP_MASKED_EQ, _CLONE_NAMESPACES),)))
        # clone3 passes its flags in memory a filter cannot read: ENOSYS sends libc to clone.
        rules.append(("clone3", _ACT_ERRNO | errno.ENOSYS, ()))
    return rules


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    try:
        return (int(release[0]), int(release[1])) >= (major, minor)
    except (IndexError, ValueError):
        return True


_programs: dict[frozenset[str], bytes] = {}


def default_filter(capabilities: frozenset[str], cache: Path | None = None) -> bytes:
    """The BPF program (an array of struct sock_filter) for a container holding
    `capabilities` (names such as "CAP_SYS_ADMIN"); built once per set, and once per set,
    kernel, libseccomp and version of this module when `cache` (a directory) is given."""
    program = _programs.get(capabilities)
    if program is None:
        program = _programs[capabilities] = (
            _build(capabilities) if cache is None else _cached(capabilities, cache)
        )
    return program


def _cached(capabilities: frozenset[str], cache: Path) -> bytes:
    """The program from `cache`, built and stored there first when it is not."""
    key = hashlib.sha256()
    key.update("\n".join(sorted(capabilities)).encode())
    key.update(f"{os.uname().release} {os.uname().machine}".encode())
    _library()  # mapped now as the build would map it: the key names the file the loader chose
    for source in (__file__, *_mapped("libseccomp.so.")):
        info = os.stat(source)
        key.update(f"{source} {info.st_size} {info.st_mtime_ns}".encode())
    path = cache / f"seccomp-{key.hexdigest()[:32]}.bpf"
    try:
        program = path.read_bytes()
        if program and len(program) % 8 == 0:  # whole struct sock_filter entries
            return program
    except FileNotFoundError:
        pass
    program = _build(capabilities)
    with contextlib.suppress(OSError):  # not kept: built again next time
        cache.mkdir(parents=True, exist_ok=True)
        write_atomic(path, program)
    return program


def _mapped(prefix: str) -> list[str]:
    """The files mapped into this process whose name starts with `prefix` (/proc/self/maps:
    one read, where globbing every library directory took 10 ms)."""
    with open("/proc/self/maps") as maps:
        fields = [line.split(maxsplit=5) for line in maps]
    paths = {f[5].rstrip("\n") for f in fields if len(f) == 6}  # the others: anonymous
    return sorted(p for p in paths if os.path.basename(p).startswith(prefix))


def _build(capabilities: frozenset[str]) -> bytes:
    lib = _library()
    machine = os.uname().machine
    compat = _ARCHES.get(machine, ((), ""))[0]
    ctx = lib.seccomp_init(_ACT_ERRNO | errno.EPERM)
    if not ctx:
        raise SeccompUnavailable("libseccomp could not make a filter (seccomp_init failed)")
    try:
        for name in compat:
            _check(lib.seccomp_arch_add(ctx, _arch_token(lib, name)), f"add architecture {name}")
        rules = _rules(capabilities, machine)
        named = {rule[0] for rule in rules if _add(lib, ctx, rule)}
        unnamed = {rule[0] for rule in rules} - named
        by_number = tuple(sorted(number for name, number in _NUMBERS.items() if name in unnamed))
        plans = []
        for name in ("native", *compat):
            if name == "x32":
                continue  # its numbers carry the x32 bit on x86_64: left to libseccomp
            token = _arch_token(lib, name)
            known = (int(lib.seccomp_syscall_resolve_name_arch(token, n.encode())) for n in named)
            last = max((*by_number, *known))
            plans.append((token, by_number, last, name == "native" and "x32" in compat))
        return _prologue(plans) + _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)


def _add(lib: ctypes.CDLL, ctx: int, rule: _Rule) -> bool:
    """Add `rule`; False when this libseccomp does not know the call (nor then the kernel it
    was built for, most likely)."""
    name, action, conditions = rule
    number = int(lib.seccomp_syscall_resolve_name(name.encode()))
    if number == _NR_SCMP_ERROR:
        return False
    array = (_ArgCmp * len(conditions))(*(_ArgCmp(a, op, v, 0) for a, op, v in conditions))
    result = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
    _check(result, f"add the rule for {name}")
    return True


def _arch_token(lib: ctypes.CDLL, name: str) -> int:
    """libseccomp's token for an architecture: its AUDIT_ARCH_* value (x32 aside)."""
    if name == "native":
        return int(lib.seccomp_arch_native())
    return int(lib.seccomp_arch_resolve_name(name.encode()))


def _check(result: int, what: str) -> None:
    if result < 0:
        raise SeccompUnavailable(f"libseccomp could not {what}: {os.strerror(-result)}")


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("seccomp", os.MFD_CLOEXEC)  # a pipe could fill up: no reader yet
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "export the filter")
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


# -- the prologue --------------------------------------------------------------------------

_LD_ABS, _JEQ, _JGT, _JSET, _JA, _RET = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06


# (token: AUDIT_ARCH_* as seccomp_data.arch holds it, calls allowed by number, the highest
# call number the filter names (ENOSYS above it), whether numbers with the x32 bit go on to
# libseccomp's program)
_ArchPlan = tuple[int, tuple[int, ...], int, bool]


def _prologue(plans: list[_ArchPlan]) -> bytes:
    """BPF run before libseccomp's program (which loads what it needs afresh): per
    architecture, allow the calls known only by number and answer ENOSYS above the highest
    named one; anything else falls through to libseccomp's program at "main"."""
    ops: list[str | tuple[int, str, str, int | str]] = [(_LD_ABS, "", "", 4)]  # arch
    ops += [(_JEQ, f"arch{i}", "", plan[0]) for i, plan in enumerate(plans)]
    ops.append((_JA, "", "", "main"))
    for i, (_, by_number, last, x32) in enumerate(plans):
        ops += [f"arch{i}", (_LD_ABS, "", "", 0)]  # nr
        if x32:
            ops.append((_JSET, "main", "", _X32_BIT))
        ops += [(_JEQ, "allow", "", number) for number in by_number]
        ops.append((_JGT, "enosys", "main", last))
    ops += [
        "allow",
        (_RET, "", "", _ACT_ALLOW),
        "enosys",
        (_RET, "", "", _ACT_ERRNO | errno.ENOSYS),
    ]
    ops.append("main")
    labels: dict[str, int] = {}
    at = 0
    for op in ops:
        if isinstance(op, str):
            labels[op] = at
        else:
            at += 1
    program: list[bytes] = []
    for op in (op for op in ops if not isinstance(op, str)):
        code, jt, jf, k = op
        here = len(program) + 1  # jumps count from the next instruction
        jumps = [labels[label] - here if label else 0 for label in (jt, jf)]
        if not all(0 <= jump < 256 for jump in jumps):
            raise SeccompUnavailable("the filter's prologue outgrew a BPF jump")
        value = labels[k] - here if isinstance(k, str) else k
        program.append(struct.pack("=HBBI", code, jumps[0], jumps[1], value))
    return b"".join(program)


# -- installing ----------------------------------------------------------------------------


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def install(program: bytes) -> None:
    """Confine the calling thread, and what it executes, to the BPF `program`. Set
    no_new_privs first, or hold CAP_SYS_ADMIN. As the shim installs a container's filter, for
    the checks of what a program allows."""
    count, rest = divmod(len(program), 8)
    if rest or not 0 < count <= _BPF_MAXINSNS:
        raise OSError(errno.EINVAL, f"not a BPF program of 1 to {_BPF_MAXINSNS} instructions")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(count, ctypes.addressof(buffer))
    linux.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
