"""A supervisor's healthchecks: each running member's probe, run on its schedule inside the
container as a child process (Runtime.exec_process) whose end and output the supervisor's
loop waits for in the same select as the containers' pidfds. A probe holds up neither another
probe nor the loop, and needs no thread; one past its timeout is killed with its process
group, which holds the probe's process inside the container too."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from engine.clock import utc_now
from engine.container.health import OUTPUT_LIMIT, Health, HealthConfig, Probe
from engine.errors import EngineError
from engine.linux import pidfd_open

if TYPE_CHECKING:
    from engine.container.runtime import Runtime, State

__all__ = ["Prober"]

Event = Callable[..., None]  # (kind, container id, **details)
_READ: Final = 65536


@dataclass
class _Schedule:
    """One container's probes: for its run that began at `run` (epoch seconds: `started`);
    the next is due at `due` (monotonic; None while one runs)."""

    config: HealthConfig
    run: str
    started: float
    due: float | None


@dataclass(eq=False)  # each one is itself (kept in sets)
class _Running:
    container_id: str
    run: str
    process: subprocess.Popen[bytes]
    pidfd: int
    output: int  # the read end of its stdout and stderr; -1 once at its end
    start: str
    since_start: float
    deadline: float
    timeout: float
    kept: bytearray = field(default_factory=bytearray)
    timed_out: bool = False

    def read(self) -> None:
        """Take what the probe wrote (the first OUTPUT_LIMIT bytes are kept)."""
        while self.output >= 0:
            try:
                chunk = os.read(self.output, _READ)
            except BlockingIOError:
                return
            if not chunk:
                os.close(self.output)
                self.output = -1
                return
            self.kept += chunk[: max(OUTPUT_LIMIT - len(self.kept), 0)]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def close(self) -> int:
        """Its exit status, once its pidfd is readable (it is reaped)."""
        self.read()
        if self.output >= 0:
            os.close(self.output)  # what a process it left behind still writes is dropped
            self.output = -1
        os.close(self.pidfd)
        return self.process.wait()


class Prober:
    """Runs the healthchecks of a supervisor's containers. `event(kind, container_id,
    **details)` records each change of health ("health_status" with the new status)."""

    def __init__(self, runtime: Runtime, event: Event) -> None:
        self.runtime = runtime
        self._event = event
        self._schedules: dict[str, _Schedule] = {}
        self._running: dict[int, _Running] = {}  # by pidfd and by output descriptor

    def watch(self, container_id: str, config: HealthConfig, state: State) -> None:
        """Probe the run of `container_id` that `state` describes, from now on (a new run
        replaces the previous one's schedule)."""
        current = self._schedules.get(container_id)
        if current is not None and current.run == state.started_at:
            return
        started = _epoch(state.started_at)
        delay = config.delay(state.health or "starting", time.time() - started)
        self._schedules[container_id] = _Schedule(
            config, state.started_at, started, time.monotonic() + delay
        )

    def forget(self, container_id: str) -> None:
        """The container's run ended: no more probes; one that runs is killed (its result
        dropped)."""
        self._schedules.pop(container_id, None)
        for probe in set(self._running.values()):
            if probe.container_id == container_id:
                probe.kill()

    def fds(self) -> list[int]:
        """Descriptors to wait on: the probes' pidfds and output pipes."""
        return list(self._running)

    def timeout(self) -> float | None:
        """Seconds until a probe is due or overdue (None: nothing scheduled)."""
        times = [s.due for s in self._schedules.values() if s.due is not None]
        times += [p.deadline for p in self._running.values() if not p.timed_out]
        return max(min(times) - time.monotonic(), 0.0) if times else None

    def ready(self, fd: int) -> None:
        """`fd`, one of fds(), is readable: output to take, or a probe that ended."""
        probe = self._running.get(fd)
        if probe is None:
            return
        if fd == probe.output:
            probe.read()
            if probe.output < 0:
                del self._running[fd]
            return
        del self._running[fd]
        if probe.output >= 0:
            del self._running[probe.output]
        status = probe.close()
        if probe.timed_out:
            limit = f"{probe.timeout:g}s"
            result = Probe(probe.start, utc_now(), -1, f"Health check exceeded timeout ({limit})")
        else:
            code = status if status >= 0 else 128 - status  # killed by a signal: 128 + it
            output = probe.kept.decode(errors="replace")
            result = Probe(probe.start, utc_now(), code, output)
        self._record(probe.container_id, probe.run, result, probe.since_start)

    def run_due(self) -> None:
        """Start the probes whose time came; kill those past their timeout."""
        now = time.monotonic()
        for probe in set(self._running.values()):
            if not probe.timed_out and probe.deadline <= now:
                probe.timed_out = True
                probe.kill()
        for container_id, schedule in list(self._schedules.items()):
            if schedule.due is not None and schedule.due <= now:
                schedule.due = None
                self._start(container_id, schedule)

    def close(self) -> None:
        """Kill and reap every running probe (the supervisor leaves)."""
        for probe in set(self._running.values()):
            probe.kill()
            probe.close()
        self._running.clear()

    def _start(self, container_id: str, schedule: _Schedule) -> None:
        start = utc_now()
        since_start = time.time() - schedule.started
        read, write = os.pipe2(os.O_CLOEXEC)
        try:
            process = self.runtime.exec_process(
                container_id, schedule.config.argv, stdin=subprocess.DEVNULL,
                stdout=write, stderr=write, own_group=True,
            )  # fmt: skip
        except (EngineError, OSError) as exc:  # not running (paused, or ended): a failure
            os.close(read)
            self._record(container_id, schedule.run, Probe(start, utc_now(), -1, str(exc)),
                         since_start)  # fmt: skip
            return
        finally:
            os.close(write)
        os.set_blocking(read, False)
        probe = _Running(
            container_id, schedule.run, process, pidfd_open(process.pid), read, start,
            since_start, time.monotonic() + schedule.config.timeout, schedule.config.timeout,
        )  # fmt: skip
        self._running[probe.pidfd] = self._running[probe.output] = probe

    def _record(self, container_id: str, run: str, result: Probe, since_start: float) -> None:
        """Move the container's health by `result`, and schedule its next probe."""
        schedule = self._schedules.get(container_id)
        if schedule is None or schedule.run != run:
            return  # that run ended
        try:
            before = self.runtime.health(container_id) or Health()
        except EngineError:
            return
        after = before.after(result, schedule.config, since_start)
        if self.runtime.record_health(container_id, after, run) and after.status != before.status:
            self._event("health_status", container_id, status=after.status)
        delay = schedule.config.delay(after.status, time.time() - schedule.started)
        schedule.due = time.monotonic() + delay


def _epoch(when: str) -> float:
    """A recorded time (UTC, ISO 8601) in seconds since the epoch; now when there is none."""
    try:
        return datetime.datetime.fromisoformat(when).timestamp()
    except ValueError:
        return time.time()
