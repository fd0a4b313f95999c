"""Bringing a stack up and down: networks, containers in dependency order (each generation
concurrently), their addresses and hosts files, and the published ports — under the stack's
lock, recorded in the state store."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from composer.config.loader import Stack
from composer.containers import container_config, container_name
from composer.discovery import ContainerFiles, refresh_hosts, write_files
from composer.errors import ComposerError
from composer.networks import attachments, ensure_networks, remove_networks
from composer.settings import Settings
from composer.state import ContainerRecord, PortRecord, StateStore

if TYPE_CHECKING:
    from engine.container.runtime import Runtime
    from engine.images.store import Image
    from engine.network.ports import PortBinding
    from engine.network.veth import Attachment

__all__ = ["Planned", "down", "stack_lock", "up"]


@contextlib.contextmanager
def stack_lock(
    root: Path, project: str, waiting: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the stack's lock (one composer command acts on a stack at a time); `waiting` is
    called once when another command holds it, before waiting for it."""
    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{project}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Planned:
    """One container to have: service, replica number, name, and its networks."""

    service: str
    number: int
    name: str
    attachments: list[Attachment] = field(default_factory=list)


def _files(settings: Settings, project: str, container: str) -> ContainerFiles:
    return ContainerFiles(settings.root / "stacks" / project / "files" / container)


def _replicas(stack: Stack, service: str) -> int:
    definition = stack.project.services[service]
    if definition.scale is not None:
        return definition.scale
    if definition.deploy is not None and definition.deploy.replicas is not None:
        return definition.deploy.replicas
    return 1


def _runtime(settings: Settings, project: str) -> Runtime:
    from engine.cgroups import detect
    from engine.container.runtime import Runtime
    from engine.container.zygote import ensure_zygote

    runtime = Runtime(settings.root, detect())
    ensure_zygote(settings.root)
    runtime.use_zygote = True
    return runtime


def _bindings(stack: Stack, planned: list[Planned], store: StateStore) -> list[PortBinding]:
    """Every published port of the stack, to the address of its container's first network.
    A random host port keeps what it got the first time."""
    from engine.network.ports import PortBinding

    earlier = {(p.container, p.host_ip, p.container_port, p.protocol): p.host_port
               for p in store.ports(stack.project.name)}  # fmt: skip
    bindings = []
    for item in planned:
        service = stack.project.services[item.service]
        if not item.attachments:
            continue  # host network: the ports are the host's already; none: nothing to reach
        target = str(item.attachments[0].address.ip)
        for port in service.ports or []:
            if port.protocol == "sctp":
                raise ComposerError(f"service {item.service}: sctp ports cannot be published")
            host_ip = port.host_ip or ""
            low = high = 0
            if port.published:
                first, _, last = str(port.published).partition("-")
                low, high = int(first), int(last or 0)
            if not low:
                low = earlier.get((item.name, host_ip, port.target, port.protocol), 0)
            bindings.append(
                PortBinding(
                    service=item.service,
                    container_port=port.target,
                    target_ip=target,
                    host_port=low,
                    host_port_end=high,
                    host_ip=host_ip,
                    protocol="udp" if port.protocol == "udp" else "tcp",
                )
            )
    return bindings


def _hash(config_json: bytes) -> str:
    return hashlib.sha256(config_json).hexdigest()


def up(
    stack: Stack,
    settings: Settings,
    images: dict[str, Image],
    *,
    waiting: Callable[[], None] | None = None,
) -> list[Planned]:
    """Make the stack run: its networks, then its services' containers in dependency
    generations (each generation concurrently), then its published ports. Containers that
    run already are kept. Returns what runs."""
    import anyio

    project = stack.project
    with stack_lock(settings.root, project.name, waiting), StateStore(settings.root) as store:
        records = ensure_networks(project, store, settings.address_pools)
        runtime = _runtime(settings, project.name)
        planned: list[Planned] = []
        for generation in stack.graph.start_order():
            for service in generation:
                if service in stack.disabled:
                    continue
                for number in range(1, _replicas(stack, service) + 1):
                    own = project.services[service].container_name
                    name = container_name(project.name, service, number, own)
                    joins = attachments(project, service, name, records, store)
                    planned.append(Planned(service, number, name, joins))
        bindings = _bindings(stack, planned, store)
        _check_ports(settings, project.name, bindings, store)
        by_service: dict[str, Planned] = {}
        for item in planned:
            by_service.setdefault(item.service, item)  # service:X joins X's first replica

        def converge(item: Planned) -> None:
            _converge_container(stack, settings, images, runtime, store, item, by_service)

        async def run_generations() -> None:
            limiter = anyio.CapacityLimiter(8)
            for generation in stack.graph.start_order():
                async with anyio.create_task_group() as group:
                    for item in planned:
                        if item.service in generation:
                            group.start_soon(
                                partial(anyio.to_thread.run_sync, converge, item, limiter=limiter)
                            )

        anyio.run(run_generations)
        refresh_hosts(store, {p.name: _files(settings, project.name, p.name) for p in planned})
        _publish(settings, project.name, planned, bindings, store)
        return planned


