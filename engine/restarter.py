"""A supervisor's restarts: when a member's process ends, its restart policy decides whether and
when it runs again (engine.container.restart); a restart waits in the supervisor's loop, as
the timeout of its select, never in a sleep."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.container.launch import ContainerError
from engine.container.restart import Backoff, RestartPolicy, decide

if TYPE_CHECKING:
    from engine.container.runtime import Runtime, State

__all__ = ["Restarter"]

Event = Callable[..., None]  # (kind, container id, **details)


class Restarter:
    """The pending restarts of a supervisor's containers, and each one's crash-loop backoff.
    `event(kind, container_id, **details)` records what it does: "restart" (attempt, delay),
    "restart-skipped" (reason), "restart-failed" (reason)."""

    def __init__(self, runtime: Runtime, event: Event) -> None:
        self.runtime = runtime
        self._event = event
        self._backoff: dict[str, Backoff] = {}
        self._due: dict[str, tuple[float, float]] = {}  # container → (monotonic time, delay)

    def ended(self, container_id: str, state: State) -> None:
        """Decide about the run of `container_id` that `state` describes, which ended: schedule
        its restart, or not."""
        if state.status in ("running", "paused") or container_id in self._due:
            return  # started again meanwhile, or already decided
        try:
            config = self.runtime.get(container_id).config
            stopped = self.runtime.stopped_on_purpose(container_id)
        except ContainerError:
            return  # removed
        policy = RestartPolicy.parse(config.restart)
        decision = decide(
            policy,
            state.exit_code,
            state.restart_count,
            stopped,
            _ran_for(state),
            self._backoff.get(container_id, Backoff()),
        )
        self._backoff[container_id] = decision.backoff
        if decision.delay is None:
            if policy.name != "no" and not stopped:
                self._event("restart-skipped", container_id, reason=decision.reason)
            return
        try:
            self.runtime.mark_restarting(container_id)
        except ContainerError:
            return
        self._due[container_id] = (time.monotonic() + decision.delay, decision.delay)

    def timeout(self) -> float | None:
        """Seconds until the next restart is due (None: none pending)."""
        if not self._due:
            return None
        return max(min(due for due, _ in self._due.values()) - time.monotonic(), 0.0)

    def pending(self) -> bool:
        return bool(self._due)

    def run_due(self) -> list[str]:
        """Restart the containers whose time came; those restarted."""
        now = time.monotonic()
        restarted = []
        for container_id, (due, delay) in sorted(self._due.items(), key=lambda item: item[1]):
            if due > now:
                continue
            del self._due[container_id]
            if self._restart(container_id, delay):
                restarted.append(container_id)
        return restarted

    def _restart(self, container_id: str, delay: float) -> bool:
        try:
            before = self.runtime.get(container_id).state
            container = self.runtime.start(container_id, by_policy=True)
        except ContainerError as exc:
            if not self.runtime.containers.joinpath(container_id, "config.json").exists():
                return False  # removed meanwhile
            self._event("restart-failed", container_id, reason=str(exc))
            # As another crash: try again after the next delay of the loop.
            failed = self._backoff.get(container_id, Backoff()).next(0.0)
            assert failed.delay is not None
            self._backoff[container_id] = failed
            self._due[container_id] = (time.monotonic() + failed.delay, failed.delay)
            return False
        if container.state.started_at == before.started_at:
            return False  # not started: it was stopped on purpose meanwhile
        attempt = container.state.restart_count
        self._event("restart", container_id, attempt=attempt, delay=delay)
        return True


def _ran_for(state: State) -> float:
    """Seconds the run lasted: until now when it ended within the last second (the exit
    record has whole seconds only) or its end was not recorded."""
    try:
        started = datetime.datetime.fromisoformat(state.started_at)
    except ValueError:
        return 0.0
    ended = datetime.datetime.now(datetime.UTC)
    if state.finished_at:
        finished = datetime.datetime.fromisoformat(state.finished_at)
        if (ended - finished).total_seconds() >= 1.0:
            ended = finished
    return max((ended - started).total_seconds(), 0.0)
