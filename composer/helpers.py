"""Helper processes for the work a command does once per container (`up` makes new
containers with them, `down` removes them): forks of the command, each doing one container
at a time, so that the work runs on every core instead of taking turns for one interpreter
lock (at 50 containers a third of the cores stood idle while the command's threads waited
for it).

A helper gets the name of a container on a socket it shares with the others (each name
reaches one of them), does the command's work for it with the command's own code and state
(it is a fork of the command, made before the command starts any thread of its own), and
answers with what happened: the progress it reported, then "done" or why not. It dies with
the command (PR_SET_PDEATHSIG), as a thread would, and leaves when the socket closes."""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import signal
import socket
import traceback
from collections.abc import Callable, Iterable

import anyio

from engine import linux

__all__ = ["HelperFailed", "Helpers"]

Report = Callable[[str, str], None]


class HelperFailed(Exception):
    """The work on a container failed (the message says why)."""


class Helpers:
    """`count` helper processes that do `work(name, report)` for the containers they are
    given (work raises HelperFailed when it cannot); `setup()` runs first in each helper, to
    replace what it may not share with the command (its database connection)."""

    def __init__(self, count: int, work: Callable[[str, Report], None],
                 setup: Callable[[], None]) -> None:  # fmt: skip
        self._socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pids: list[int] = []
        self._waiting: dict[str, anyio.Event] = {}
        self._answers: dict[str, tuple[str, str]] = {}  # name → (kind, why)
        self._sending = anyio.Lock()
        parent = os.getpid()
        try:
            for _ in range(count):
                pid = os.fork()
                if pid == 0:
                    self._socket.close()
                    _serve(theirs, parent, work, setup)  # never returns
                self.pids.append(pid)
        finally:
            theirs.close()
        self._socket.setblocking(False)

    # -- from an event loop (up) -----------------------------------------------------------

    async def do(self, name: str) -> None:
        """Have a helper do its work for container `name`; HelperFailed when it failed."""
        done = self._waiting[name] = anyio.Event()
        async with self._sending:  # one waiter for room on the socket at a time
            while not self._send(name):
                await anyio.wait_writable(self._socket)
        await done.wait()
        _raise_failure(name, *self._answers.pop(name))

    async def relay(self, report: Report) -> None:
        """Pass on what the helpers say (their progress to `report`) until cancelled."""
        while True:
            await anyio.wait_readable(self._socket)
            name = self._receive(report)
            if name in self._waiting:
                self._waiting.pop(name).set()

    # -- without one (down) ------------------------------------------------------------------

    def each(self, names: Iterable[str], report: Report) -> dict[str, str]:
        """Have the helpers do their work for each of `names`, their progress to `report`;
        why it failed, for each that failed."""
        queue, pending, failed = list(names), set[str](), dict[str, str]()
        while queue or pending:
            waiting = [self._socket] if queue else []
            readable, writable, _ = select.select([self._socket], waiting, [])
            while writable and queue and self._send(queue[0]):
                pending.add(queue.pop(0))
            if readable:
                name = self._receive(report)
                if name in pending:
                    pending.discard(name)
                    try:
                        _raise_failure(name, *self._answers.pop(name))
                    except HelperFailed as exc:
                        failed[name] = str(exc)
        return failed

    def close(self) -> None:
        """No more work: the helpers leave; wait for them."""
        self._socket.close()
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def _send(self, name: str) -> bool:
        try:
            self._socket.send(name.encode())
        except BlockingIOError:
            return False
        return True

    def _receive(self, report: Report) -> str:
        """One message of a helper: a progress report (passed on), or the answer for a
        container (kept); the container's name ("" when there was none)."""
        try:
            message = self._socket.recv(1 << 16)
        except BlockingIOError:
            return ""
        if not message:
            raise HelperFailed("the helper processes ended")  # killed: no answer will come
        kind, name, text = marshal.loads(message)
        if kind == "report":
            report(name, text)
            return ""
        self._answers[name] = (kind, text)
        return str(name)


def _raise_failure(name: str, kind: str, why: str) -> None:
    if kind == "crashed":  # a bug, as the command's own would be
        raise RuntimeError(f"the helper process working on {name} failed:\n{why}")
    if kind != "done":
        raise HelperFailed(why)


def _serve(sock: socket.socket, parent: int, work: Callable[[str, Report], None],
           setup: Callable[[], None]) -> None:  # fmt: skip
    """In a helper: do what is asked until the command closes its end."""
    code = 0
    try:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)  # the command ended before the line above
        setup()

        def report(name: str, status: str) -> None:
            sock.send(marshal.dumps(("report", name, status)))

        while request := sock.recv(4096):
            name = request.decode()
            try:
                work(name, report)
                answer = ("done", name, "")
            except HelperFailed as exc:
                answer = ("failed", name, str(exc))
            except BaseException:  # a bug: the command reports it as its own
                answer = ("crashed", name, traceback.format_exc())
            sock.send(marshal.dumps(answer))
    except BaseException:
        code = 1
    finally:
        os._exit(code)
