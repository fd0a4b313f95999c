"""Which images a stack needs, and whether to pull each one: services' `pull_policy` (always,
never, missing, daily, weekly, every_<duration>) decides, as in docker compose."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from composer.config.types import parse_duration
from composer.errors import ComposerError
from composer.settings import Settings
from engine.errors import EngineError
from engine.images.reference import Reference, parse_reference
from engine.images.store import Image, ImageStore

if TYPE_CHECKING:  # the loader (pydantic) and the registry client (httpx) load when used
    from composer.config.loader import Stack
    from engine.images.registry import PullProgress, RegistryClient

__all__ = [
    "ImageNeed",
    "PullOutcome",
    "decide",
    "ensure_images",
    "images_in_use",
    "open_store",
    "pull_images",
    "stack_images",
]

_INTERVALS: Final = {"daily": 86400.0, "weekly": 7 * 86400.0}

Decision = Literal["pull", "use", "missing"]


@dataclass(frozen=True)
class ImageNeed:
    """An image some services of a stack run, and the pull policy that applies to it (the
    most eager one when services disagree)."""

    ref: Reference
    services: tuple[str, ...]
    policy: str


@dataclass(frozen=True)
class PullOutcome:
    need: ImageNeed
    image: Image | None
    error: str | None = None
    pulled: bool = False


def open_store(settings: Settings) -> ImageStore:
    return ImageStore(settings.images)


def images_in_use(settings: Settings) -> set[str]:
    """Ids of the images containers on this host were made from (each container directory
    records its image id in `image-id`)."""
    used = set()
    for record in settings.containers.glob("*/image-id"):
        try:
            used.add(record.read_text().strip())
        except OSError:
            continue
    return used


def _eagerness(policy: str) -> int:
    order = ("never", "build", "missing", "if_not_present", "weekly", "daily")
    return order.index(policy) if policy in order else len(order)


def stack_images(stack: Stack, services: Iterable[str] | None = None) -> list[ImageNeed]:
    """The images of a stack's (enabled) services, each once, in service order."""
    wanted = set(services) if services is not None else None
    found: dict[str, tuple[Reference, list[str], str]] = {}
    for name, service in stack.project.services.items():
        if name in stack.disabled or (wanted is not None and name not in wanted):
            continue
        if service.image is None:
            continue  # built, not pulled
        try:
            ref = parse_reference(service.image)
        except EngineError as exc:
            raise ComposerError(f"service {name!r}: {exc}") from exc
        policy = service.pull_policy or ("build" if service.build is not None else "missing")
        ref_text, (_, names, current) = str(ref), found.get(str(ref), (ref, [], "never"))
        names.append(name)
        best = policy if _eagerness(policy) > _eagerness(current) else current
        found[ref_text] = (ref, names, best)
    return [ImageNeed(ref, tuple(names), policy) for ref, names, policy in found.values()]


def decide(need: ImageNeed, present: Image | None, now: float) -> Decision:
    """Pull, use what is in the store, or report it missing (policy never, or build)."""
    policy = need.policy
    if policy == "always":
        return "pull"
    if policy in ("never", "build"):
        return "use" if present is not None else "missing"
    if present is None:
        return "pull"
    if policy in _INTERVALS or policy.startswith("every_"):
        interval = _INTERVALS.get(policy) or parse_duration(policy.removeprefix("every_"))
        return "pull" if now - present.updated >= interval else "use"
    return "use"


ProgressSink = Callable[["PullProgress"], None]


async def pull_images(
    settings: Settings,
    needs: list[ImageNeed],
    *,
    force: bool = False,
    progress: ProgressSink | None = None,
) -> list[PullOutcome]:
    """Pull the images `decide` says to (all of them with `force`, but never those whose
    policy forbids it), concurrently; each outcome says what happened to one image."""
    import anyio

    store = open_store(settings)
    clients: list[RegistryClient] = []  # made on the first pull: httpx takes ~60 ms to load
    outcomes: dict[int, PullOutcome] = {}
    now = time.time()

    def client() -> RegistryClient:
        if not clients:
            from engine.images.auth import docker_credentials
            from engine.images.registry import RegistryClient

            clients.append(RegistryClient(store, settings.insecure_registries,
                                          docker_credentials))  # fmt: skip
        return clients[0]

    async def one(index: int, need: ImageNeed) -> None:
        present = store.find(str(need.ref))
        decision = decide(need, present, now)
        if force and need.policy not in ("never", "build"):
            decision = "pull"
        if decision == "use":
            outcomes[index] = PullOutcome(need, present)
            return
        if decision == "missing":
            why = "pull_policy is never" if need.policy == "never" else "it is built, not pulled"
            outcomes[index] = PullOutcome(
                need, None, f"image {need.ref.familiar()} is not in the image store and {why}"
            )
            return
        try:
            image = await client().pull(need.ref, progress)
        except EngineError as exc:
            outcomes[index] = PullOutcome(need, present, str(exc))
            return
        outcomes[index] = PullOutcome(need, image, pulled=True)

    async with anyio.create_task_group() as group:
        for index, need in enumerate(needs):
            group.start_soon(one, index, need)
    return [outcomes[i] for i in range(len(needs))]


async def ensure_images(
    settings: Settings, stack: Stack, progress: ProgressSink | None = None
) -> dict[str, Image]:
    """Every service's image, pulled as its pull_policy says; raises ComposerError naming
    each service whose image cannot be had."""
    needs = stack_images(stack)
    outcomes = await pull_images(settings, needs, progress=progress)
    failures = [o for o in outcomes if o.error]
    if failures:
        lines = [
            f"{'service' if len(o.need.services) == 1 else 'services'} "
            f"{', '.join(o.need.services)}: {o.error}"
            for o in failures
        ]
        raise ComposerError("\n".join(lines))
    return {service: o.image for o in outcomes if o.image for service in o.need.services}
