"""The supervisor of a group of containers (a stack): a long-running process that moves their
output into their logs and notices when they end, the moment they end (pidfd), whoever started
them; it restarts them by their restart policy (engine.restarter) and runs their healthchecks
(engine.prober), all from one select loop. One per group, at most: a second one exits at once.
Killed, it loses nothing: containers keep running (their shims wait for them and record how
they end), their output waits in their raw files, and the next supervisor adopts them by pid
and start time, and decides about those that ended meanwhile.

Run: `python -m engine.supervisor STATE_ROOT GROUP` (start it with `ensure_supervisor`). It
writes what it sees to `STATE_ROOT/run/GROUP.events` (JSON lines) and exits once its group
has had no running container for `idle` seconds.

It also serves the group's published ports (one userland proxy for them all, in a thread):
`publish` writes the wanted bindings to `run/GROUP.ports.json` and wakes it with SIGHUP; it
answers in `run/GROUP.ports.state.json` with the ports it got, or why it could not.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from engine.clock import utc_now
from engine.daemon import claim, daemon_pid, running_pid, start_daemon
from engine.errors import EngineError
from engine.files import write_atomic

if TYPE_CHECKING:
    from engine.container.runtime import Container, State
    from engine.network.ports import PortBinding, ProxyThread, PublishedPort

__all__ = [
    "Supervisor",
    "Watcher",
    "ensure_supervisor",
    "publish",
    "stop_supervisor",
    "supervisor_pid",
]

_MTIME_TICK_NS: Final = 100_000_000  # far above the coarse clock's tick (1-10 ms)
_PUMP_INTERVAL: Final = 0.25  # a turn at least this often: output moved into logs
_EXIT_RECORD_WAIT: Final = 5.0  # seconds a shim may take to record how its container ended


def _run_dir(root: Path) -> Path:
    path = root / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def supervisor_pid(root: Path, group: str) -> int | None:
    """The pid of the group's running supervisor, if there is one."""
    return running_pid(_run_dir(root) / f"{group}.lock")


def stop_supervisor(root: Path, group: str, timeout: float = 2.0) -> None:
    """End the group's supervisor, if one runs or is starting (SIGTERM; SIGKILL after
    `timeout`), and wait until it is gone: its published ports close with it, and their
    request is withdrawn."""
    pid = daemon_pid(_run_dir(root) / f"{group}.lock")
    if pid is not None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            fd = None
        if fd is not None:
            try:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not select.select([fd], [], [], timeout)[0]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    select.select([fd], [], [], timeout)
            finally:
                os.close(fd)
    (_run_dir(root) / f"{group}.ports.json").unlink(missing_ok=True)


def ensure_supervisor(
    root: Path, group: str, module: str = "engine.supervisor", wait: bool = True
) -> int:
    """Start the group's supervisor unless it runs; its pid. It runs in its own session and
    outlives the caller. `module`: the program (`python -m MODULE ROOT GROUP`), this one or
    one that runs a Supervisor with watchers of its own. `wait` False: return as soon as it
    is started (it adopts the group's containers whenever it comes)."""
    run = _run_dir(root)
    return start_daemon(
        [sys.executable, "-m", module, str(root), group],
        run / f"{group}.lock",
        run / f"{group}.log",
        dict(os.environ),
        wait=wait,
    )


def publish(
    root: Path,
    group: str,
    bindings: list[PortBinding],
    timeout: float = 10.0,
    module: str = "engine.supervisor",
) -> list[PublishedPort]:
    """Have the group's supervisor (started if need be, from `module`) serve exactly
    `bindings`; the ports published, in order. Raises EngineError with the proxy's reasons
    when one cannot be."""
    from dataclasses import asdict

    from engine.network.ports import PortBinding, PublishedPort

    run = _run_dir(root)
    generation = time.time_ns()
    wanted = {"generation": generation, "bindings": [asdict(b) for b in bindings]}
    write_atomic(run / f"{group}.ports.json", json.dumps(wanted).encode())
    pid = ensure_supervisor(root, group, module)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = json.loads((run / f"{group}.ports.state.json").read_text())
        except (FileNotFoundError, ValueError):
            state = {}
        if state.get("generation") == generation:
            if state["errors"]:
                raise EngineError("; ".join(state["errors"]))
            published = []
            for entry in state["published"]:
                binding = PortBinding(**entry["binding"])
                published.append(PublishedPort(binding=binding, host_port=entry["host_port"],
                                               host_ips=tuple(entry["host_ips"])))  # fmt: skip
            return published
        time.sleep(0.01)
    raise EngineError(f"the supervisor of {group} did not publish its ports within {timeout} s")


