"""The seccomp filter: Docker's default profile, checked by making calls under it.

The calls run in a separate probe process (`python -c … _probe_main()`) that sets
no_new_privs, installs the filter, and makes each call in a forked child of its own (so an
unshare or a personality change touches nothing else); it reports each outcome, "ok" or the
errno's name, on its stdout pipe. This process never installs a filter. The same calls made
without a filter show that an EPERM comes from the filter, not from the kernel.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import linux, seccomp
from engine.container.spec import DEFAULT_CAPABILITIES

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = frozenset(DEFAULT_CAPABILITIES)

x86_64 = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 call numbers")

# -- the probe's calls (x86_64 numbers; ia32_* through int 0x80, the 32-bit ABI) -------------

CLONE_NEWNS, CLONE_NEWUSER, SIGCHLD = 0x00020000, 0x10000000, 17
AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _sys(number: int, *args: int | bytes) -> int:
    """A raw system call: its result, or minus the errno."""
    ctypes.set_errno(0)
    values = [a if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    result = int(_libc.syscall(ctypes.c_long(number), *values))
    return -ctypes.get_errno() if result == -1 else result


def _ia32(number: int, a: int = 0, b: int = 0, c: int = 0) -> int:
    """A system call through int 0x80: the kernel takes it as i386's (AUDIT_ARCH_I386)."""
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    # push rbx; mov eax,edi; mov ebx,esi; xchg ecx,edx; int 0x80; pop rbx; ret
    page.write(bytes.fromhex("5389F889F387D1CD805BC3"))
    kind = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int)
    return int(kind(ctypes.addressof(ctypes.c_char.from_buffer(page)))(number, a, b, c))


def _same(value: int, expected: int) -> int:
    return 0 if value == expected else -errno.EIO


def _write() -> int:
    _, w = os.pipe()
    return _sys(1, w, b"x", 1)


def _fork() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return _same(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), 7)


def _thread() -> int:
    ran: list[bool] = []
    thread = threading.Thread(target=lambda: ran.append(True))
    thread.start()
    thread.join()
    return _same(len(ran), 1)


def _clone(flags: int) -> int:
    pid = _sys(56, flags | SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
    return pid


def _pidfd_getfd() -> int:
    pidfd = _sys(434, os.getpid(), 0)
    return _sys(438, pidfd, 0, 0)


CHECKS: dict[str, Callable[[], int]] = {
    "getpid": lambda: _same(_sys(39), os.getpid()),
    "write": _write,
    "openat": lambda: _sys(257, AT_FDCWD, b"/proc/self/status", os.O_RDONLY),
    "fork": _fork,
    "thread": _thread,
    "socket inet": lambda: _sys(41, 2, 1, 0),
    "socket alg": lambda: _sys(41, 38, 5, 0),
    "socket vsock": lambda: _sys(41, 40, 1, 0),
    "personality query": lambda: _sys(135, 0xFFFFFFFF),
    "personality linux32": lambda: _sys(135, 0x0008),
    "personality no-randomize": lambda: _sys(135, 0x0040000),
    "unshare user": lambda: _sys(272, CLONE_NEWUSER),
    "unshare mount": lambda: _sys(272, CLONE_NEWNS),
    "mount bogus fs": lambda: _sys(165, b"none", b"/", b"composer-no-such-fs", 0, 0),
    "keyctl": lambda: _sys(250, 0, -3, 0),  # KEYCTL_GET_KEYRING_ID, the session keyring
    "add_key": lambda: _sys(248, b"user", b"composer-test", b"x", 1, -2),  # process keyring
    "clone newns": lambda: _clone(CLONE_NEWNS),
    "clone3": lambda: _sys(435, 0, 0),
    "ptrace peek parent": lambda: _sys(101, 3, os.getppid(), 0, 0),  # PTRACE_PEEKUSER
    "pidfd_getfd": _pidfd_getfd,
    "statmount": lambda: _sys(457, 0, 0, 0, 0),
    "beyond the profile": lambda: _sys(469, 0, 0, 0, 0, 0),  # file_setattr, Linux 6.17
    "ia32 getpid": lambda: _same(_ia32(20), os.getpid()),
    "ia32 unshare user": lambda: _ia32(310, CLONE_NEWUSER),
    "ia32 keyctl": lambda: _ia32(288, 0, 0xFFFFFFFD, 0),
}


def _outcome(result: int) -> str:
    return "ok" if result >= 0 else errno.errorcode.get(-result, str(-result))


def _in_child(check: Callable[[], int]) -> str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, _outcome(check()).encode())
        finally:
            os._exit(0)
    os.close(w)
    answer = os.read(r, 64).decode()
    os.waitpid(pid, 0)
    return answer or "died"


