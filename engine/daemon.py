"""Long-running helper processes of a state root (a stack's supervisor, composer's fork
server): at most one per lock file, found by the pid written in it, started in a session of
their own so they outlive whoever started them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["Spawner", "claim", "daemon_pid", "running_pid", "spawn_through", "start_daemon"]

# (argv, the log's fd, environment) -> the pid of the daemon it started, or None: it cannot.
Spawner = Callable[[Sequence[str], int, dict[str, str]], "int | None"]
_spawner: list[Spawner] = []


def spawn_through(spawner: Spawner | None) -> None:
    """Start this process's daemons through `spawner` first: a process that has their code
    loaded already (composer's fork server) starts them in a fork of itself, in a session of
    their own, their output to the log, in a fraction of the time a new interpreter takes to
    load it. When it cannot (None), or with None here, posix_spawn starts them."""
    _spawner[:] = [spawner] if spawner is not None else []


def running_pid(lock: Path) -> int | None:
    """The pid of the process holding `lock` (see claim), or None when none does."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with contextlib.suppress(ValueError, OSError):
            return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def daemon_pid(lock: Path) -> int | None:
    """The pid of the daemon of `lock`: the one holding it, else one started for it that is
    still loading (see start_daemon), else None."""
    running = running_pid(lock)
    return running if running is not None else _starting(lock)


def claim(lock: Path) -> int | None:
    """Take `lock` for this process for as long as it lives and write its pid in it; the
    lock's fd, or None when another process holds it."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    # Started, no longer starting: once it lets the lock go (a fork server retiring while
    # its commands end), it must not pass for a daemon still loading (see _starting).
    lock.with_name(lock.name + ".starting").unlink(missing_ok=True)
    return fd


def start_daemon(
    argv: Sequence[str],
    lock: Path,
    log: Path,
    env: dict[str, str],
    wait: bool = True,
) -> int:
    """Run `argv` in its own session unless the holder of `lock` runs; its pid once it holds
    the lock. With `wait` False, the pid it was started with, at once.
    One that another call started and that is still loading is waited for, not doubled
    (were two started at once all the same, the second to claim the lock leaves)."""
    running = running_pid(lock)
    if running is not None:
        return running
    pid = _starting(lock)
    if pid is None:
        pid = _spawn(argv, lock, log, env)
    if not wait:
        return pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        running = running_pid(lock)
        if running is not None:
            return running
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break  # it ended at once: the log says why
        if _stamp(pid) is None:
            break  # not our child, and gone
        time.sleep(0.005)
    raise RuntimeError(f"{argv[-2:]} did not start (see {log})")


def _stamp(pid: int) -> str | None:
    """`pid` and its start time (which tells it from a later process with the same pid), or
    None when there is no such process (or only its zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return None if stat[0] == b"Z" else f"{pid} {stat[19].decode()}"


def _starting(lock: Path) -> int | None:
    """The daemon of `lock` another call started and that has not claimed the lock yet (it is
    still loading), or None: a second would only start to leave again, and meanwhile the
    first one could die and the second take its place unseen."""
    try:
        pid, started = lock.with_name(lock.name + ".starting").read_text().split()
    except (OSError, ValueError):
        return None
    return int(pid) if _stamp(int(pid)) == f"{pid} {started}" else None


def _spawn(argv: Sequence[str], lock: Path, log: Path, env: dict[str, str]) -> int:
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        pid = _spawner[0](argv, out, env) if _spawner else None
        pid = pid or os.posix_spawn(
            argv[0],
            list(argv),
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, out, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(out)
    stamp = _stamp(pid)
    if stamp is not None:
        lock.with_name(lock.name + ".starting").write_text(stamp + "\n")
    return pid
