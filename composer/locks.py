"""The lock of a stack: one composer command (or the stack's reconciler) acts on a stack at a
time. A flock on `STATE_ROOT/locks/PROJECT.lock`, released by the kernel when its holder
ends, however it ends."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["stack_lock"]


@contextlib.contextmanager
def stack_lock(
    root: Path, project: str, waiting: Callable[[], None] | None = None, *, wait: bool = True
) -> Iterator[bool]:
    """Hold the stack's lock; yields True once held. When another holds it: `waiting` is
    called once, then it waits — or, with `wait` False, yields False at once."""
    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{project}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)