def _check_ports(
    settings: Settings, project: str, bindings: list[PortBinding], store: StateStore
) -> None:
    """A host port in use is an error naming the service and port, before anything starts
    (ports this stack publishes already are its own)."""
    from engine.network.ports import PortError, check_available

    ours = {(p.host_ip, p.host_port, p.protocol) for p in store.ports(project)}
    fresh = [b for b in bindings if (b.host_ip, b.host_port, b.protocol) not in ours]
    try:
        check_available(fresh)
    except PortError as exc:
        raise ComposerError(str(exc)) from exc


def _converge_container(
    stack: Stack,
    settings: Settings,
    images: dict[str, Image],
    runtime: Runtime,
    store: StateStore,
    item: Planned,
    by_service: dict[str, Planned],
) -> None:
    from engine.errors import EngineError

    project = stack.project
    service = project.services[item.service]
    try:
        current = runtime.get(item.name)
    except EngineError:
        current = None
    if current is not None and current.state.status in ("running", "paused"):
        return
    joined = _joined(service.network_mode or "", by_service)
    files = _files(settings, project.name, item.name)
    write_files(files, service, service.hostname or item.name, store, item.name)
    if current is None:
        from composer.images import open_store

        config = container_config(
            project, item.service, item.number, images[item.service], open_store(settings),
            settings, files=files.mounts(), raw=stack.raw, joined=joined,
            networks=tuple(item.attachments),
        )  # fmt: skip
        runtime.create(config)
        store.put_container(ContainerRecord(item.name, project.name, item.service,
                                            item.number, _hash(config.to_json()), ""))  # fmt: skip
    runtime.start(item.name)


def _joined(mode: str, by_service: dict[str, Planned]) -> str | None:
    """The container whose network namespace `network_mode` joins, if it joins one."""
    kind, _, target = mode.partition(":")
    if kind not in ("service", "container"):
        return None
    return by_service[target].name if kind == "service" and target in by_service else target


def _publish(
    settings: Settings,
    project: str,
    planned: list[Planned],
    bindings: list[PortBinding],
    store: StateStore,
) -> None:
    from engine.errors import EngineError
    from engine.supervisor import publish

    if not bindings and not store.ports(project):
        return
    try:
        published = publish(settings.root, project, bindings)
    except EngineError as exc:
        raise ComposerError(f"publishing ports: {exc}") from exc
    by_target: dict[str, list[PortRecord]] = {}
    names = {str(p.attachments[0].address.ip): p.name for p in planned if p.attachments}
    for port in published:
        b = port.binding
        container = names[b.target_ip]
        by_target.setdefault(container, []).append(
            PortRecord(
                container,
                project,
                b.service,
                b.host_ip,
                port.host_port,
                b.container_port,
                b.protocol,
                b.target_ip,
            )
        )
    for item in planned:
        store.put_ports(item.name, by_target.get(item.name, []))


def down(project: str, settings: Settings, *, timeout: float | None = None,
         waiting: Callable[[], None] | None = None) -> list[str]:  # fmt: skip
    """Stop and remove the stack's containers, its published ports, its networks and their
    allocations, and its generated files (named volumes stay, as with docker compose).
    Returns the containers removed."""
    from engine.cgroups import detect
    from engine.container.runtime import Runtime
    from engine.errors import EngineError
    from engine.supervisor import publish, supervisor_pid

    removed = []
    with stack_lock(settings.root, project, waiting), StateStore(settings.root) as store:
        runtime = Runtime(settings.root, detect())
        if store.ports(project) and supervisor_pid(settings.root, project):
            with contextlib.suppress(EngineError):
                publish(settings.root, project, [])
        names = {r.id for r in store.containers(project)}
        for container_id in runtime.ids():
            with contextlib.suppress(EngineError):
                if runtime.get(container_id).config.group == project:
                    names.add(container_id)
        for name in sorted(names):
            with contextlib.suppress(EngineError):
                runtime.stop(name, timeout)
            try:
                runtime.remove(name, force=True)
            except EngineError as exc:
                if runtime.containers.joinpath(name).exists():
                    raise ComposerError(f"cannot remove container {name}: {exc}") from exc
            store.delete_container(name)
            removed.append(name)
        remove_networks(project, store)
        shutil.rmtree(settings.root / "stacks" / project, ignore_errors=True)
    return removed
