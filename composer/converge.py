"""Bringing a stack up and down: networks, containers in dependency order (each generation
concurrently), their addresses and hosts files, and the published ports — under the stack's
lock, recorded in the state store."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Final

from composer.discovery import AddressBook, ContainerFiles, refresh_hosts, write_files
from composer.errors import ComposerError
from composer.locks import stack_lock
from composer.networks import Allocations, attachments, ensure_networks, remove_networks
from composer.planner import Action, Fingerprint, Observed, Plan, PlanOptions, fingerprints, plan
from composer.settings import Settings
from composer.stackview import container_files, members, open_runtime
from composer.state import ContainerRecord, PortRecord, StackRecord, StateStore
from engine.supervisor import ensure_supervisor

if TYPE_CHECKING:
    from composer.config.loader import Stack
    from composer.helpers import Helpers
    from engine.container.runtime import Runtime
    from engine.images.store import Image
    from engine.network.ports import PortBinding
    from engine.network.veth import Attachment

__all__ = ["UpError", "UpResult", "down", "observe", "one_off", "remove_one_off", "up"]

SUPERVISOR: Final = "composer.reconciler"  # the program of a stack's supervisor
LABEL_HASH: Final = "composer.config-hash"  # what `composer config --hash` prints
LABEL_IMAGE: Final = "composer.image"
LABEL_DEPENDENCIES: Final = "composer.dependencies-hash"
LABEL_ONE_OFF: Final = "composer.oneoff"  # a `composer run` container: no replica of its service
_CONCURRENCY: Final = 8  # containers made or started at once (threads; 2 cores here)
_HELPED: Final = 8  # containers from which helper processes do the work (composer.helpers)


def _helpers() -> int:
    """How many helper processes: four (their work waits for the kernel as much as it
    computes: two on two cores left them idle), or one per core on a larger machine, up to
    eight."""
    return min(8, max(4, os.cpu_count() or 4))


def _files(settings: Settings, project: str, container: str) -> ContainerFiles:
    return container_files(settings, project, container)


def _runtime(settings: Settings) -> Runtime:
    return open_runtime(settings)


def observe(runtime: Runtime, project: str) -> list[Observed]:
    """The stack's containers as they exist now (their labels say whose they are), one-off
    ones (`composer run`) aside."""
    found = []
    for member in members(runtime, project):
        labels = dict(member.config.labels)
        if labels.get(LABEL_ONE_OFF):
            continue
        made_from = Fingerprint(labels.get(LABEL_HASH, ""), labels.get(LABEL_IMAGE, ""),
                                labels.get(LABEL_DEPENDENCIES, ""))  # fmt: skip
        found.append(Observed(member.name, member.service, member.number, made_from,
                              member.state.status))  # fmt: skip
    return found


def _bindings(
    stack: Stack, wanted: list[Action], nets: dict[str, list[Attachment]], store: StateStore
) -> list[PortBinding]:
    """Every published port of the stack, to the address of its container's first network.
    A random host port keeps what it got the first time."""
    if not any(stack.project.services[a.service].ports for a in wanted):
        return []  # and the port proxy's module is not loaded
    from engine.network.ports import PortBinding

    earlier = {(p.container, p.host_ip, p.container_port, p.protocol): p.host_port
               for p in store.ports(stack.project.name)}  # fmt: skip
    bindings = []
    for action in wanted:
        service = stack.project.services[action.service]
        if not nets.get(action.name):
            continue  # host network: the ports are the host's already; none: nothing to reach
        target = str(nets[action.name][0].address.ip)
        for port in service.ports or []:
            if port.protocol == "sctp":
                raise ComposerError(f"service {action.service}: sctp ports cannot be published")
            host_ip = port.host_ip or ""
            low = high = 0
            if port.published:
                first, _, last = str(port.published).partition("-")
                low, high = int(first), int(last or 0)
            if not low:
                low = earlier.get((action.name, host_ip, port.target, port.protocol), 0)
            bindings.append(
                PortBinding(
                    service=action.service,
                    container_port=port.target,
                    target_ip=target,
                    host_port=low,
                    host_port_end=high,
                    host_ip=host_ip,
                    protocol="udp" if port.protocol == "udp" else "tcp",
                )
            )
    return bindings


@dataclass
class UpResult:
    """What `up` did: the plan, and the services that failed (service → why)."""

    plan: Plan
    failed: dict[str, str] = field(default_factory=dict)


Progress = Callable[[str, str], None]  # (container or network, what happens to it)


def up(
    stack: Stack,
    settings: Settings,
    images: dict[str, Image],
    options: PlanOptions | None = None,
    *,
    waiting: Callable[[], None] | None = None,
    progress: Progress | None = None,
) -> UpResult:
    """Make the stack run as its file says: its networks, then a plan (create, recreate,
    start, keep or remove each container, from configuration hashes) carried out service by
    service as soon as what each needs is ready — independent services concurrently — then
    its hosts files and published ports. A failed service stops only what depends on it;
    raises UpError after the rest is done."""
    # Loaded in this thread: the executor's threads would race to import it first.
    from composer.containers import container_config  # noqa: F401

    options = options or PlanOptions()
    report = progress or (lambda _name, _what: None)
    project = stack.project
    with stack_lock(settings.root, project.name, waiting), StateStore(settings.root) as store:
        store.put_stack(StackRecord(project.name, tuple(str(f) for f in stack.files),
                                    str(stack.project_directory)))  # fmt: skip
        records = ensure_networks(
            project, store, settings.address_pools, outbound_nat=settings.outbound_nat
        )
        runtime = _runtime(settings)
        hashes = fingerprints(stack, {name: image.id for name, image in images.items()})
        observed = observe(runtime, project.name)
        the_plan = plan(stack, hashes, observed, options)
        _check_names(runtime, project.name, the_plan)
        for orphan in the_plan.orphans:
            if not options.remove_orphans:
                report(orphan.name, "orphan: its service is not in the stack any more "
                                    "(--remove-orphans removes it)")  # fmt: skip
        nets: dict[str, list[Attachment]] = {}
        allocations = Allocations(store)
        for action in the_plan.wanted:
            mode = project.services[action.service].network_mode or ""
            if not mode or mode == "none":
                nets[action.name] = attachments(project, action.service, action.name, records,
                                                store, allocations) if not mode else []  # fmt: skip
        bindings = _bindings(stack, the_plan.wanted, nets, store)
        _check_ports(settings, project.name, bindings, store)
        executor = _Executor(stack, settings, images, runtime, store, the_plan, hashes, nets,
                             report)  # fmt: skip
        # Every address is allocated now: the containers there are learn of the new ones
        # before these start (a new one's own files are written whole when it is made).
        executor.refresh_hosts()
        result = UpResult(the_plan, executor.run())
        # Started once the containers are (unless a service_healthy wait needed its probes
        # earlier): loading it takes a core for ~0.3 s, which the containers' start needs.
        ensure_supervisor(settings.root, project.name, SUPERVISOR, wait=False)
        kept = [a.name for a in the_plan.wanted if a.service not in result.failed]
        removed = [a.name for a in the_plan.actions if a.kind == "remove"]
        executor.refresh_hosts()
        _publish(settings, project.name, [a for a in the_plan.wanted if a.name in kept],
                 nets, bindings, store, removed)  # fmt: skip
        if result.failed:
            raise UpError(result)
        return result


class UpError(ComposerError):
    """Some services could not be brought up; the others run."""

    def __init__(self, result: UpResult) -> None:
        self.result = result
        lines = [f"service {name}: {why}" for name, why in result.failed.items()]
        super().__init__("\n".join(lines))


def _check_names(runtime: Runtime, project: str, the_plan: Plan) -> None:
    """A container name another stack (or no stack) has is an error before anything starts."""
    from engine.errors import EngineError

    for action in the_plan.wanted:
        try:
            other = runtime.get(action.name).config.group
        except EngineError:
            continue
        if other != project:
            owner = f"stack {other!r}" if other else "no stack"
            raise ComposerError(
                f"service {action.service}: container name {action.name!r} is taken by a "
                f"container of {owner}; choose another container_name"
            )


class _Executor:
    """Carries out a plan: each service once what it needs is ready (its depends_on
    conditions), its containers concurrently, at most `_CONCURRENCY` at a time."""

    def __init__(
        self,
        stack: Stack,
        settings: Settings,
        images: dict[str, Image],
        runtime: Runtime,
        store: StateStore,
        the_plan: Plan,
        hashes: dict[str, Fingerprint],
        nets: dict[str, list[Attachment]],
        report: Progress,
    ) -> None:
        self.stack, self.settings, self.images = stack, settings, images
        self.runtime, self.store, self.plan = runtime, store, the_plan
        self.hashes, self.nets, self.report = hashes, nets, report
        self.failed: dict[str, str] = {}
        self._hosts = threading.Lock()  # one rewrite of the hosts files at a time
        # Every address is allocated before the plan is carried out: read once for the
        # hosts files of all the containers made.
        self.addresses = AddressBook(store)
        self.by_service = {a.service: a.name for a in reversed(the_plan.wanted)}
        self.started: set[str] = set()  # containers this executor started
        from composer.images import open_store

        self.image_store = open_store(settings)
        self.helpers: Helpers | None = None  # helper processes that make new containers

    def refresh_hosts(self) -> None:
        """Rewrite (in place) every hosts file of the stack whose content changed."""
        project = self.stack.project.name
        with self._hosts:
            ours = {c.id for c in self.store.containers(project)}
            refresh_hosts(self.store, {n: _files(self.settings, project, n) for n in ours})

    def run(self) -> dict[str, str]:
        import anyio

        new = [a for a in self.plan.actions if a.kind == "create"]
        if len(new) >= _HELPED:  # forked now: before any thread of the event loop
            from composer.helpers import Helpers

            self.helpers = Helpers(_helpers(), self._make_in_helper, self._reopen)
        try:
            anyio.run(self._all)
        finally:
            if self.helpers is not None:
                self.helpers.close()
        return self.failed

    def _make_in_helper(self, name: str, report: Progress) -> None:
        """In a helper process: make the new container `name`, `report`ing its progress."""
        from composer.helpers import HelperFailed

        self.report = report
        try:
            self._make(next(a for a in self.plan.actions if a.name == name and a.kind == "create"))
        except _Failed as exc:
            raise HelperFailed(str(exc)) from None

    def _reopen(self) -> None:
        """In a helper process: a database connection of its own (one is not shared across
        processes)."""
        self.store = StateStore(self.settings.root)

    async def _all(self) -> None:
        import anyio

        async with anyio.create_task_group() as relaying:
            if self.helpers is not None:
                relaying.start_soon(self.helpers.relay, self.report)
            await self._services()
            relaying.cancel_scope.cancel()

    async def _services(self) -> None:
        import anyio

        # New containers are made at once, before what their service needs is ready (as
        # docker compose creates every container first); only their start waits. Starts have
        # slots of their own, so that a dependency's start never queues behind creations.
        making = anyio.CapacityLimiter(_CONCURRENCY // 2)
        starting = anyio.CapacityLimiter(_CONCURRENCY)
        services = list(dict.fromkeys(a.service for a in self.plan.actions))
        done = {service: anyio.Event() for service in services}

        async def one(service: str) -> None:
            made: set[str] = set()

            async def make(action: Action) -> None:
                if self.helpers is None:
                    await anyio.to_thread.run_sync(self._make, action, limiter=making)
                else:
                    from composer.helpers import HelperFailed

                    try:
                        await self.helpers.do(action.name)
                    except HelperFailed as exc:
                        raise _Failed(str(exc)) from None
                made.add(action.name)

            try:
                async with anyio.create_task_group() as group:
                    for action in self.plan.of(service):
                        if action.kind == "create":
                            group.start_soon(make, action)
                for needed in self._needs(service):
                    if needed in done:
                        await done[needed].wait()
                if self._started_already(service):  # nothing to wait for: no thread needed
                    self._ready_to_start(service)
                else:
                    await anyio.to_thread.run_sync(self._ready_to_start, service,
                                                   limiter=starting)  # fmt: skip
                async with anyio.create_task_group() as group:
                    for action in self.plan.of(service):
                        do = partial(self._do, action, action.name in made)
                        group.start_soon(partial(anyio.to_thread.run_sync, do, limiter=starting))
            except _Failed as exc:
                self.failed.setdefault(service, str(exc))
            except BaseExceptionGroup as group_error:  # from a task: a creation or a start
                failures = [e for e in group_error.exceptions if isinstance(e, _Failed)]
                if len(failures) != len(group_error.exceptions):
                    raise
                self.failed.setdefault(service, str(failures[0]))
            finally:
                done[service].set()

        async with anyio.create_task_group() as group:
            for service in services:
                group.start_soon(one, service)

    def _needs(self, service: str) -> list[str]:
        """What `service` needs (nothing for an orphan: it is only removed)."""
        if service not in self.stack.project.services:
            return []
        return self.stack.graph.needs(service)

    def _started_already(self, service: str) -> bool:
        """Whether every depends_on condition of `service` is service_started of services
        whose containers this executor started (so it holds, and checking it never waits)."""
        definition = self.stack.project.services.get(service)
        return definition is None or all(
            dependency.condition == "service_started"
            and all(a.name in self.started for a in self.plan.wanted if a.service == needed)
            for needed, dependency in (definition.depends_on or {}).items()
        )

    def _ready_to_start(self, service: str) -> None:
        """Wait until each dependency meets its depends_on condition; _Failed when one cannot."""
        if service not in self.stack.project.services:
            return
        definition = self.stack.project.services[service]
        for needed in self.stack.graph.needs(service):
            if needed in self.failed:
                raise _Failed(f"not started: it depends on {needed}, which failed")
        for needed, dependency in (definition.depends_on or {}).items():
            names = [a.name for a in self.plan.wanted if a.service == needed]
            if not names and needed in self.by_service:
                continue
            for name in names:
                self._await_condition(service, needed, name, dependency.condition)

    def _await_condition(self, service: str, needed: str, name: str, condition: str) -> None:
        import time

        from engine.errors import EngineError

        if condition == "service_started" and name in self.started:
            return  # started here, just before: no need to look
        reported = False
        until = time.monotonic() + 2  # for an exit record
        check = time.monotonic()  # when to make sure the stack's supervisor runs
        while True:
            try:
                state = self.runtime.get(name).state
            except EngineError:
                raise _Failed(f"dependency {needed}: container {name} does not exist") from None
            health = getattr(state, "health", "")
            if state.status == "exited" and state.exit_code is None and time.monotonic() < until:
                time.sleep(0.01)  # ended; its shim is writing down how
                continue
            if condition == "service_started":
                if state.status != "created":
                    return
            elif condition == "service_healthy":
                if health == "healthy":
                    if reported:
                        self.report(name, "Healthy")
                    return
                if not health and state.status == "running":
                    raise _Failed(f"dependency {needed} has no healthcheck: it cannot become "
                                  "healthy (use condition: service_started)")  # fmt: skip
                if health == "unhealthy":
                    raise _Failed(f"dependency failed to start: container {name} is unhealthy"
                                  + _last_lines(self.runtime, name))  # fmt: skip
                if state.status == "exited":
                    raise _Failed(
                        f"dependency failed to start: container {name} exited "
                        f"({state.exit_code})" + _last_lines(self.runtime, name)
                    )
            elif condition == "service_completed_successfully" and state.status == "exited":
                if state.exit_code == 0:
                    if reported:
                        self.report(name, "Exited")
                    return
                raise _Failed(f"dependency {needed} did not complete successfully: container "
                              f"{name} exited ({state.exit_code})"
                              + _last_lines(self.runtime, name))  # fmt: skip
            if condition == "service_healthy" and time.monotonic() > check:
                # probes are the supervisor's: one must run (it may have been killed)
                ensure_supervisor(self.settings.root, self.stack.project.name, SUPERVISOR,
                                  wait=False)  # fmt: skip
                check = time.monotonic() + 2
            if not reported:
                self.report(name, {"service_healthy": "Waiting (healthy)",
                                   "service_completed_successfully": "Waiting (completed)"}
                            .get(condition, "Waiting"))  # fmt: skip
                reported = True
            time.sleep(0.05)

    def _make(self, action: Action) -> None:
        """Make a new container (it does not run yet); _Failed when it cannot be made."""
        from engine.errors import EngineError

        try:
            self.report(action.name, "Creating")
            self._create(action)
            self.report(action.name, "Created")
        except (EngineError, ComposerError, OSError) as exc:
            self.report(action.name, "Error")
            raise _Failed(f"container {action.name}: {exc}") from exc

    def _do(self, action: Action, made: bool = False) -> None:
        """Carry out `action` (`made`: its container was already made by `_make`)."""
        from engine.errors import EngineError

        try:
            if action.kind == "keep":
                self.report(action.name, "Running")
            elif action.kind == "remove":
                self.report(action.name, "Removing")
                _remove_container(self.runtime, self.store, self.settings, action.name)
                self.refresh_hosts()  # its peers forget it at once
                self.report(action.name, "Removed")
            elif action.kind == "start" or made:
                self.report(action.name, "Starting")
                self.runtime.start(action.name)
                self.started.add(action.name)
                self.report(action.name, "Started")
            else:
                if action.kind == "recreate":
                    self.report(action.name, "Recreate")
                    _remove_container(self.runtime, self.store, self.settings, action.replaces,
                                      keep_address=action.replaces == action.name)  # fmt: skip
                    self.report(action.name, "Recreated")
                else:
                    self.report(action.name, "Creating")
                self._create(action)
                self.report(action.name, "Created" if action.kind == "create" else "Recreated")
                self.report(action.name, "Starting")
                self.runtime.start(action.name)
                self.started.add(action.name)
                self.report(action.name, "Started")
        except (EngineError, ComposerError, OSError) as exc:
            self.report(action.name, "Error")
            raise _Failed(
                f"container {action.name}: {exc}" + _last_lines(self.runtime, action.name)
            ) from exc

    def _create(self, action: Action) -> None:
        project = self.stack.project
        service = project.services[action.service]
        made_from = self.hashes[action.service]
        if self.runtime.containers.joinpath(action.name).exists():
            self.runtime.remove(action.name, force=True)  # half made by an interrupted `up`
        files = _files(self.settings, project.name, action.name)
        write_files(files, service, service.hostname or action.name, self.store, action.name,
                    book=self.addresses)  # fmt: skip
        mode = service.network_mode or ""
        kind, _, target = mode.partition(":")
        joined = None
        if kind in ("service", "container"):
            joined = self.by_service.get(target, target) if kind == "service" else target
        from composer.containers import container_config

        config = container_config(
            project, action.service, action.number, self.images[action.service],
            self.image_store, self.settings, files=files.mounts(), raw=self.stack.raw,
            joined=joined, networks=tuple(self.nets.get(action.name, ())),
            labels=((LABEL_HASH, made_from.config), (LABEL_IMAGE, made_from.image),
                    (LABEL_DEPENDENCIES, made_from.dependencies)),
        )  # fmt: skip
        with self.store.transaction():
            self.store.put_container(ContainerRecord(action.name, project.name, action.service,
                                                     action.number, made_from.config,
                                                     ""))  # fmt: skip
            self.store.put_config(action.name, config.to_json())
        self.runtime.create(config)


class _Failed(Exception):
    """A service could not be brought up (the message says why)."""


def _last_lines(runtime: Runtime, name: str, count: int = 5) -> str:
    """The end of a container's output, to show with why it failed."""
    from engine.container.logs import read_log

    try:
        lines = [line.text.rstrip("\n") for line in read_log(runtime.containers / name)]
    except OSError:
        return ""
    tail = [line for line in lines if line.strip()][-count:]
    return "".join(f"\n  | {line}" for line in tail)


