"""A stack as it exists on this host: its containers (found by the runtime's labels) by
service and replica number, in the stack's dependency order, with their state — what every
verb that reads or acts on existing containers starts from."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from composer.discovery import ContainerFiles
from composer.errors import ComposerError
from composer.settings import Settings

if TYPE_CHECKING:
    from composer.config.loader import Stack
    from composer.state import NetworkRecord
    from engine.container.config import ContainerConfig
    from engine.container.runtime import Container, Runtime, State
    from engine.network.veth import Attachment

__all__ = [
    "ACTIVE",
    "LABEL_NUMBER",
    "LABEL_SERVICE",
    "Member",
    "StackView",
    "attached_networks",
    "container_files",
    "members",
    "open_runtime",
    "open_view",
    "stored_stack",
]

LABEL_SERVICE: Final = "composer.service"
LABEL_NUMBER: Final = "composer.number"
ACTIVE: Final = frozenset({"running", "paused", "restarting"})  # what has a live process


@dataclass(frozen=True)
class Member:
    """One container of the stack: its service, its replica number, and the engine's record
    of it (configuration, state, directory)."""

    service: str
    number: int
    container: Container

    @property
    def name(self) -> str:
        return self.container.id

    @property
    def config(self) -> ContainerConfig:
        return self.container.config

    @property
    def state(self) -> State:
        return self.container.state

    @property
    def created(self) -> float:
        """When the container was made, in seconds since the epoch."""
        return (self.container.directory / "config.json").stat().st_mtime


def attached_networks(
    member: Member, networks: Sequence[NetworkRecord]
) -> list[tuple[str, Attachment]]:
    """The container's networks of its own (none with network_mode host, service: or
    container:), by name on the host, with its attachment to each."""
    names = {record.bridge: record.name for record in networks}
    return [(names.get(a.bridge, a.bridge), a) for a in member.config.networks]


@dataclass(frozen=True)
class StackView:
    """The containers of project `project`; `stack` is its stack file when it could be read,
    `order` its services in start generations (what needs nothing first; services that have
    containers but are no longer in the file last)."""

    project: str
    stack: Stack | None
    order: tuple[tuple[str, ...], ...]
    members: tuple[Member, ...]
    _images: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(service for generation in self.order for service in generation)

    def select(self, services: Sequence[str]) -> list[Member]:
        """The containers of `services` (all of them when none is named), in start order;
        ComposerError naming the services there are when one is unknown."""
        for name in services:
            if name not in self.services:
                known = ", ".join(self.services) or "none"
                raise ComposerError(
                    f"no such service: {name} (the services of {self.project}: {known})"
                )
        return [m for m in self.members if not services or m.service in services]

    def generations(self, members: Sequence[Member], reverse: bool = False) -> list[list[Member]]:
        """`members` in start generations (each needs only earlier ones), or in stop order."""
        groups = [[m for m in members if m.service in generation] for generation in self.order]
        groups = [group for group in groups if group]
        return groups[::-1] if reverse else groups

    def image(self, member: Member, settings: Settings) -> str:
        """The image a container runs, as its service names it (else a tag it has, else its
        short id)."""
        if self.stack is not None and member.service in self.stack.project.services:
            named = self.stack.project.services[member.service].image
            if named:
                return str(named)
        if not self._images:
            from composer.images import open_store

            for found in open_store(settings).images():
                self._images[found.id] = found.repo_tags[0] if found.repo_tags else found.short_id
        image_id = member.config.image_id
        return self._images.get(image_id, image_id.removeprefix("sha256:")[:12])

    def refresh(self, runtime: Runtime) -> StackView:
        """The same stack with its containers as they are now."""
        found = members(runtime, self.project)
        order = list(self.order)
        others = tuple(sorted({m.service for m in found} - set(self.services)))
        if others:
            order.append(others)
        rank = {service: n for n, service in enumerate(s for g in order for s in g)}
        found.sort(key=lambda m: (rank[m.service], m.number, m.name))
        return StackView(self.project, self.stack, tuple(order), tuple(found), self._images)


def open_runtime(settings: Settings) -> Runtime:
    """The runtime of the state root."""
    from engine.cgroups import detect
    from engine.container.runtime import Runtime

    return Runtime(settings.root, detect())


def container_files(settings: Settings, project: str, name: str) -> ContainerFiles:
    """Where a container's generated files (hosts, resolv.conf, hostname) are."""
    return ContainerFiles(settings.root / "stacks" / project / "files" / name)


def stored_stack(settings: Settings, project: str) -> Stack | None:
    """The stack as last brought up (its files, as the state store recorded them), when they
    can still be read."""
    from composer.config.loader import LoadOptions, load_stack
    from composer.state import StateStore

    with StateStore(settings.root) as store:
        record = store.stack(project)
    if record is None or not record.files:
        return None
    options = LoadOptions(files=tuple(Path(f) for f in record.files), project_name=project,
                          project_directory=Path(record.directory))  # fmt: skip
    try:
        return load_stack(options)
    except ComposerError:
        return None


def open_view(settings: Settings, runtime: Runtime, project: str, stack: Stack | None) -> StackView:
    """The stack's containers now; without `stack`, the one recorded for the project gives
    the dependency order (else services are in name order)."""
    if stack is None:
        stack = stored_stack(settings, project)
    order = tuple(tuple(g) for g in stack.graph.start_order()) if stack is not None else ()
    return StackView(project, stack, order, ()).refresh(runtime)


def members(runtime: Runtime, project: str) -> list[Member]:
    """The project's containers (by their labels), one-off ones (`composer run`) included."""
    from engine.errors import EngineError

    members = []
    for container_id in runtime.ids():
        with contextlib.suppress(EngineError):  # removed meanwhile
            container = runtime.get(container_id)
            labels = dict(container.config.labels)
            if container.config.group == project and LABEL_SERVICE in labels:
                number = int(labels.get(LABEL_NUMBER, "1"))
                members.append(Member(labels[LABEL_SERVICE], number, container))
    return members
