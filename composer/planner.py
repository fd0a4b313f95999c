"""The convergence plan: from a stack (desired) and the containers that exist (observed), what
to do to each container — create, recreate, start, keep or remove — decided before anything is
touched. Pure: no kernel, no store; `converge` executes the plan.

A container is recreated when its fingerprint differs from the one it was made with: the
service's configuration hash (what `composer config --hash` prints), the image it runs, and
the fingerprints of the services it depends on with `restart: true` or whose network
namespace it joins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from composer.errors import ComposerError

if TYPE_CHECKING:
    from composer.config.loader import Stack

__all__ = [
    "Action",
    "Fingerprint",
    "Observed",
    "Plan",
    "PlanOptions",
    "container_name",
    "fingerprints",
    "plan",
    "replicas",
    "selected_services",
]

ActionKind = Literal["create", "recreate", "start", "keep", "remove"]


def container_name(project: str, service: str, number: int, own: str | None = None) -> str:
    """`PROJECT-SERVICE-N`, as docker compose names containers, unless `container_name`."""
    return own or f"{project}-{service}-{number}"


@dataclass(frozen=True)
class Fingerprint:
    """What a service's containers are made from: its configuration hash, its image, and a
    digest of the fingerprints of the services it follows (restart: true, network_mode)."""

    config: str
    image: str = ""
    dependencies: str = ""

    def differs(self, other: Fingerprint) -> str:
        """Why a container made with `other` is not what this says ("" when it is)."""
        if other.config != self.config:
            return "configuration changed"
        if other.image != self.image:
            return "image changed"
        if other.dependencies != self.dependencies:
            return "a dependency changed"
        return ""

    @property
    def digest(self) -> str:
        return hashlib.sha256(
            f"{self.config} {self.image} {self.dependencies}".encode()
        ).hexdigest()


@dataclass(frozen=True)
class Observed:
    """A container of the stack as it exists: its service and replica number, the fingerprint
    it was made with, and its state (created, running, paused, restarting, exited)."""

    name: str
    service: str
    number: int
    fingerprint: Fingerprint
    status: str


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    service: str
    number: int
    name: str
    reason: str = ""
    replaces: str = ""  # recreate: the container it replaces (its name may differ)


@dataclass(frozen=True)
class PlanOptions:
    """`up`'s flags that change the plan."""

    force_recreate: bool = False
    no_recreate: bool = False
    remove_orphans: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    services: tuple[str, ...] = ()  # only these (and what they need, unless no_deps)
    no_deps: bool = False


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    orphans: tuple[Observed, ...]  # containers of services no longer in the stack

    def of(self, service: str) -> list[Action]:
        return [a for a in self.actions if a.service == service]

    @property
    def wanted(self) -> list[Action]:
        """The containers that will exist and run once the plan is done."""
        return [a for a in self.actions if a.kind != "remove"]


def replicas(stack: Stack, service: str, scale: dict[str, int] | None = None) -> int:
    """How many containers `service` has: --scale, else `scale:`, else deploy.replicas, else 1."""
    if scale and service in scale:
        return scale[service]
    definition = stack.project.services[service]
    if definition.scale is not None:
        return definition.scale
    if definition.deploy is not None and definition.deploy.replicas is not None:
        return definition.deploy.replicas
    return 1


def selected_services(stack: Stack, options: PlanOptions) -> list[str]:
    """The services `up` acts on, in start order: all enabled ones, or those named and
    (unless no_deps) everything they need."""
    enabled = [s for g in stack.graph.start_order() for s in g if s not in stack.disabled]
    if not options.services:
        return enabled
    unknown = [s for s in options.services if s not in stack.project.services]
    if unknown:
        known = ", ".join(sorted(stack.project.services))
        raise ComposerError(f"no such service: {', '.join(unknown)} (the stack has: {known})")
    chosen = set(options.services)
    if not options.no_deps:
        pending = list(chosen)
        while pending:
            for needed in stack.graph.needs(pending.pop()):
                if needed not in chosen:
                    chosen.add(needed)
                    pending.append(needed)
    return [s for s in enabled if s in chosen]


def fingerprints(stack: Stack, image_ids: dict[str, str]) -> dict[str, Fingerprint]:
    """Each service's fingerprint: its configuration hash, its image, and the fingerprints of
    the services it depends on with `restart: true` or whose network it joins."""
    from composer.config.serialize import project_to_dict, service_hash

    project = stack.project
    normal = project_to_dict(project)
    result: dict[str, Fingerprint] = {}
    for generation in stack.graph.start_order():
        for name in generation:
            service = project.services[name]
            followed = []
            for target, dependency in sorted((service.depends_on or {}).items()):
                if dependency.restart and target in result:
                    followed.append(f"{target}={result[target].digest}")
            mode = service.network_mode or ""
            if mode.startswith("service:") and mode[8:] in result:
                followed.append(f"network={result[mode[8:]].digest}")
            digest = hashlib.sha256("\n".join(followed).encode()).hexdigest() if followed else ""
            result[name] = Fingerprint(service_hash(project, name, normal),
                                       image_ids.get(name, ""), digest)  # fmt: skip
    return result


def plan(
    stack: Stack,
    wanted: dict[str, Fingerprint],
    observed: list[Observed],
    options: PlanOptions,
) -> Plan:
    """What to do to each container so that the selected services run as the stack says."""
    project = stack.project
    if options.force_recreate and options.no_recreate:
        raise ComposerError("--force-recreate and --no-recreate cannot be used together")
    for service, count in options.scale.items():
        if service not in project.services:
            raise ComposerError(f"--scale {service}={count}: no such service")
        if count < 0:
            raise ComposerError(f"--scale {service}={count}: a count cannot be negative")
    by_service: dict[str, dict[int, Observed]] = {}
    for container in observed:
        by_service.setdefault(container.service, {})[container.number] = container
    actions: list[Action] = []
    for service in selected_services(stack, options):
        definition = project.services[service]
        count = replicas(stack, service, options.scale)
        if definition.container_name and count > 1:
            raise ComposerError(
                f"service {service}: container_name {definition.container_name!r} cannot be "
                f"shared by {count} replicas (remove container_name or scale to 1)"
            )
        existing = by_service.get(service, {})
        for number in range(1, count + 1):
            name = container_name(project.name, service, number, definition.container_name)
            current = existing.get(number)
            actions.append(_decide(service, number, name, current, wanted[service], options))
        for number in sorted(n for n in existing if n > count):
            actions.append(Action("remove", service, number, existing[number].name, "scale"))
    orphans = tuple(
        c for c in observed if c.service not in project.services and c.service not in stack.disabled
    )
    if options.remove_orphans:
        actions += [Action("remove", c.service, c.number, c.name, "orphan") for c in orphans]
    return Plan(tuple(actions), orphans)


def _decide(
    service: str,
    number: int,
    name: str,
    current: Observed | None,
    wanted: Fingerprint,
    options: PlanOptions,
) -> Action:
    if current is None:
        return Action("create", service, number, name)
    if current.name != name:
        return Action("recreate", service, number, name, "container_name changed", current.name)
    if options.force_recreate:
        return Action("recreate", service, number, name, "--force-recreate", current.name)
    changed = wanted.differs(current.fingerprint)
    if changed and not options.no_recreate:
        return Action("recreate", service, number, name, changed, current.name)
    if current.status in ("running", "paused", "restarting"):
        return Action("keep", service, number, name)
    return Action("start", service, number, name)