def _remove_container(
    runtime: Runtime,
    store: StateStore,
    settings: Settings,
    name: str,
    *,
    keep_address: bool = False,
    timeout: float | None = None,
) -> None:
    """Stop and remove a container, its record and generated files; its addresses are
    released unless it is being recreated under the same name."""
    from engine.errors import EngineError

    record = store.container(name)
    with contextlib.suppress(EngineError):
        runtime.stop(name, timeout)
    try:
        runtime.remove(name, force=True)
    except EngineError as exc:
        if runtime.containers.joinpath(name).exists():
            raise ComposerError(f"cannot remove container {name}: {exc}") from exc
    if keep_address:
        return
    store.delete_container(name)
    if record is not None:
        shutil.rmtree(_files(settings, record.project, name).directory, ignore_errors=True)


def _check_ports(
    settings: Settings, project: str, bindings: list[PortBinding], store: StateStore
) -> None:
    """A host port in use is an error naming the service and port, before anything starts
    (ports this stack publishes already are its own)."""
    if not bindings:
        return
    from engine.network.ports import PortError, check_available

    ours = {(p.host_ip, p.host_port, p.protocol) for p in store.ports(project)}
    fresh = [b for b in bindings if (b.host_ip, b.host_port, b.protocol) not in ours]
    try:
        check_available(fresh)
    except PortError as exc:
        raise ComposerError(str(exc)) from exc


