"""Starting a container: the shim, its waiting parent, first makes its namespaces and first
process (init.c); the runtime steers it through pipes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from engine.container.spec import Spec
from engine.errors import EngineError

__all__ = ["SHIM", "ContainerError", "Started", "launch", "start_time"]

SHIM: Final = Path(__file__).with_name("composer-shim")


class ContainerError(EngineError):
    """A container could not be created, started, or acted on."""


@dataclass(frozen=True)
class Started:
    """A running container's first process: its pid on the host, and its start time (clock
    ticks since boot, /proc/PID/stat field 22), which tells it from a later process that
    reuses the pid; and the shim's pid."""

    pid: int
    start_time: int
    shim_pid: int


def start_time(pid: int) -> int | None:
    """The start time of process `pid`, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[19])


def _messages(reader: BinaryIO) -> Callable[[], dict[str, object]]:
    def next_message() -> dict[str, object]:
        line = reader.readline()
        if not line:
            return {"error": "the container's init ended without a word", "op": "start"}
        message: dict[str, object] = json.loads(line.decode(errors="surrogateescape"))
        return message

    return next_message


def _steer(
    spec: Spec,
    sync_r: int,
    go_w: int,
    before_start: Callable[[int], None] | None,
    shim_pid: int,
) -> Started:
    """Follow the init's messages: the first process's pid, then whether it started."""
    sync = os.fdopen(sync_r, "rb")
    try:
        receive = _messages(sync)
        first = receive()
        if "error" in first:
            raise ContainerError(f"container {spec.id}: {first['error']}")
        pid = int(first["pid"])  # type: ignore[call-overload]
        if before_start is not None:
            before_start(pid)
        os.write(go_w, b"g")
        result = receive()
        if "error" in result:
            raise ContainerError(f"container {spec.id}: {result['error']}")
        return Started(pid, start_time(pid) or 0, shim_pid)
    finally:
        os.close(go_w)
        sync.close()


def launch(
    spec: Spec,
    *,
    exit_file: Path,
    oom_file: str = "-",
    stdout: int,
    stderr: int,
    stdin: int | None = None,
    pass_fds: Sequence[int] = (),
    before_start: Callable[[int], None] | None = None,
    terminal: int = -1,
    hold: int = -1,
    terminal_log: int = -1,
) -> Started:
    """Create and start the container `spec` describes; `before_start(pid)` runs once its
    namespaces exist and its networks are plumbed, before the service is executed. `terminal`:
    the master of the container's terminal, which the shim keeps and copies into
    `terminal_log`;
    `hold`: the write end of the container's stdin pipe, which the shim keeps open."""
    if not os.access(SHIM, os.X_OK):
        raise ContainerError(f"{SHIM} is missing: run ./install.sh, which builds it")
    document = spec.to_init()
    spec_r, spec_w = os.pipe()
    sync_r, sync_w = os.pipe()
    go_r, go_w = os.pipe()
    shim_fds = tuple(fd for fd in (terminal, hold) if fd >= 0)
    inherited = (spec_r, sync_w, go_r, *pass_fds, *shim_fds)
    for fd in inherited:
        os.set_inheritable(fd, True)
    actions = [
        (os.POSIX_SPAWN_DUP2, stdin, 0)
        if stdin is not None
        else (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    out = -1
    if terminal >= 0:
        out = os.dup(terminal_log)  # the shim's own copy of the log file, for the terminal
        os.set_inheritable(out, True)
        shim_fds += (out,)
    argv = [
        str(SHIM), str(exit_file), oom_file, str(terminal), str(out), str(hold), "--init",
        str(spec_r), str(sync_w), str(go_r),
    ]  # fmt: skip
    try:
        shim_pid = os.posix_spawn(str(SHIM), argv, {}, file_actions=actions, setsid=True)
    finally:
        for fd in (spec_r, sync_w, go_r):
            os.close(fd)
        for fd in (*pass_fds, *shim_fds):
            if fd != out:
                os.set_inheritable(fd, False)
        if out >= 0:
            os.close(out)
    try:
        with os.fdopen(spec_w, "wb") as f:
            f.write(document)
        return _steer(spec, sync_r, go_w, before_start, shim_pid)
    except BaseException:
        os.kill(shim_pid, 9)  # takes its init along; the first process dies with its pid ns
        os.waitpid(shim_pid, 0)
        raise
