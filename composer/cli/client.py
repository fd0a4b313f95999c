"""The `composer` program as installed: it hands the command to the state root's fork server
(composer/cli/forkserver.py), which has the CLI's modules loaded already and forks a process
that runs it with this process's arguments, environment, directory, umask and standard
streams, while this one relays signals and ends with its exit status. Where no server answers
(none running, one that loaded other code, COMPOSER_FORKSERVER=0), the command runs here, in
this interpreter, and a server is started for the next ones.

Python with composer's modules takes about half a second to load on a small machine (pydantic
and its models, anyio, the engine) before a command does anything, every time; a served
command starts in the time of a connect and a fork. The server holds no state: killing it
loses nothing but that head start.

This module runs before anything else of composer's and imports only what the interpreter has
loaded already and two C modules: `socket` and `signal` would import `enum` and `selectors`,
20-30 ms on such a machine.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # (no stubs: what signal wraps)
import _socket
import marshal
import os
import sys

__all__ = ["DISABLE", "code_listing", "current_umask", "run", "server_paths"]

DISABLE = "COMPOSER_FORKSERVER"  # "0": every command in its own interpreter
_PROTOCOL = 1
_RELAYED = (_signal.SIGINT, _signal.SIGQUIT, _signal.SIGWINCH, _signal.SIGTERM, _signal.SIGHUP,
            _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGCONT, _signal.SIGALRM)  # fmt: skip
_STOPS = (_signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU)


def server_paths(environ: dict[str, str] | os._Environ[str]) -> tuple[str, str] | None:
    """The fork server's socket and lock file in the state root that `environ` selects (as
    composer.settings reads COMPOSER_ROOT), or None when that root has no run directory yet
    (no command that keeps state ran there) or is not an absolute path."""
    root = environ.get("COMPOSER_ROOT") or "/var/lib/composer"
    run = os.path.join(root, "run")
    if not os.path.isabs(root) or not os.path.isdir(run):
        return None
    return os.path.join(run, "cli.sock"), os.path.join(run, "cli.lock")


def code_listing() -> str:
    """What a server must have loaded to serve this process: the source listing of composer
    and engine, and the times of the directories packages are installed in (an upgrade of
    pydantic changes them). ~1 ms."""
    from engine.sources import source_listing  # os only

    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lines = [*source_listing(os.path.join(top, "composer")),
             *source_listing(os.path.join(top, "engine"))]  # fmt: skip
    site = sys.modules.get("site")  # loaded at start; the server's (-I) has no user site
    for entry in site.getsitepackages() if site is not None else ():
        if os.path.isdir(entry):
            lines.append(f"{entry} {os.stat(entry).st_mtime_ns}")
    return "\n".join(lines)


def run() -> None:
    """The `composer` program."""
    paths = None if os.environ.get(DISABLE) == "0" else server_paths(os.environ)
    if paths is not None and not _in_background():
        relay = _connect(paths[0])
        if relay is not None:
            relay.until_done()  # ends the process as the command ended
        _start_server(paths)
    from composer.cli.main import run as run_here

    run_here()


def _in_background() -> bool:
    """Whether a standard stream is a terminal this process is in the background of: its
    command runs here, where the terminal stops what reads it (a served command is in no
    session of the terminal's)."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) != os.getpgrp():
                return True
        except OSError:
            continue
    return False


def _connect(path: str) -> _Relay | None:
    """The relay to the server whose command now runs, or None when none took it."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    here = -1
    relay = None
    try:
        sock.connect(path)
        credentials = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(credentials[4:8], sys.byteorder) != os.geteuid():
            raise OSError("the server is another user's")  # not to be handed our terminal
        here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        streams = (sys.stdin, sys.stdout, sys.stderr)
        request = {
            "protocol": _PROTOCOL,
            "code": code_listing(),
            "argv": sys.argv[1:],
            "environ": dict(os.environ),
            "umask": current_umask(),
            "streams": [(s.encoding, s.errors) if s is not None else None for s in streams],
        }
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2, here))
        sock.sendmsg([marshal.dumps(request)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        relay = _Relay(sock)
        answer = sock.recv(64)
    except (OSError, ValueError):  # no server, or a closed standard stream (EBADF)
        answer = b""
    finally:
        if here >= 0:
            os.close(here)
    if not answer.startswith(b"pid "):  # "stale": it loaded other code (and leaves); "foreign":
        # this process has other namespaces or privileges than it
        if relay is not None:
            relay.undo()
        sock.close()
        return None
    return relay


def current_umask() -> int:
    """This process's umask (read by setting it and back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _Relay:
    """The command's signals, sent on to the server from the moment the request is made (the
    server reads them once its fork runs); when no server takes the command, handed back to
    this process, which then runs the command itself."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.previous: dict[int, object] = {}
        self.received: list[int] = []
        for number in (*_RELAYED, *_STOPS):
            previous = _signal.getsignal(number)
            if previous != _signal.SIG_IGN:  # ignored (nohup, `&`): as it was
                self.previous[number] = previous
                _signal.signal(number, self._relay)

    def _relay(self, number: int, _frame: object) -> None:
        self.received.append(number)
        try:
            self.sock.send(b"%d" % number)
        except OSError:
            pass
        if number in _STOPS:
            os.kill(os.getpid(), _signal.SIGSTOP)  # stopped with it; SIGCONT resumes both

    def undo(self) -> None:
        for number, previous in self.previous.items():
            _signal.signal(number, previous)
        for number in self.received:
            if number not in _STOPS:
                os.kill(os.getpid(), number)

    def until_done(self) -> None:
        """Relay signals until the command ends, then end as it did."""
        try:
            answer = self.sock.recv(64)
        except OSError:
            answer = b""
        kind, _, value = answer.partition(b" ")
        if kind == b"exit":
            os._exit(int(value))
        if kind == b"killed":  # by a signal: end by it too, as the shell expects
            number = int(value)
            _signal.signal(number, _signal.SIG_DFL)
            os.kill(os.getpid(), number)
            os._exit(128 + number)
        os.write(2, b"composer: the fork server ended before the command did\n")
        os._exit(1)


def _start_server(paths: tuple[str, str]) -> None:
    """Start a fork server in the background (unless one runs or starts) for the next
    commands; this one does not wait for it. Never fails the command."""
    from pathlib import Path

    from engine.daemon import start_daemon

    lock = Path(paths[1])
    argv = [sys.executable, "-I", os.path.join(os.path.dirname(__file__), "forkserver.py")]
    try:
        start_daemon([*argv, str(lock.parent.parent)], lock, lock.with_suffix(".log"), {},
                     wait=False)  # fmt: skip
    except OSError:
        pass
