"""The supervisor of a group of containers (a stack): a long-running process that moves their
output into their logs and notices when they end, the moment they end (pidfd), whoever started
them. One per group, at most: a second one exits at once. Killed, it loses nothing: containers
keep running (their shims wait for them and record how they end), their output waits in their
raw files, and the next supervisor adopts them by pid and start time.

Run: `python -m engine.supervisor STATE_ROOT GROUP` (start it with `ensure_supervisor`). It
writes what it sees to `STATE_ROOT/run/GROUP.events` (JSON lines) and exits once its group
has had no running container for `idle` seconds.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import select
import sys
import time
from pathlib import Path
from typing import Final

from engine.daemon import claim, running_pid, start_daemon

__all__ = ["Supervisor", "ensure_supervisor", "supervisor_pid"]

_PUMP_INTERVAL: Final = 0.25


def _run_dir(root: Path) -> Path:
    path = root / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def supervisor_pid(root: Path, group: str) -> int | None:
    """The pid of the group's running supervisor, if there is one."""
    return running_pid(_run_dir(root) / f"{group}.lock")


def ensure_supervisor(root: Path, group: str) -> int:
    """Start the group's supervisor unless it runs; its pid. It runs in its own session and
    outlives the caller."""
    run = _run_dir(root)
    return start_daemon(
        [sys.executable, "-m", "engine.supervisor", str(root), group],
        run / f"{group}.lock",
        run / f"{group}.log",
        dict(os.environ),
    )


class Supervisor:
    """Watches the containers of `group` under `root`."""

    def __init__(self, root: Path, group: str, idle: float = 30.0) -> None:
        from engine.cgroups import detect
        from engine.container.runtime import Runtime

        self.root = root
        self.group = group
        self.idle = idle
        self.runtime = Runtime(root, detect())
        self._watched: dict[int, str] = {}  # pidfd → container id
        self._limits: dict[str, tuple[int, int]] = {}  # container id → log size, files kept
        self._events = _run_dir(root) / f"{group}.events"

    def _event(self, kind: str, container_id: str, **details: object) -> None:
        when = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        line = json.dumps({"time": when, "event": kind, "container": container_id, **details})
        with open(self._events, "a") as f:
            f.write(line + "\n")

    def _members(self) -> list[str]:
        members = []
        for container_id in self.runtime.ids():
            with contextlib.suppress(Exception):
                if self.runtime.get(container_id).config.group == self.group:
                    members.append(container_id)
        return members

    def _adopt(self) -> None:
        """Watch every running member not watched yet (new ones, or after a restart)."""
        watched = set(self._watched.values())
        for container_id in self._members():
            if container_id in watched:
                continue
            fd = self.runtime.pidfd(container_id)
            if fd is not None:
                self._watched[fd] = container_id
                self._event("watch", container_id)

    def _pump(self, container_id: str, final: bool = False) -> None:
        from engine.container.logs import pump

        if container_id not in self._limits:
            config = self.runtime.get(container_id).config
            self._limits[container_id] = (config.log_max_size, max(config.log_max_files - 1, 1))
        size, keep = self._limits[container_id]
        pump(self.runtime.containers / container_id, max_size=size, keep=keep, final=final)

    def _ended(self, fd: int) -> None:
        container_id = self._watched.pop(fd)
        os.close(fd)
        state = self.runtime.wait(container_id, 5)
        with contextlib.suppress(Exception):
            self._pump(container_id, final=True)
        self._event(
            "exit",
            container_id,
            exit_code=state.exit_code,
            signal=state.signal,
            oom_killed=state.oom_killed,
        )

    def run(self) -> None:

        if claim(_run_dir(self.root) / f"{self.group}.lock") is None:
            return  # another supervisor has the group
        quiet_since = time.monotonic()
        while True:
            self._adopt()
            ready, _, _ = select.select(list(self._watched), [], [], _PUMP_INTERVAL)
            for fd in ready:
                self._ended(fd)
            for container_id in list(self._watched.values()):
                with contextlib.suppress(OSError):
                    self._pump(container_id)
            if self._watched:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > self.idle:
                return


if __name__ == "__main__":
    Supervisor(Path(sys.argv[1]), sys.argv[2]).run()
