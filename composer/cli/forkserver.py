"""The fork server of a state root: a process that has composer's modules loaded and forks a
process for each command a `composer` program hands it (composer/cli/client.py), so a
command does not load them again (about half a second of one core on a small machine).

`python -I composer/cli/forkserver.py STATE_ROOT` serves `STATE_ROOT/run/cli.sock` (at most
one per root, by `run/cli.lock`); the first command run in its own interpreter starts it.
Each request carries the command's arguments, environment, umask, the encodings of its
standard streams and, as descriptors, the streams and its working directory. The fork takes
all of them, moves into the client's cgroups, and runs the CLI as the program would; the
server answers with the fork's pid, relays the signals the client sends on (the terminal's
to the fork's process group, the others to the fork), and sends its exit status. A client
that goes away (killed) takes its command with it: the server kills the fork's group, as
killing the program would have ended the command. The server forks only for the code it
loaded: a request made by other code (composer upgraded, a module edited) is answered
"stale" and the server leaves once its commands end. It leaves too after ten idle minutes.
It holds no state of its own: killed, the commands it runs end with it and nothing is lost.

A command's daemons (a stack's supervisor, `python -m composer.reconciler ROOT PROJECT`) are
forked by the server too (engine.daemon.spawn_through): in a session of their own and not its
children, with the command's environment and cgroups, their output to their log.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import io
import marshal
import os
import pkgutil
import runpy
import select
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as a program (python -I forkserver.py ROOT): find composer
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from composer.cli.client import code_listing, current_umask
from engine import daemon, linux
from engine.cgroups.membership import join_cgroups_of
from engine.daemon import claim

__all__ = ["serve"]

_IDLE = 600.0  # seconds without a command before the server leaves
# Signals a terminal sends to its foreground process group: relayed to the command's group
# (its helpers too, as when it ran in the terminal); the others only to the command.
_TO_GROUP = {signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH, signal.SIGTSTP, signal.SIGTTIN,
             signal.SIGTTOU, signal.SIGCONT}  # fmt: skip
_RELAYED = _TO_GROUP | {signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                        signal.SIGALRM}  # fmt: skip


@dataclass
class _Command:
    pid: int
    pidfd: int
    connection: socket.socket


def preload() -> None:
    """Import every module of composer and engine (what any command could need; ~40 MB),
    and the event loop anyio runs on, which it imports only when a loop starts."""
    import anyio._backends._asyncio  # noqa: F401

    import composer
    import engine

    for package in (composer, engine):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.endswith(("__main__", ".forkserver")):
                importlib.import_module(module.name)


def serve(root: Path) -> None:
    run = root / "run"
    lock = claim(run / "cli.lock")
    if lock is None:
        return  # another server serves this root
    os.chdir("/")
    preload()
    _Server(run / "cli.sock", lock).serve()


class _Server:
    def __init__(self, path: Path, lock: int) -> None:
        self.path = path
        self.lock: int | None = lock
        self.code = code_listing()
        path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(str(path))
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.poller = select.poll()
        self.poller.register(self.listener, select.POLLIN)
        self.commands: dict[int, _Command] = {}  # by the fd of its connection, of its pidfd
        self.context = _context(os.getpid())

    def serve(self) -> None:
        # What the forks inherit, never to be collected or copied: the loaded modules.
        gc.collect()
        gc.freeze()
        last = time.monotonic()
        while self.lock is not None or self.commands:
            if not self.commands and time.monotonic() - last > _IDLE:
                break
            for fd, _ in self.poller.poll(1000):
                if self.lock is not None and fd == self.listener.fileno():
                    self._accept()
                    last = time.monotonic()
                elif fd in self.commands:
                    command = self.commands[fd]
                    if fd == command.pidfd:
                        _report(command)
                        self._forget(command)
                    elif not _relay(command):  # the client went away; its command is killed
                        self.poller.unregister(fd)
                        del self.commands[fd]
        self._retire()

    def _accept(self) -> None:
        connection, _ = self.listener.accept()
        fds: list[int] = []
        try:
            connection.settimeout(2)
            message, fds, _, _ = socket.recv_fds(connection, 4 << 20, 8)
            pid, uid, _gid = struct.unpack("3i", connection.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))  # fmt: skip
            request = marshal.loads(message)
            if uid != os.geteuid() or len(fds) != (1 if "daemon" in request else 4):
                raise ValueError("refused")
            if request.get("protocol") != 1 or request.get("code") != self.code:
                # Made by other code: serve no more, so that the client starts a new server;
                # unless a command of an older server asks (for a daemon), which starts it so.
                if "daemon" not in request:
                    self._retire()
                connection.sendall(b"stale")
                raise ValueError("stale")
            if "daemon" in request:
                _start_daemon(connection, request, fds[0], pid)
                raise ValueError("done")  # nothing to follow: the connection is closed
            if _context(pid) != self.context:  # other namespaces, root or privileges
                connection.sendall(b"foreign")
                raise ValueError("foreign")
            self._start(connection, request, fds, pid)
        except (OSError, ValueError, EOFError, TypeError):
            connection.close()
        finally:
            for number in fds:
                os.close(number)

    def _start(self, connection: socket.socket, request: dict[str, object], fds: list[int],
               client: int) -> None:  # fmt: skip
        """Fork the command; it runs once the client knows of it (were anything to fail
        before, the client would run it itself: never twice)."""
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        server = os.getpid()
        child = os.fork()
        if child == 0:
            os.close(go_w)
            if os.read(go_r, 1) != b"g":
                os._exit(1)  # the server gave up on it
            _command(request, fds, client, server, (str(self.path), self.code))  # never returns
        os.close(go_r)
        try:
            with contextlib.suppress(OSError):  # as the fork does: whichever comes first
                os.setpgid(child, child)
            command = _Command(child, os.pidfd_open(child), connection)
            connection.settimeout(None)
            connection.sendall(b"pid %d" % child)
            os.write(go_w, b"g")
        except BaseException:
            os.close(go_w)  # it leaves without running anything
            os.waitpid(child, 0)
            raise
        os.close(go_w)
        self.commands[connection.fileno()] = self.commands[command.pidfd] = command
        self.poller.register(connection, select.POLLIN)
        self.poller.register(command.pidfd, select.POLLIN)

    def _forget(self, command: _Command) -> None:
        for fd in (command.pidfd, command.connection.fileno()):
            if self.commands.pop(fd, None) is not None:
                self.poller.unregister(fd)
        os.close(command.pidfd)
        command.connection.close()

    def _retire(self) -> None:
        """Take no more requests and let another server start; commands running go on."""
        if self.lock is None:
            return
        self.path.unlink(missing_ok=True)
        self.poller.unregister(self.listener)
        self.listener.close()
        os.close(self.lock)
        self.lock = None


def _context(pid: int) -> tuple[str, ...]:
    """What a command inherits from the process it runs in, besides what a request carries:
    its namespaces, root directory and privileges. A client whose differ (`ip netns exec`, a
    unit with fewer capabilities, a container) runs its command itself."""
    found = []
    for name in ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"):
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/{pid}/ns/{name}"))
    found.append(os.readlink(f"/proc/{pid}/root"))
    with open(f"/proc/{pid}/status") as status:
        found += [line for line in status
                  if line.startswith(("CapEff", "CapBnd", "NoNewPrivs", "Seccomp:"))]  # fmt: skip
    return tuple(found)


def _relay(command: _Command) -> bool:
    """Relay a signal the client sent; False when the client went away, and with it its
    command (killed)."""
    try:
        message = command.connection.recv(64)
    except OSError:
        message = b""
    if not message:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError):
                kill(command.pid, signal.SIGKILL)
        return False
    with contextlib.suppress(ValueError, ProcessLookupError):
        number = int(message)
        if number in _TO_GROUP:
            os.killpg(command.pid, number)
        elif number in _RELAYED:
            os.kill(command.pid, number)
    return True


def _report(command: _Command) -> None:
    _, status = os.waitpid(command.pid, 0)
    if os.WIFSIGNALED(status):
        answer = b"killed %d" % os.WTERMSIG(status)
    else:
        answer = b"exit %d" % os.waitstatus_to_exitcode(status)
    with contextlib.suppress(OSError):
        command.connection.sendall(answer)


def _command(request: dict[str, object], fds: list[int], client: int, server: int,
             address: tuple[str, str]) -> None:  # fmt: skip
    """In the fork: become the client's command, run it, and end with its exit code. Its
    daemons (a stack's supervisor) are forked by the server too."""
    try:
        daemon.spawn_through(functools.partial(_ask_for_daemon, *address))
        os.setpgid(0, 0)
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # the server killed: so are we
        if os.getppid() != server:
            os._exit(3)
        os.fchdir(fds[3])
        _become(client, request, (fds[0], fds[1], fds[2]), request["streams"])  # type: ignore[arg-type]
        sys.argv = ["composer", *request["argv"]]  # type: ignore[misc]
        from composer.cli.main import run

        run()
    except KeyboardInterrupt:  # Ctrl-C before the CLI took over: as the CLI ends on it
        os._exit(130)
    except SystemExit as exc:  # as the interpreter ends on it
        _exit_as(exc.code)
    except BaseException as exc:  # the fork must end here, whatever happened
        with contextlib.suppress(OSError):
            os.write(2, f"composer: the fork server could not run the command: {exc!r}\n".encode())
    os._exit(3)


def _ask_for_daemon(path: str, code: str, argv: Sequence[str], log: int,
                    environ: dict[str, str]) -> int | None:  # fmt: skip
    """A daemon `python -m MODULE ARGS...` started by the server (see _start_daemon): its
    pid, or None for another program, or when the server does not answer."""
    if len(argv) < 3 or argv[0] != sys.executable or argv[1] != "-m":
        return None
    request = {"protocol": 1, "code": code, "daemon": list(argv[2:]), "environ": environ,
               "umask": current_umask()}  # fmt: skip
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(path)
            socket.send_fds(sock, [marshal.dumps(request)], [log])
            answer = sock.recv(64)
        except OSError:
            return None
    return int(answer[4:]) if answer.startswith(b"pid ") else None


def _start_daemon(connection: socket.socket, request: dict[str, object], log: int,
                  requester: int) -> None:  # fmt: skip
    """Fork the daemon a command asked for, in a session of its own and not our child (it
    outlives us); answer with its pid."""
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            daemon_pid = os.fork()
            if daemon_pid == 0:
                _daemon(request, log, requester)  # never returns
            connection.sendall(b"pid %d" % daemon_pid)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def _daemon(request: dict[str, object], log: int, requester: int) -> None:
    """In the fork: become `python -m MODULE ARGS...` with the requester's environment and
    cgroups, its output to the log, and end when the module's code ends."""
    code: object = None
    try:
        null = os.open("/dev/null", os.O_RDONLY)
        utf8: list[tuple[str, str] | None] = [("utf-8", "strict"), ("utf-8", "strict"),
                                              ("utf-8", "backslashreplace")]  # fmt: skip
        _become(requester, request, (null, log, log), utf8)
        program: list[str] = request["daemon"]  # type: ignore[assignment]
        module, *arguments = program
        sys.argv = [module, *arguments]
        sys.modules.pop(module, None)  # run afresh as __main__, as `python -m` does
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # as the interpreter reports what ends a program
        traceback.print_exc()
        code = 1
    _exit_as(code)


def _become(requester: int, request: dict[str, object], stdio: tuple[int, int, int],
            encodings: list[tuple[str, str] | None]) -> None:  # fmt: skip
    """In a fork: take on what the requester has and the server has not: its cgroups, these
    standard streams (every other descriptor of the server's closed), the request's umask
    and environment (TZ too), and sys.stdin/out/err with these encodings."""
    join_cgroups_of(requester)
    for target, number in enumerate(stdio):
        os.dup2(number, target)
    os.closerange(3, 1 << 20)  # the server's socket, lock and other commands' descriptors
    os.umask(int(request["umask"]))  # type: ignore[call-overload]
    os.environ.clear()
    environ: dict[str, str] = request["environ"]  # type: ignore[assignment]
    os.environ.update(environ)
    time.tzset()
    _streams(encodings)


def _exit_as(code: object) -> None:
    """End as the interpreter ends on SystemExit(code), standard streams flushed."""
    if code is not None and not isinstance(code, int):  # sys.exit("message")
        with contextlib.suppress(Exception):
            print(code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _streams(encodings: list[tuple[str, str] | None]) -> None:
    """sys.stdin, stdout and stderr on the client's descriptors, with its encodings, buffered
    as the interpreter buffers them (a terminal's stdout, and stderr, by line)."""
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        stream = None
        if encodings[number] is not None:
            encoding, errors = encodings[number]  # type: ignore[misc]
            binary = io.open(number, "rb" if number == 0 else "wb", closefd=False)  # noqa: UP020
            by_line = number == 2 or (number == 1 and os.isatty(1))
            unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
            stream = io.TextIOWrapper(binary, encoding, errors, newline="\n",
                                      line_buffering=by_line, write_through=unbuffered)  # fmt: skip
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
