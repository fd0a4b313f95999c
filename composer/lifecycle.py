"""Acting on a stack's existing containers: start and restart them in dependency order, stop
them in the reverse order, kill, pause, unpause and remove them — each generation of services
concurrently, under the stack's lock where the stack's record changes, each action recorded
as an event of the stack."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

from composer.errors import ComposerError
from composer.events import record_event
from composer.settings import Settings
from composer.stackview import ACTIVE, Member, StackView, container_files
from composer.state import StateStore

if TYPE_CHECKING:
    from engine.container.runtime import Runtime

__all__ = ["Actions", "Progress", "removable"]

Progress = Callable[[str, str], None]  # (container, what happens to it), as `up` reports
_CONCURRENCY: Final = 8


@dataclass(frozen=True)
class Actions:
    """The actions on the existing containers of one stack; `progress` hears what happens to
    each container."""

    settings: Settings
    runtime: Runtime
    view: StackView
    progress: Progress

    def start(self, members: Sequence[Member]) -> None:
        """Start the containers that do not run, what they need first."""
        for member in members:
            if member.state.status in ACTIVE:
                self.progress(member.name, "Running")
        stopped = [m for m in members if m.state.status not in ACTIVE]
        self._apply(stopped, "start", ("Starting", "Started"),
                    lambda m, _: self.runtime.start(m.name), lock=True)  # fmt: skip

    def stop(self, members: Sequence[Member], timeout: float | None = None) -> None:
        """Stop the containers (their stop signal, then SIGKILL after `timeout` or their
        grace period), what depends on others first."""
        for member in members:
            if member.state.status not in ACTIVE:
                self.progress(member.name, "Stopped")
        running = [m for m in members if m.state.status in ACTIVE]
        self._apply(running, "stop", ("Stopping", "Stopped"),
                    lambda m, _: self.runtime.stop(m.name, timeout), reverse=True,
                    lock=True)  # fmt: skip

    def restart(self, members: Sequence[Member], timeout: float | None = None) -> None:
        """Stop and start each container again (stopped ones are started), in start order."""
        self._apply(members, "restart", ("Restarting", "Started"),
                    lambda m, _: self.runtime.restart(m.name, timeout), lock=True)  # fmt: skip

    def kill(self, members: Sequence[Member], signal_number: int) -> list[Member]:
        """Send `signal_number` to the first process of each running container; those it
        was sent to."""
        running = [m for m in members if m.state.status in ACTIVE]
        self._apply(running, "kill", ("Killing", "Killed"),
                    lambda m, _: self.runtime.kill(m.name, signal_number), reverse=True,
                    signal=str(signal_number))  # fmt: skip
        return running

    def pause(self, members: Sequence[Member]) -> None:
        """Freeze every process of each running container (its cgroup's freezer)."""
        running = [m for m in members if m.state.status == "running"]
        self._apply(running, "pause", ("Pausing", "Paused"),
                    lambda m, _: self.runtime.pause(m.name), reverse=True)  # fmt: skip

    def unpause(self, members: Sequence[Member]) -> None:
        """Let each paused container's processes run again."""
        paused = [m for m in members if m.state.status == "paused"]
        self._apply(paused, "unpause", ("Unpausing", "Unpaused"),
                    lambda m, _: self.runtime.unpause(m.name))  # fmt: skip

    def remove(self, members: Sequence[Member], volumes: bool = False) -> None:
        """Remove stopped containers: their writable layer, cgroup and directory, their
        records and generated files, and with `volumes` their anonymous volumes; then the
        hosts files of their peers and the ports the stack publishes follow."""
        project = self.view.project

        def remove_one(member: Member, store: StateStore) -> None:
            self.runtime.remove(member.name)
            store.delete_container(member.name)
            shutil.rmtree(container_files(self.settings, project, member.name).directory,
                          ignore_errors=True)  # fmt: skip
            for directory in _anonymous_volumes(self.settings, member) if volumes else []:
                shutil.rmtree(directory, ignore_errors=True)

        def follow(store: StateStore, published: set[str]) -> None:
            _follow_removal(self.settings, self.view, store, {m.name for m in members} & published)

        self._apply(removable(members), "destroy", ("Removing", "Removed"), remove_one,
                    reverse=True, lock=True, after=follow)  # fmt: skip

    def _apply(
        self,
        members: Sequence[Member],
        action: str,
        words: tuple[str, str],
        operation: Callable[[Member, StateStore], object],
        *,
        reverse: bool = False,
        lock: bool = False,
        after: Callable[[StateStore, set[str]], None] | None = None,
        **attributes: str,
    ) -> None:
        """`operation` on each member, a generation of services at a time (concurrently
        within one), saying `words` (doing, done) and recording `action` as an event; under
        the stack's lock with `lock`, then `after` (with the containers that had published
        ports). After a generation with failures, ComposerError naming each."""
        from composer.locks import stack_lock

        root = self.settings.root
        with contextlib.ExitStack() as held:
            if lock:
                held.enter_context(stack_lock(root, self.view.project))
            store = held.enter_context(StateStore(root))
            published = {p.container for p in store.ports(self.view.project)}

            def act(member: Member) -> None:
                self.progress(member.name, words[0])
                operation(member, store)
                record_event(store, self.view, member, action, self.settings, **attributes)
                self.progress(member.name, words[1])

            for generation in self.view.generations(members, reverse):
                _concurrently(generation, act)
            if after is not None:
                after(store, published)


def _concurrently(members: list[Member], act: Callable[[Member], None]) -> None:
    """`act` on each member at once (a few at a time); ComposerError naming each failure."""
    import anyio

    from engine.errors import EngineError

    failures: list[str] = []

    def attempt(member: Member) -> None:
        try:
            act(member)
        except (EngineError, ComposerError, OSError) as exc:
            failures.append(f"container {member.name}: {exc}")

    async def run() -> None:
        limiter = anyio.CapacityLimiter(_CONCURRENCY)
        async with anyio.create_task_group() as group:
            for member in members:
                run_one = partial(anyio.to_thread.run_sync, attempt, member, limiter=limiter)
                group.start_soon(run_one)

    anyio.run(run)
    if failures:
        raise ComposerError("\n".join(sorted(failures)))


def removable(members: Sequence[Member]) -> list[Member]:
    """The containers `rm` may remove: those with no live process."""
    return [m for m in members if m.state.status not in ACTIVE]


def _anonymous_volumes(settings: Settings, member: Member) -> list[Path]:
    """The anonymous volumes a container mounts (named at random: 64 hex digits)."""
    volumes = settings.root / "volumes"
    found = []
    for mount in member.config.mounts:
        source = Path(mount.source)
        if mount.kind == "bind" and source.parent.parent == volumes and source.name == "_data":
            name = source.parent.name
            if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
                found.append(source.parent)
    return found


def _follow_removal(
    settings: Settings, view: StackView, store: StateStore, unpublished: set[str]
) -> None:
    """The peers' hosts files without the removed containers; the stack's published ports
    without theirs (when its supervisor serves them)."""
    from composer.discovery import refresh_hosts
    from engine.errors import EngineError
    from engine.supervisor import publish, supervisor_pid

    remaining = [r.id for r in store.containers(view.project)]
    refresh_hosts(store, {n: container_files(settings, view.project, n) for n in remaining})
    if not unpublished or supervisor_pid(settings.root, view.project) is None:
        return
    from engine.network.ports import PortBinding

    bindings = [
        PortBinding(service=p.service, container_port=p.container_port, target_ip=p.target_ip,
                    host_port=p.host_port, host_ip=p.host_ip,
                    protocol="udp" if p.protocol == "udp" else "tcp")
        for p in store.ports(view.project)
    ]  # fmt: skip
    try:
        publish(settings.root, view.project, bindings)
    except EngineError as exc:
        raise ComposerError(f"the removed containers' ports are still published: {exc}") from exc
