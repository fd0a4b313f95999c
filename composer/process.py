"""What a service's container runs, from the image config and the service's own keys, by
Docker's rules: the service wins key by key, and an `entrypoint` set in the service drops the
image's `Cmd` (unless the service sets `command` too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from composer.config.service import Service
from composer.errors import ComposerError
from engine.images.manifest import ImageConfig

__all__ = ["Health", "Process", "resolve_process"]

_NS: Final = 1e9
_HEALTH_DEFAULTS: Final = {
    "interval": 30.0,
    "timeout": 30.0,
    "retries": 3,
    "start_period": 0.0,
    "start_interval": 5.0,
}


@dataclass(frozen=True)
class Health:
    """A resolved healthcheck: `test` is ("CMD", argv...) or ("CMD-SHELL", command)."""

    test: tuple[str, ...]
    interval: float
    timeout: float
    retries: int
    start_period: float
    start_interval: float


@dataclass(frozen=True)
class Process:
    argv: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    user: str
    exposed_ports: tuple[str, ...]
    stop_signal: str
    healthcheck: Health | None


def resolve_process(name: str, service: Service, image: ImageConfig) -> Process:
    """The process of service `name`; raises ComposerError when neither names a command."""
    entrypoint = service.entrypoint if service.entrypoint is not None else image.entrypoint
    if service.command is not None:
        command: tuple[str, ...] | list[str] | None = service.command
    elif service.entrypoint is not None:
        command = None  # Docker: a new entrypoint does not get the image's Cmd
    else:
        command = image.cmd
    argv = (*(entrypoint or ()), *(command or ()))
    if not argv:
        raise ComposerError(
            f"service {name!r}: no command to run: its image has no Entrypoint or Cmd; set "
            "`command:` (or `entrypoint:`) in the stack file"
        )
    return Process(
        argv=tuple(argv),
        env=_environment(image.env, service.environment or {}),
        working_dir=service.working_dir or image.working_dir or "/",
        user=str(service.user) if service.user is not None else image.user,
        exposed_ports=_ports(image.exposed_ports, service.expose or []),
        stop_signal=service.stop_signal or image.stop_signal or "SIGTERM",
        healthcheck=_health(service, image.healthcheck),
    )


def _environment(image_env: tuple[str, ...], service_env: dict[str, str | None]) -> tuple[str, ...]:
    """The image's variables, each replaced by the service's value of the same name, then the
    service's other variables; a service variable without a value (unset on the host when the
    stack was read) leaves the image's value, as docker compose does."""
    merged: dict[str, str] = {}
    for entry in image_env:
        key, _, value = entry.partition("=")
        merged[key] = value
    for name, given in service_env.items():
        if given is not None:
            merged[name] = given
    return tuple(f"{k}={v}" for k, v in merged.items())


def _ports(image_ports: tuple[str, ...], expose: list[str]) -> tuple[str, ...]:
    ports = dict.fromkeys(image_ports)
    for port in expose:
        ports.setdefault(port if "/" in str(port) else f"{port}/tcp")
    return tuple(ports)


def _health(service: Service, image: dict[str, Any] | None) -> Health | None:
    own = service.healthcheck
    if own is not None and (own.disable or (own.test and own.test[0] == "NONE")):
        return None
    image = image or {}
    test = tuple(own.test) if own is not None and own.test else tuple(image.get("Test") or ())
    if not test or test[0] == "NONE":
        return None

    def pick(key: str, image_key: str) -> float:
        value = getattr(own, key, None) if own is not None else None
        if value is not None:
            return float(value)
        if image.get(image_key):
            return float(image[image_key]) / _NS
        return float(_HEALTH_DEFAULTS[key])

    retries = own.retries if own is not None and own.retries is not None else image.get("Retries")
    return Health(
        test=test,
        interval=pick("interval", "Interval"),
        timeout=pick("timeout", "Timeout"),
        retries=int(retries) if retries else int(_HEALTH_DEFAULTS["retries"]),
        start_period=pick("start_period", "StartPeriod"),
        start_interval=pick("start_interval", "StartInterval"),
    )