def _probe_main() -> None:
    """The probe process: {"program": hex} on stdin, {check: outcome} on stdout."""
    program = bytes.fromhex(json.load(sys.stdin)["program"])
    if program:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.install(program)
    print(json.dumps({name: _in_child(check) for name, check in CHECKS.items()}))


def probe(program: bytes) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", "from tests.engine.test_seccomp import _probe_main; _probe_main()"],
        input=json.dumps({"program": program.hex()}),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def unconfined() -> dict[str, str]:
    return probe(b"")


@pytest.fixture(scope="module")
def confined() -> dict[str, str]:
    return probe(seccomp.default_filter(DEFAULT))


@pytest.fixture(scope="module")
def with_sys_admin() -> dict[str, str]:
    return probe(seccomp.default_filter(DEFAULT | {"CAP_SYS_ADMIN"}))


@pytest.fixture(scope="module")
def with_sys_ptrace() -> dict[str, str]:
    return probe(seccomp.default_filter(DEFAULT | {"CAP_SYS_PTRACE"}))


DENIED = (
    "unshare user",
    "mount bogus fs",
    "keyctl",
    "add_key",
    "personality no-randomize",
    "clone newns",
    "pidfd_getfd",
    "socket alg",
    "socket vsock",
)

# -- the program ----------------------------------------------------------------------------


def test_the_program_is_whole_instructions_within_the_kernels_limit() -> None:
    program = seccomp.default_filter(DEFAULT)
    assert len(program) % 8 == 0
    assert 100 < len(program) // 8 <= 4096


def test_the_program_is_the_same_for_the_same_capabilities() -> None:
    first = seccomp._build(DEFAULT)
    assert seccomp._build(frozenset(sorted(DEFAULT, reverse=True))) == first
    assert seccomp._build(DEFAULT | {"CAP_SYS_ADMIN"}) != first


def test_the_program_is_built_once_per_capability_set() -> None:
    assert seccomp.default_filter(DEFAULT) is seccomp.default_filter(frozenset(DEFAULT))


def test_building_the_program_takes_milliseconds(capsys: pytest.CaptureFixture[str]) -> None:
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        seccomp._build(DEFAULT)
        timings.append(time.perf_counter() - start)
    seccomp.default_filter(DEFAULT)
    start = time.perf_counter()
    seccomp.default_filter(DEFAULT)
    cached = time.perf_counter() - start
    with capsys.disabled():
        print(
            f"\n  default_filter: {min(timings) * 1e3:.1f} ms to {max(timings) * 1e3:.1f} ms "
            f"built, {cached * 1e6:.1f} µs cached, "
            f"{len(seccomp.default_filter(DEFAULT)) // 8} instructions"
        )


def test_installing_loads_no_libseccomp() -> None:
    code = "import engine.seccomp; print('libseccomp' in open('/proc/self/maps').read())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("program", [b"", b"\0" * 7, b"\0" * 8 * 4097])
def test_a_program_of_no_whole_instructions_or_too_many_is_refused(program: bytes) -> None:
    with pytest.raises(OSError) as caught:
        seccomp.install(program)  # refused before any prctl: this process stays unconfined
    assert caught.value.errno == errno.EINVAL


# -- calls under the filter -----------------------------------------------------------------

kernel = pytest.mark.kernel


@x86_64
@kernel
@pytest.mark.parametrize(
    "call",
    [
        "getpid",
        "write",
        "openat",
        "fork",
        "socket inet",
        "personality query",
        "personality linux32",
    ],
)
def test_calls_of_the_allowlist_work(confined: dict[str, str], call: str) -> None:
    assert confined[call] == "ok"


@x86_64
@kernel
@pytest.mark.parametrize("call", DENIED)
def test_calls_outside_the_profile_fail_with_eperm(
    confined: dict[str, str], unconfined: dict[str, str], call: str
) -> None:
    assert confined[call] == "EPERM"
    assert unconfined[call] != "EPERM"  # the kernel itself would let it through


@x86_64
@kernel
def test_clone3_answers_enosys_so_threads_start_through_clone(confined: dict[str, str]) -> None:
    assert confined["clone3"] == "ENOSYS"
    assert confined["thread"] == "ok"


@x86_64
@kernel
def test_ptrace_is_left_to_the_kernel_as_docker_does(confined: dict[str, str]) -> None:
    assert confined["ptrace peek parent"] == "ESRCH"  # not EPERM: no tracee, said the kernel


