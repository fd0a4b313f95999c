"""A preloaded container init, forked for each container instead of started afresh: the
Python interpreter and the init's modules are loaded once, so a container starts in the time
of a fork and its own setup (about 12 ms less than starting the init program).

`python -m engine.container.zygote STATE_ROOT` serves one state root on
`STATE_ROOT/run/zygote.sock` (at most one per root). Each request carries the init spec and
the container's descriptors (SCM_RIGHTS). The zygote forks; the fork does what the init
program does, then replaces itself with the shim in adopt mode, which waits for the
container's first process (its child) and records how it ends. The zygote, single-threaded,
reaps the forks; killed, it loses nothing: running containers keep their shims.

A zygote forks with the code it loaded when it started, so it serves only requests made with
the same engine code (a stamp of its files' sizes and times, sent with each request), and
`ensure_zygote` replaces one that loaded other code, such as before an upgrade.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import marshal
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a program (python -S -I zygote.py ROOT): find the engine
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine import linux
from engine.container import init
from engine.daemon import claim, running_pid, start_daemon
from engine.sources import source_listing

__all__ = [
    "ZYGOTE_SOCKET",
    "code_stamp",
    "ensure_zygote",
    "request_start",
    "serve",
    "zygote_pid",
]

ZYGOTE_SOCKET = "zygote.sock"
_STAMP = "zygote.stamp"
_IDLE = 600.0  # seconds without a request before the zygote leaves


def _run_dir(root: Path) -> Path:
    path = root / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def zygote_pid(root: Path) -> int | None:
    """The pid of the running zygote of `root`, if any."""
    return running_pid(_run_dir(root) / "zygote.lock")


@functools.cache
def code_stamp() -> str:
    """The engine's code as it is on disk now: a hash of its source listing (once per
    process)."""
    listing = source_listing(str(Path(__file__).resolve().parents[1]))
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]


def ensure_zygote(root: Path) -> int:
    """Start the zygote of `root` unless it runs with the engine's code as it is now (one
    that loaded other code is ended first); its pid."""
    run = _run_dir(root)
    running = zygote_pid(root)
    if running is not None and _read(run / _STAMP) != code_stamp():
        with contextlib.suppress(ProcessLookupError):
            os.kill(running, signal.SIGTERM)
        deadline = time.monotonic() + 2
        while zygote_pid(root) is not None and time.monotonic() < deadline:
            time.sleep(0.002)
        (run / ZYGOTE_SOCKET).unlink(missing_ok=True)
    return start_daemon(
        [sys.executable, "-S", "-I", __file__, str(root)],
        run / "zygote.lock",
        run / "zygote.log",
        {},
        ready=lambda: (run / ZYGOTE_SOCKET).exists(),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def request_start(root: Path, request: dict[str, object], fds: list[int]) -> bool:
    """Ask the zygote of `root` to start a container; False when no zygote answers, or one
    that runs other code than this process's."""
    path = _run_dir(root) / ZYGOTE_SOCKET
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(str(path))
        socket.send_fds(sock, [marshal.dumps({**request, "stamp": code_stamp()})], fds)
        return sock.recv(16) == b"ok"
    except OSError:
        return False
    finally:
        sock.close()


def _fork_container(message: bytes, fds: list[int], shim: str) -> None:
    """In the fork: become the container's init, then its shim."""
    request = marshal.loads(message)
    local = dict(zip(request["fds"], fds, strict=True))  # the caller's numbers → ours

    def fd(name: str) -> int:
        number: int = request[name]
        return local[number] if number >= 0 else -1

    os.setsid()
    for target, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        os.dup2(fd(name), target)
    spec = request["spec"]
    for mount in spec["mounts"]:
        if mount["source"].startswith("fd:"):
            mount["source"] = f"fd:{local[int(mount['source'][3:])]}"
    for number in fds:
        os.set_inheritable(number, True)
    # With a user namespace the first process is a grandchild: it must come to us (the shim
    # to be) when its parent ends, not to the host's init.
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    child = init.start(spec, fd("sync"), fd("go"))
    if child < 0:
        os._exit(1)
    argv = [shim, "--adopt", str(child), request["exit_file"], request["oom_file"],
            str(fd("terminal")), str(fd("out")), str(fd("hold"))]  # fmt: skip
    os.execv(shim, argv)


def serve(root: Path) -> None:
    run = _run_dir(root)
    if claim(run / "zygote.lock") is None:
        return  # another zygote serves this root
    stamp = code_stamp()
    (run / _STAMP).write_text(stamp + "\n")
    path = run / ZYGOTE_SOCKET
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(64)
    # Loaded once here: the forks plumb networks and install seccomp filters.
    import engine.network.veth
    import engine.seccomp  # noqa: F401

    shim = str(Path(__file__).with_name("composer-shim"))
    # A fork writes to each page it touches, which the kernel then copies for it: the
    # collector, walking every object, would touch them all. The loaded modules are frozen
    # out of its reach, and the forks, which live for a few milliseconds, do without it.
    gc.collect()
    gc.freeze()
    last = time.monotonic()
    while time.monotonic() - last < _IDLE:
        ready, _, _ = select.select([listener], [], [], 1.0)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if not ready:
            continue
        conn, _ = listener.accept()
        last = time.monotonic()
        try:
            message, fds, _, _ = socket.recv_fds(conn, 4 << 20, 64)
        except OSError:
            conn.close()
            continue
        if marshal.loads(message).get("stamp") != stamp:  # made by other code than ours
            with contextlib.suppress(OSError):
                conn.sendall(b"stale")
            conn.close()
            for number in fds:
                os.close(number)
            continue
        pid = os.fork()
        if pid == 0:
            gc.disable()
            try:
                listener.close()
                conn.sendall(b"ok")
                conn.close()
                _fork_container(message, fds, shim)
            except BaseException as exc:  # reported where the runtime reads the container's errors
                os.write(2, f"zygote: a container's start failed: {exc!r} ({shim})\n".encode())
            finally:
                os._exit(1)
        conn.close()
        for number in fds:
            os.close(number)
    path.unlink(missing_ok=True)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
