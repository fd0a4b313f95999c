"""`composer serve`: a long-running service that keeps the stacks of a directory (or, without
one, the stacks up on this host) equal to their files — a changed file is applied, a removed
one brings its stack down — makes sure each stack's supervisor runs (it heals drift), and
answers questions on a unix socket and Prometheus scrapes on a loopback port.

Level-triggered, as the reconciler: inotify events on the watched directories, a supervisor's
exit (its pidfd) and the end of an apply only say "look now"; each look lists the files,
compares their content hashes with those last applied and the stacks with the state store,
and acts; a slow periodic look is the backstop for a missed event. Applies and downs run as
tasks of their own (one at a time per stack), so a slow one never holds up the others, the
socket or the metrics.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio

# Loaded before any thread: stacks are applied in threads at once, and a package whose first
# import happens in two threads at a time can be seen half-initialised by one of them.
import composer.containers  # noqa: F401
import engine.network  # noqa: F401
from composer import __version__
from composer.converge import SUPERVISOR, UpError, down, up
from composer.dirwatch import DirectoryWatch
from composer.errors import ComposerError, StackError
from composer.images import ensure_images
from composer.planner import PlanOptions
from composer.servestatus import ApplyResult, ServeStatus, StackStatus
from composer.settings import Settings
from composer.stackfiles import (
    Seen,
    StackSource,
    directory_sources,
    recorded_sources,
    served_from,
    survey,
)
from composer.state import StackRecord, StateStore
from engine.clock import utc_now
from engine.daemon import claim, running_pid
from engine.errors import EngineError
from engine.supervisor import ensure_supervisor, supervisor_pid

if TYPE_CHECKING:
    from composer.config.loader import Stack

__all__ = ["DEFAULT_METRICS_PORT", "Serve", "ServeOptions"]

DEFAULT_METRICS_PORT: Final = 9464  # Prometheus' port for OpenTelemetry exporters
_SETTLE: Final = 0.05  # seconds to let a burst of file events land before a look
_CONCURRENCY: Final = 4  # applies and downs at once (each runs up to 8 threads)
_DONE: Final = {
    "create": "created",
    "recreate": "recreated",
    "start": "started",
    "remove": "removed",
}

Log = Callable[[str], None]


@dataclass(frozen=True)
class ServeOptions:
    """`directory`: serve its stack files (None: the stacks up on this host);
    `keep_removed`: a removed file leaves its stack running; `metrics_port`: 0 for none;
    `rescan`: seconds between looks when nothing happens."""

    directory: Path | None = None
    keep_removed: bool = False
    metrics_port: int = DEFAULT_METRICS_PORT
    rescan: float = 60.0


@dataclass
class _Served:
    """A stack source as the loop knows it: the content last loaded (its hash, the stack it
    gave, or why it did not load), last applied and last tried."""

    source: StackSource
    fingerprint: str = ""
    stack: Stack | None = None  # the last one that loaded
    error: ApplyResult | None = None  # why the content `fingerprint` does not load
    applied: str = ""
    attempted: str = ""
    attempted_at: float = 0.0


class Serve:
    """The serve loop for the state root of `settings`."""

    def __init__(self, settings: Settings, options: ServeOptions, log: Log) -> None:
        self.settings, self.options, self.log = settings, options, log
        self.status = ServeStatus(settings)
        self.run_dir = settings.root / "run"
        self.socket_path = self.run_dir / "serve.sock"
        self.metrics_port = 0  # the port got, once serving
        self._served: dict[str, _Served] = {}
        self._busy: set[str] = set()  # projects an apply or a down works on
        self._watching: dict[str, int] = {}  # project → supervisor pid watched
        self._kept: set[str] = set()  # orphaned stacks already reported as kept
        self._finished: dict[str, float] = {}  # project → when its last job ended
        self._began = 0.0  # when the current look began observing
        self._wake = anyio.Event()
        self._limiter = anyio.CapacityLimiter(_CONCURRENCY)
        self._environ = {k: v for k, v in os.environ.items() if k != "COMPOSE_PROJECT_NAME"}

    # -- running -----------------------------------------------------------------------------

    async def run(self, signals: bool = True) -> None:
        """Serve until SIGTERM or SIGINT (with `signals`) or cancelled; the stacks keep
        running. ComposerError when another serve has this state root."""
        from composer.metrics import MetricsServer
        from composer.servesocket import serve_socket

        self.run_dir.mkdir(parents=True, exist_ok=True)
        directory = self.options.directory
        lock = claim(self.run_dir / "serve.lock")
        if lock is None:
            pid = running_pid(self.run_dir / "serve.lock")
            raise ComposerError(f"composer serve already runs for {self.settings.root} (pid {pid})")
        metrics = None
        try:
            if self.options.metrics_port:
                metrics = MetricsServer(self.status, self.options.metrics_port)
                self.metrics_port = metrics.port
            self.status.about = {
                "version": __version__, "pid": os.getpid(), "root": str(self.settings.root),
                "directory": str(directory) if directory else None,
                "keep_removed": self.options.keep_removed, "socket": str(self.socket_path),
                "metrics_port": self.metrics_port or None, "started": utc_now(),
            }  # fmt: skip
            self._files = DirectoryWatch()
            try:
                async with anyio.create_task_group() as group:
                    self._group = group
                    if signals:
                        group.start_soon(self._stop_on_signal, group.cancel_scope)
                    await group.start(serve_socket, self.socket_path, self.status.answer)
                    group.start_soon(self._watch, self._files)
                    where = self.options.directory or "the stacks up on this host"
                    self.log(f"serving {where}; socket {self.socket_path}"
                             + (f"; metrics http://127.0.0.1:{self.metrics_port}/metrics"
                                if metrics else ""))  # fmt: skip
                    await self._loop()
            finally:
                self._files.close()
        finally:
            if metrics is not None:
                metrics.close()
            os.close(lock)

    async def _stop_on_signal(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async for signum in received:
                self.log(f"{signal.Signals(signum).name}: stopping (the stacks keep running)")
                scope.cancel()
                return

    async def _loop(self) -> None:
        while True:
            try:
                await self._look()
            except (ComposerError, EngineError, OSError, sqlite3.Error) as exc:
                self.log(f"error: {exc}; looking again at the next change")
            with anyio.move_on_after(self.options.rescan):
                await self._wake.wait()
            await anyio.sleep(_SETTLE)
            self._wake = anyio.Event()

    async def _watch(self, files: DirectoryWatch) -> None:
        while True:
            await files.changed()
            self._wake.set()

    # -- a look ------------------------------------------------------------------------------

    async def _look(self) -> None:
        directory = self.options.directory
        if directory is not None:
            with contextlib.suppress(OSError):
                subdirectories = [Path(e.path) for e in os.scandir(directory) if e.is_dir()]
                self._files.watch(dict.fromkeys([directory, *subdirectories]))
        known = {key: entry.fingerprint for key, entry in self._served.items()}
        self._began = time.monotonic()
        try:
            seen, records, supervisors = await anyio.to_thread.run_sync(self._observe, known)
        except OSError as exc:  # the directory: keep every stack as it is
            self.log(f"error: cannot list {directory}: {exc.strerror}; nothing changes until "
                     "it can be")  # fmt: skip
            return
        if directory is None:
            wanted: dict[Path, frozenset[str] | None] = {self.settings.root / "locks": None}
            for s in seen:  # the directories of the stacks' files, and `up` of another stack
                for path, names in s.source.watched().items():
                    wanted[path] = (wanted.get(path) or frozenset()) | names
            self._files.watch(wanted)
        claims = self._update(seen)
        for entry in self._served.values():
            self._consider(entry, claims, records)
        if directory is not None:
            self._orphans(claims, records)
        managed = set(records) if directory is None else set(claims) & set(records)
        for project in sorted(p for p in managed if self._quiet(p)):
            pid = supervisors.get(project)
            if pid is None:
                self._start(project, self._supervise, project)
            elif self._watching.get(project) != pid:
                self._watching[project] = pid
                self._group.start_soon(self._watch_supervisor, project, pid)

    def _quiet(self, project: str) -> bool:
        """Whether no job works on the project, nor ended since this look began observing
        (what the look saw of it may be stale: the job's end wakes another look)."""
        return project not in self._busy and self._finished.get(project, 0.0) < self._began

    def _observe(
        self, known: dict[str, str]
    ) -> tuple[list[Seen], dict[str, StackRecord], dict[str, int | None]]:
        """(In a thread.) The sources and their content, what the state store records, and
        the stacks' supervisors."""
        with StateStore(self.settings.root) as store:
            records = {r.project: r for r in store.stacks()}
        if self.options.directory is not None:
            sources = directory_sources(self.options.directory)
        else:
            sources = recorded_sources(records.values())
        seen = survey(sources, known, records, self._environ)
        supervisors = {p: supervisor_pid(self.settings.root, p) for p in records}
        return seen, records, supervisors

    @staticmethod
    def _refused(error: ComposerError) -> ApplyResult:
        """A file that does not load, as the result of its apply."""
        problems = tuple(map(str, error.problems if isinstance(error, StackError) else [error]))
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        return ApplyResult(False, utc_now(), 0.0, f"not applied: {count} in the stack file",
                           problems)  # fmt: skip

    def _update(self, seen: list[Seen]) -> dict[str, str]:
        """Take in what a look found; the projects of the sources that load (each → its
        source, the first in name order when two name the same project)."""
        served: dict[str, _Served] = {}
        for s in seen:
            entry = self._served.get(s.source.key) or _Served(s.source)
            entry.source = s.source
            served[s.source.key] = entry
            if s.loaded is None:
                continue
            entry.fingerprint = s.fingerprint
            if isinstance(s.loaded, ComposerError):
                entry.error = self._refused(s.loaded)
                self._report(entry, entry.error)
            else:
                entry.stack, entry.error = s.loaded, None
                if s.current:  # up from this content already (serve's doing, or another's)
                    entry.applied = s.fingerprint
                self._publish(entry)
        for key in self._served.keys() - served.keys():
            self.status.forget(key)
        self._served = served
        claims: dict[str, str] = {}
        for entry in served.values():
            if entry.error is None and entry.stack is not None:
                claims.setdefault(entry.stack.project.name, entry.source.key)
        return claims

    def _consider(self, entry: _Served, claims: dict[str, str], records: dict[str, Any]) -> None:
        """Apply the entry's stack when its content changed since it was last applied (a
        failed apply is tried again at the periodic look), or, for a directory's stack, when
        it is not up."""
        if entry.error is not None or entry.stack is None:
            return  # its file does not load: its stack stays as it is
        project, key, print_ = entry.stack.project.name, entry.source.key, entry.fingerprint
        if claims[project] != key:
            if entry.attempted != print_:
                entry.attempted = print_
                self._report(entry, ApplyResult(False, utc_now(), 0.0, f"not applied: project "
                             f"{project} is the stack of {claims[project]} already: give this "
                             "one another `name:`"))  # fmt: skip
            return
        if not self._quiet(project):
            return
        if print_ != entry.applied:
            retry = time.monotonic() - entry.attempted_at >= self.options.rescan
            due = print_ != entry.attempted or retry
        else:
            due = self.options.directory is not None and project not in records
        if due:
            self._start(project, self._apply, entry)

    def _orphans(self, claims: dict[str, str], records: dict[str, StackRecord]) -> None:
        """Bring down the stacks brought up from the directory whose file is gone (or names
        another project now), unless they are to be kept."""
        assert self.options.directory is not None
        for project, record in records.items():
            if project in claims or not self._quiet(project):
                continue
            if not served_from(record, self.options.directory):
                continue
            holder = self._served.get(record.files[0])
            if (
                holder is not None
                and holder.error is not None
                and (holder.stack is None or holder.stack.project.name == project)
            ):
                continue  # its file does not load now: left as it is
            if self.options.keep_removed:
                if project not in self._kept:
                    self._kept.add(project)
                    self.log(f"{project}: its file {record.files[0]} is gone; the stack keeps "
                             "running (--keep-removed)")  # fmt: skip
                continue
            self._start(project, self._down, project, record.files[0])

    # -- what a look starts ------------------------------------------------------------------

    def _start(self, project: str, job: Callable[..., Any], *args: object) -> None:
        """Run `job(*args)` as a task of its own; the project is busy until it ends."""
        self._busy.add(project)

        async def run() -> None:
            try:
                await job(*args)
            except Exception as exc:  # a bug in one job must not end the service
                self.log(f"internal error: {project}: {type(exc).__name__}: {exc}")
            finally:
                self._busy.discard(project)
                self._finished[project] = time.monotonic()
                self._wake.set()

        self._group.start_soon(run)

    async def _apply(self, entry: _Served) -> None:
        stack = entry.stack
        assert stack is not None
        entry.attempted, entry.attempted_at = entry.fingerprint, time.monotonic()
        print_, started = entry.fingerprint, time.monotonic()
        options = PlanOptions(remove_orphans=self.options.directory is not None)
        self.log(f"{entry.source.key}: applying (project {stack.project.name})")
        try:
            async with self._limiter:
                images = await ensure_images(self.settings, stack)
                done = await anyio.to_thread.run_sync(partial(up, stack, self.settings,
                                                              images, options))  # fmt: skip
        except UpError as exc:
            actions = tuple((a.name, a.kind) for a in exc.result.plan.actions)
            result = ApplyResult(False, utc_now(), time.monotonic() - started,
                                 f"failed: {exc}", actions=actions)  # fmt: skip
        except (ComposerError, EngineError, OSError) as exc:
            result = ApplyResult(False, utc_now(), time.monotonic() - started, f"failed: {exc}")
        else:
            entry.applied = print_
            actions = tuple((a.name, a.kind) for a in done.plan.actions)
            what = ", ".join(f"{name} {_DONE[kind]}" for name, kind in actions if kind != "keep")
            result = ApplyResult(True, utc_now(), time.monotonic() - started,
                                 f"applied: {what or 'nothing to change'}",
                                 actions=actions)  # fmt: skip
        self._report(entry, result)

    async def _down(self, project: str, file: str) -> None:
        try:
            removed = await anyio.to_thread.run_sync(partial(down, project, self.settings))
        except (ComposerError, EngineError, OSError) as exc:
            self.log(f"error: {project}: its file {file} is gone, but down failed: {exc}")
            return
        self._watching.pop(project, None)
        self.log(f"{project}: its file {file} is gone: brought down ({len(removed)} containers)")

    async def _supervise(self, project: str) -> None:
        try:
            pid = await anyio.to_thread.run_sync(ensure_supervisor, self.settings.root,
                                                 project, SUPERVISOR)  # fmt: skip
        except (RuntimeError, OSError) as exc:
            self.log(f"error: {project}: its supervisor does not start: {exc}")
            return
        self.log(f"{project}: its supervisor was not running: started it (pid {pid})")
        for entry in self._served.values():
            if entry.stack is not None and entry.stack.project.name == project:
                status = self._publish(entry)
                self.status.put(replace(status, supervisor_starts=status.supervisor_starts + 1))

    async def _watch_supervisor(self, project: str, pid: int) -> None:
        """Look again as soon as the supervisor ends (its pidfd becomes readable)."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            fd = -1
        try:
            if fd >= 0:
                await anyio.wait_readable(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # serve started it: reap it
        if self._watching.get(project) == pid:
            del self._watching[project]
        self._wake.set()

    # -- status ------------------------------------------------------------------------------

    def _publish(self, entry: _Served) -> StackStatus:
        """The entry's status, with what it loaded last."""
        source = entry.source
        status = self.status.get(source.key) or StackStatus(
            source.key, tuple(map(str, source.files)), str(source.directory)
        )
        if entry.stack is not None:
            from composer.planner import replicas

            stack = entry.stack
            desired = tuple((s, replicas(stack, s)) for s in stack.project.services)
            status = replace(status, project=stack.project.name, desired=desired)
        self.status.put(status)
        return status

    def _report(self, entry: _Served, result: ApplyResult) -> None:
        status = self._publish(entry)
        ok, failed = status.applies_ok + result.ok, status.applies_failed + (not result.ok)
        self.status.put(replace(status, last=result, applies_ok=ok, applies_failed=failed))
        took = f" in {result.seconds:.2f} s" if result.ok else ""
        self.log(f"{'' if result.ok else 'error: '}{entry.source.key}: {result.message}{took}")
        for problem in result.problems:
            self.log(f"error: {problem}")