@x86_64
@kernel
def test_cap_sys_admin_lets_namespaces_and_mounts_through(with_sys_admin: dict[str, str]) -> None:
    assert with_sys_admin["mount bogus fs"] == "ENODEV"
    assert with_sys_admin["unshare mount"] == "ok"
    assert with_sys_admin["unshare user"] == "ok"
    assert with_sys_admin["clone newns"] == "ok"
    assert with_sys_admin["clone3"] == "EINVAL"  # the kernel's answer to a null clone_args
    assert with_sys_admin["keyctl"] == "EPERM"  # no capability opens the keyrings


@x86_64
@kernel
def test_cap_sys_ptrace_lets_pidfd_getfd_through(with_sys_ptrace: dict[str, str]) -> None:
    assert with_sys_ptrace["pidfd_getfd"] == "ok"
    assert with_sys_ptrace["mount bogus fs"] == "EPERM"


@x86_64
@kernel
def test_the_32_bit_abi_is_filtered_too(
    confined: dict[str, str], unconfined: dict[str, str]
) -> None:
    if unconfined["ia32 getpid"] != "ok":
        pytest.skip("this kernel runs no 32-bit x86 calls")
    assert confined["ia32 getpid"] == "ok"
    assert confined["ia32 unshare user"] == "EPERM"
    assert confined["ia32 keyctl"] == "EPERM"
    assert unconfined["ia32 unshare user"] == "ok"


@x86_64
@kernel
def test_a_call_newer_than_the_profile_answers_enosys(
    confined: dict[str, str], unconfined: dict[str, str]
) -> None:
    assert confined["beyond the profile"] == "ENOSYS"  # libc falls back, as under runc
    assert unconfined["beyond the profile"] != "ENOSYS"


@x86_64
@kernel
def test_a_call_libseccomp_cannot_name_is_allowed_by_number(
    confined: dict[str, str], unconfined: dict[str, str]
) -> None:
    assert confined["statmount"] == unconfined["statmount"] == "EFAULT"


def test_a_cache_directory_keeps_the_built_program_for_the_next_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capabilities = frozenset(DEFAULT_CAPABILITIES)
    monkeypatch.setattr(seccomp, "_programs", {})
    built = seccomp.default_filter(capabilities, tmp_path)
    [stored] = tmp_path.iterdir()
    assert stored.read_bytes() == built == seccomp._build(capabilities)

    def no_build(_: frozenset[str]) -> bytes:
        raise AssertionError("built again")

    monkeypatch.setattr(seccomp, "_programs", {})  # as in another process
    monkeypatch.setattr(seccomp, "_build", no_build)
    assert seccomp.default_filter(capabilities, tmp_path) == built


def test_a_damaged_cached_program_is_built_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capabilities = frozenset(DEFAULT_CAPABILITIES)
    monkeypatch.setattr(seccomp, "_programs", {})
    built = seccomp.default_filter(capabilities, tmp_path)
    [stored] = tmp_path.iterdir()
    stored.write_bytes(built[:-3])  # not whole sock_filter entries
    monkeypatch.setattr(seccomp, "_programs", {})
    assert seccomp.default_filter(capabilities, tmp_path) == built
    assert stored.read_bytes() == built


def test_another_capability_set_gets_a_program_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_programs", {})
    default = seccomp.default_filter(frozenset(DEFAULT_CAPABILITIES), tmp_path)
    admin = seccomp.default_filter(frozenset({*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"}), tmp_path)
    assert default != admin
    assert len(list(tmp_path.iterdir())) == 2


def test_threads_building_the_same_program_at_once_all_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capabilities = frozenset(DEFAULT_CAPABILITIES)
    monkeypatch.setattr(seccomp, "_programs", {})
    expected = seccomp._build(capabilities)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(seccomp._cached(capabilities, tmp_path))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == [expected] * 6
    [kept] = tmp_path.iterdir()  # one program, no temporary file left
    assert kept.name.startswith("seccomp-") and kept.read_bytes() == expected


def test_the_cache_is_keyed_by_the_libseccomp_file_the_process_maps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capabilities = frozenset(DEFAULT_CAPABILITIES)
    cache = tmp_path / "cache"
    monkeypatch.setattr(seccomp, "_programs", {})
    seccomp.default_filter(capabilities, cache)
    [mapped] = seccomp._mapped("libseccomp.so.")
    assert Path(mapped).resolve() == Path(mapped)  # the real file, not a link to it
    upgraded = tmp_path / "libseccomp.so.2.6.0"  # as after an upgrade of the library
    upgraded.write_bytes(b"another build")
    monkeypatch.setattr(seccomp, "_mapped", lambda prefix: [str(upgraded)])
    monkeypatch.setattr(seccomp, "_programs", {})
    seccomp.default_filter(capabilities, cache)
    assert len(list(cache.iterdir())) == 2