def _publish(
    settings: Settings,
    project: str,
    wanted: list[Action],
    nets: dict[str, list[Attachment]],
    bindings: list[PortBinding],
    store: StateStore,
    removed: list[str],
) -> None:
    from engine.errors import EngineError
    from engine.supervisor import publish

    running = {a.service for a in wanted}
    bindings = [b for b in bindings if b.service in running]
    if not bindings and not store.ports(project):
        return
    try:
        published = publish(settings.root, project, bindings, module=SUPERVISOR)
    except EngineError as exc:
        raise ComposerError(f"publishing ports: {exc}") from exc
    by_target: dict[str, list[PortRecord]] = {}
    names = {str(n[0].address.ip): name for name, n in nets.items() if n}
    for port in published:
        b = port.binding
        container = names[b.target_ip]
        by_target.setdefault(container, []).append(
            PortRecord(container, project, b.service, b.host_ip, port.host_port,
                       b.container_port, b.protocol, b.target_ip)
        )  # fmt: skip
    for name in [a.name for a in wanted] + removed:
        store.put_ports(name, by_target.get(name, []))


def one_off(
    stack: Stack,
    settings: Settings,
    image: Image,
    service: str,
    command: tuple[str, ...] = (),
    env: tuple[str, ...] = (),
    *,
    waiting: Callable[[], None] | None = None,
) -> str:
    """Create and start a one-off container of `service` (`composer run`): on the service's
    networks, with `command` instead of the service's when given and `env` added, no
    published ports. Its name: PROJECT-SERVICE-run-RANDOM."""
    import secrets

    from composer.images import open_store

    project = stack.project
    definition = project.services[service]
    name = f"{project.name}-{service}-run-{secrets.token_hex(6)}"
    environment = dict(definition.environment or {})
    for entry in env:
        key, _, value = entry.partition("=")
        environment[key] = value
    update: dict[str, object] = {"container_name": name, "ports": None, "scale": None,
                                 "environment": environment}  # fmt: skip
    if command:
        update["command"] = list(command)
    changed = definition.model_copy(update=update)
    project = project.model_copy(update={"services": {**project.services, service: changed}})
    with stack_lock(settings.root, project.name, waiting), StateStore(settings.root) as store:
        records = ensure_networks(project, store, settings.address_pools,
                                  outbound_nat=settings.outbound_nat)  # fmt: skip
        runtime = _runtime(settings)
        mode = changed.network_mode or ""
        nets = attachments(project, service, name, records, store) if not mode else []
        files = _files(settings, project.name, name)
        write_files(files, changed, changed.hostname or name, store, name)
        kind, _, target = mode.partition(":")
        joined = None
        if kind == "service":
            joined = next((o.name for o in observe(runtime, project.name) if o.service == target),
                          target)  # fmt: skip
        elif kind == "container":
            joined = target
        from composer.containers import container_config

        config = container_config(project, service, 1, image, open_store(settings), settings,
                                  files=files.mounts(), joined=joined, networks=tuple(nets),
                                  labels=((LABEL_ONE_OFF, "True"),))  # fmt: skip
        with store.transaction():
            store.put_container(ContainerRecord(name, project.name, service, 0, "", ""))
            store.put_config(name, config.to_json())
        runtime.create(config)
        runtime.start(name)
        ours = {c.id for c in store.containers(project.name)}
        refresh_hosts(store, {n: _files(settings, project.name, n) for n in ours})
    return name