class _Ports:
    """The supervisor's side of `publish`: the proxy, kept equal to the ports file."""

    def __init__(self, run: Path, group: str) -> None:
        self.wanted = run / f"{group}.ports.json"
        self.state = run / f"{group}.ports.state.json"
        self._proxy: ProxyThread | None = None
        self._served: dict[Any, PublishedPort] = {}  # binding without target → published
        self._seen = -1
        self._stamp = (0, 0)  # inode and mtime of the ports file when last read

    def restored(self) -> list[PublishedPort]:
        """Listeners the proxy bound again since last asked (they vanished from outside)."""
        return self._proxy.take_restored() if self._proxy is not None else []

    def sync(self) -> None:
        from engine.network.ports import PortBinding, ProxyThread

        try:
            info = os.stat(self.wanted)
            stamp = (info.st_ino, info.st_mtime_ns)  # replaced whole at each change: a new inode
            if stamp == self._stamp:
                return  # unchanged since read
            document = json.loads(self.wanted.read_text())
        except (FileNotFoundError, ValueError):
            return
        self._stamp = stamp
        if document["generation"] == self._seen:
            return
        self._seen = document["generation"]
        wanted = [PortBinding(**entry) for entry in document["bindings"]]
        errors = []
        keys = {self._key(b): b for b in wanted}
        for key in [k for k in self._served if k not in keys]:
            assert self._proxy is not None
            self._proxy.remove(self._served.pop(key))
        if wanted and self._proxy is None:
            self._proxy = ProxyThread()
        for key, binding in keys.items():
            assert self._proxy is not None
            try:
                current = self._served.get(key)
                if current is None:
                    self._served[key] = self._proxy.add(binding)
                elif current.binding.target_ip != binding.target_ip:
                    self._served[key] = self._proxy.retarget(current.binding, binding.target_ip)
            except EngineError as exc:
                errors.append(str(exc))
        from dataclasses import asdict

        published = [
            {"binding": asdict(p.binding), "host_port": p.host_port, "host_ips": list(p.host_ips)}
            for key in keys if (p := self._served.get(key)) is not None
        ]  # fmt: skip
        answer = {"generation": self._seen, "published": published, "errors": errors}
        write_atomic(self.state, json.dumps(answer).encode())

    @staticmethod
    def _key(binding: PortBinding) -> tuple[object, ...]:
        return (binding.service, binding.host_ip, binding.host_port, binding.host_port_end,
                binding.container_port, binding.protocol)  # fmt: skip

    @property
    def serving(self) -> bool:
        return bool(self._served)

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()


def _settled(mtime_ns: int) -> int:
    """`mtime_ns` when it can be trusted to change at the next change, else 0 (look again):
    a directory's mtime comes from a coarse clock, so a change in the same tick as the one
    just seen would leave it as it is."""
    return mtime_ns if time.time_ns() - mtime_ns > _MTIME_TICK_NS else 0


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


class Watcher(Protocol):
    """More work for a supervisor's loop (a reconciler of the group, for example): descriptors
    to wait on with the containers' pidfds, and a turn after each wake-up."""

    def fds(self) -> list[int]:
        """Descriptors whose readability wakes the loop."""
        ...

    def ready(self, fd: int) -> None:
        """`fd`, one of fds(), is readable."""
        ...

    def turn(self, ended: list[str]) -> None:
        """After each wake-up (or every few hundred ms): `ended`, containers whose process
        ended since the last turn."""
        ...

    def busy(self) -> bool:
        """Whether the supervisor must stay, even with nothing running."""
        ...


