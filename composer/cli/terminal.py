"""An interactive terminal for a process in a container: a pseudo-terminal whose other end is
relayed to ours, in raw mode, with window size changes passed on (as `docker exec -it`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import tty
from collections.abc import Callable, Iterator

__all__ = ["interactive"]


def _copy_size(source: int, target: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def interactive(run: Callable[[int], int]) -> int:
    """Call `run(slave)` (which starts the process with `slave` as its stdio and waits for it
    in a thread of its own) while relaying our terminal to the pty; its exit code."""
    import threading

    master, slave = os.openpty()
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    _copy_size(stdin, slave)
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(run(slave)), daemon=True)
    previous = signal.signal(signal.SIGWINCH, lambda *_: _copy_size(stdin, slave))
    try:
        with _raw(stdin):
            worker.start()
            while worker.is_alive():
                ready, _, _ = select.select([stdin, master], [], [], 0.05)
                if stdin in ready:
                    data = os.read(stdin, 65536)
                    if data:
                        os.write(master, data)
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: every process holding the terminal has ended
                        data = b""
                    if data:
                        os.write(stdout, data)
            with contextlib.suppress(OSError):  # what the process wrote last
                while select.select([master], [], [], 0)[0]:
                    data = os.read(master, 65536)
                    if not data:
                        break
                    os.write(stdout, data)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        worker.join()
        os.close(master)
        os.close(slave)
    return result[0] if result else 1