def remove_one_off(settings: Settings, project: str, name: str) -> None:
    """Remove a one-off container (`run --rm`) and rewrite its peers' hosts files."""
    with stack_lock(settings.root, project), StateStore(settings.root) as store:
        _remove_container(_runtime(settings), store, settings, name)
        ours = {c.id for c in store.containers(project)}
        refresh_hosts(store, {n: _files(settings, project, n) for n in ours})


def down(
    project: str,
    settings: Settings,
    *,
    timeout: float | None = None,
    volumes: tuple[str, ...] = (),
    waiting: Callable[[], None] | None = None,
    progress: Progress | None = None,
) -> list[str]:
    """Stop and remove the stack's containers (all at once), its published ports, its networks
    and their allocations, its generated files and its supervisor; the named `volumes` too
    (`down -v`; otherwise volumes stay, as with docker compose). Returns the containers
    removed."""
    from concurrent.futures import ThreadPoolExecutor

    from engine.cgroups import detect
    from engine.container.runtime import Runtime
    from engine.supervisor import stop_supervisor

    report = progress or (lambda _name, _what: None)
    with stack_lock(settings.root, project, waiting), StateStore(settings.root) as store:
        runtime = Runtime(settings.root, detect())
        # The supervisor goes first, its published ports with it: it would only react to
        # every container's end (a restart decision, its last output, the heal of what goes)
        # while down takes them away (at 50 containers, a third of the CPU that down took).
        stop_supervisor(settings.root, project)
        names = {r.id for r in store.containers(project)}
        names |= {c.name for c in observe(runtime, project)}

        databases = [store]  # a helper process's own connection replaces it in the helper

        def remove(name: str, report: Progress = report) -> str:
            report(name, "Stopping")
            _remove_container(runtime, databases[-1], settings, name, timeout=timeout)
            report(name, "Removed")
            return name

        def remove_in_helper(name: str, report: Progress) -> None:
            from composer.helpers import HelperFailed
            from engine.errors import EngineError

            try:
                remove(name, report)
            except (EngineError, ComposerError, OSError) as exc:
                raise HelperFailed(str(exc)) from None

        helpers = None
        if len(names) >= _HELPED:  # forked now: before the pool's threads
            from composer.helpers import Helpers

            helpers = Helpers(_helpers(), remove_in_helper,
                              lambda: databases.append(StateStore(settings.root)))  # fmt: skip
        try:
            with ThreadPoolExecutor(max_workers=_CONCURRENCY) as pool:
                # A bridge takes the kernel ~30 ms to remove: meanwhile. Its ports need not go
                # first (they are detached), and its supervisor does not heal what down
                # removes.
                networks = pool.submit(remove_networks, project, store)
                if helpers is None:
                    removed = list(pool.map(remove, sorted(names)))
                else:
                    failed = helpers.each(sorted(names), report)
                    if failed:
                        raise ComposerError("\n".join(failed.values()))
                    removed = sorted(names)
                networks.result()
        finally:
            if helpers is not None:
                helpers.close()
        for volume in volumes:
            report(volume, "Removing volume")
            shutil.rmtree(settings.root / "volumes" / volume, ignore_errors=True)
        store.delete_stack(project)
        shutil.rmtree(settings.root / "stacks" / project, ignore_errors=True)
    return removed