class Supervisor:
    """Watches the containers of `group` under `root`."""

    def __init__(
        self, root: Path, group: str, idle: float = 30.0, watchers: tuple[Watcher, ...] = ()
    ) -> None:
        from engine.cgroups import detect
        from engine.container.runtime import Runtime
        from engine.prober import Prober
        from engine.restarter import Restarter

        self.root = root
        self.group = group
        self.idle = idle
        self.runtime = Runtime(root, detect())
        self._watched: dict[int, str] = {}  # pidfd → container id
        self._limits: dict[str, tuple[int, int]] = {}  # container id → log size, files kept
        self._listed = 0  # mtime of the containers' directory when _ids was read
        self._ids: list[str] = []
        self._stamps: dict[str, int] = {}  # container id → its directory's mtime when seen
        self._written: dict[str, tuple[int, ...]] = {}  # container id → output sizes pumped
        from inotify_simple import INotify  # type: ignore[import-untyped]

        self._writes = INotify(nonblocking=True)  # on the watched containers' raw output
        self._outputs: dict[int, str] = {}  # watch descriptor → container id
        self._wrote: set[str] = set()  # containers whose output grew since their last pump
        self._events = _run_dir(root) / f"{group}.events"
        self.watchers = watchers
        self.restarter = Restarter(self.runtime, self._event)
        self.prober = Prober(self.runtime, self._event)
        self._decided: dict[str, str] = {}  # container id → start of its last run seen ended
        self._unrecorded: dict[str, float] = {}  # container id → since when its end is unknown

    def event(self, kind: str, container_id: str, **details: object) -> None:
        """Write an event (a JSON line) to the group's events file."""
        self._event(kind, container_id, **details)

    def _event(self, kind: str, container_id: str, **details: object) -> None:
        when = utc_now()
        line = json.dumps({"time": when, "event": kind, "container": container_id, **details})
        with open(self._events, "a") as f:
            f.write(line + "\n")

    def _members(self, watched: set[str]) -> list[Container]:
        """The group's containers not watched yet whose directory changed since last seen
        (anything that starts, ends or is made renames a file in it): a turn costs a few
        stats, not a read of every container's files."""
        try:
            listed = os.stat(self.runtime.containers).st_mtime_ns
        except FileNotFoundError:
            return []
        if listed != self._listed:
            self._ids = self.runtime.ids()
            self._listed = _settled(listed)
        members = []
        for container_id in self._ids:
            if container_id in watched:
                continue
            try:
                stamp = os.stat(self.runtime.containers / container_id).st_mtime_ns
            except FileNotFoundError:
                continue
            if self._stamps.get(container_id) == stamp and container_id not in self._unrecorded:
                continue
            with contextlib.suppress(Exception):
                container = self.runtime.get(container_id)
                self._stamps[container_id] = _settled(stamp)
                if container.config.group == self.group:
                    members.append(container)
        return members

    def _adopt(self) -> None:
        """Watch every running member not watched yet (new ones, or after a restart); decide
        about those that ended unseen (before this supervisor watched them)."""
        watched = set(self._watched.values())
        for container in self._members(watched):
            container_id, state = container.id, container.state
            if state.status in ("running", "paused"):
                fd = self.runtime.pidfd(container_id)
                if fd is not None:
                    self._watched[fd] = container_id
                    self._watch_output(container_id)
                    self._event("watch", container_id)
                    if container.config.restart != "no":
                        self.runtime.preload(container.config)  # a fast first restart
                    if container.config.healthcheck is not None:
                        self.prober.watch(container_id, container.config.healthcheck, state)
            elif state.status in ("exited", "restarting"):
                self._ended_unseen(container_id, state)

    def _ended_unseen(self, container_id: str, state: State) -> None:
        """Decide about a run that ended before this supervisor watched it (once its end is
        recorded, or surely will not be)."""
        if self._decided.get(container_id) == state.started_at:
            return
        if state.exit_code is None:  # its shim may not have written how it ended yet
            since = self._unrecorded.setdefault(container_id, time.monotonic())
            if time.monotonic() - since < _EXIT_RECORD_WAIT:
                return
        self._unrecorded.pop(container_id, None)
        self._decided[container_id] = state.started_at
        self.restarter.ended(container_id, state)

    def _watch_output(self, container_id: str) -> None:
        """Note writes to the container's raw output (inotify): a turn pumps only the
        containers that wrote, instead of looking at every one's files."""
        from inotify_simple import flags

        self._wrote.add(container_id)  # what it wrote before the watch
        for stream in ("stdout", "stderr"):
            with contextlib.suppress(OSError):
                path = str(self.runtime.containers / container_id / stream)
                self._outputs[self._writes.add_watch(path, flags.MODIFY)] = container_id

    def _pump_written(self) -> None:
        """Pump the output of the watched containers that wrote since the last turn."""
        for event in self._writes.read(timeout=0):
            if event.wd in self._outputs:
                self._wrote.add(self._outputs[event.wd])
        watched = set(self._watched.values())
        for container_id in [c for c in self._wrote if c in watched]:
            self._wrote.discard(container_id)
            with contextlib.suppress(OSError):
                self._pump(container_id)

    def _pump(self, container_id: str, final: bool = False) -> None:
        from engine.container.logs import pump

        if container_id not in self._limits:
            config = self.runtime.get(container_id).config
            self._limits[container_id] = (config.log_max_size, max(config.log_max_files - 1, 1))
        size, keep = self._limits[container_id]
        directory = self.runtime.containers / container_id
        base = str(directory)
        sizes = (_size(base + "/stdout"), _size(base + "/stderr"))
        if not final and self._written.get(container_id) == sizes:
            return  # it wrote nothing since
        pump(directory, max_size=size, keep=keep, final=final)
        self._written[container_id] = sizes

    def _ended(self, fd: int) -> str:
        container_id = self._watched.pop(fd)
        os.close(fd)
        self.prober.forget(container_id)
        state = self.runtime.wait(container_id, 0)  # not longer: it may run again already
        with contextlib.suppress(Exception):
            self._pump(container_id, final=True)
        self._event(
            "exit",
            container_id,
            exit_code=state.exit_code,
            signal=state.signal,
            oom_killed=state.oom_killed,
        )
        if state.status not in ("running", "paused"):  # else started again meanwhile
            self._decided[container_id] = state.started_at
            self.restarter.ended(container_id, state)
        return container_id

    def _timeout(self) -> float:
        """How long the loop may wait: until the next restart or probe is due, at most
        _PUMP_INTERVAL."""
        times = [_PUMP_INTERVAL, self.restarter.timeout(), self.prober.timeout()]
        if self._unrecorded:  # an end whose record the shim is writing: look again soon
            times.append(0.005)
        return min(t for t in times if t is not None)

    def run(self) -> None:
        # SIGHUP is a wake-up (the ports file changed), caught before the lock is claimed:
        # `publish` sends it as soon as it sees the lock held, and by default it would end us.
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGHUP, lambda *_: None)
        if claim(_run_dir(self.root) / f"{self.group}.lock") is None:
            return  # another supervisor has the group
        ports = _Ports(_run_dir(self.root), self.group)
        quiet_since = time.monotonic()
        try:
            while True:
                ports.sync()
                for port in ports.restored():
                    b = port.binding
                    self._event("heal", b.service, what="port listener restored",
                                host_port=port.host_port, protocol=b.protocol)  # fmt: skip
                self._adopt()
                self.prober.run_due()
                extra = {fd: w for w in self.watchers for fd in w.fds()}
                probes = set(self.prober.fds())
                ready, _, _ = select.select(
                    [*self._watched, *probes, *extra, wake_r], [], [], self._timeout()
                )
                # Ends first: a probe of a container that ended is dropped, not recorded.
                ended = [self._ended(fd) for fd in ready if fd in self._watched]
                for fd in ready:
                    if fd == wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 512)
                    elif fd in extra:
                        extra[fd].ready(fd)
                    elif fd in probes:
                        self.prober.ready(fd)
                self.restarter.run_due()
                for watcher in self.watchers:
                    watcher.turn(ended)
                self._pump_written()
                busy = self._watched or ports.serving or self.restarter.pending()
                if busy or any(w.busy() for w in self.watchers):
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > self.idle:
                    return
        finally:
            self.prober.close()
            self._writes.close()
            ports.close()


if __name__ == "__main__":
    Supervisor(Path(sys.argv[1]), sys.argv[2]).run()
