"""Healthchecks, as Docker's: a container's probe (HealthConfig) and how probe results move its
health from starting to healthy or unhealthy, with the failing streak and the last five
probes that `docker inspect` shows under State.Health. Pure: the supervisor runs the probes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from engine.container.launch import ContainerError

__all__ = ["Health", "HealthConfig", "Probe"]

LOG_ENTRIES: Final = 5  # probes kept in the log
OUTPUT_LIMIT: Final = 4096  # bytes of a probe's output kept (Docker's limit)
_DEFAULTS: Final = {"interval": 30.0, "timeout": 30.0, "start_period": 0.0, "start_interval": 5.0}
_RETRIES: Final = 3


@dataclass(frozen=True)
class HealthConfig:
    """A probe `argv` run inside the container every `interval` seconds (every
    `start_interval` while it is starting, within `start_period` of its start, when failures
    do not count), killed after `timeout`; `retries` failures in a row make it unhealthy."""

    argv: tuple[str, ...]
    interval: float = _DEFAULTS["interval"]
    timeout: float = _DEFAULTS["timeout"]
    start_period: float = _DEFAULTS["start_period"]
    start_interval: float = _DEFAULTS["start_interval"]
    retries: int = _RETRIES

    def __post_init__(self) -> None:
        if not self.argv:
            raise ContainerError("a healthcheck needs a command")
        if min(self.interval, self.timeout, self.start_interval) <= 0 or self.start_period < 0:
            raise ContainerError("healthcheck interval, timeout and start_interval must be > 0")
        if self.retries < 1:
            raise ContainerError("healthcheck retries must be at least 1")

    @classmethod
    def from_test(
        cls,
        test: Sequence[str],
        *,
        interval: float = 0.0,
        timeout: float = 0.0,
        start_period: float = 0.0,
        start_interval: float = 0.0,
        retries: int = 0,
    ) -> HealthConfig | None:
        """From Docker's forms: ("CMD", program, args…) runs as given, ("CMD-SHELL", command)
        with /bin/sh -c, ("NONE",) or nothing disables (None). A zero takes the default."""
        if not test or test[0] == "NONE":
            return None
        if test[0] == "CMD":
            argv = tuple(test[1:])
        elif test[0] == "CMD-SHELL" and len(test) == 2:
            argv = ("/bin/sh", "-c", test[1])
        else:
            raise ContainerError(
                f"healthcheck test {list(test)!r}: expected CMD, CMD-SHELL or NONE"
            )
        given = {"interval": interval, "timeout": timeout, "start_period": start_period,
                 "start_interval": start_interval}  # fmt: skip
        timing = {key: value or _DEFAULTS[key] for key, value in given.items()}
        return cls(argv, retries=retries or _RETRIES, **timing)

    def delay(self, status: str, since_start: float) -> float:
        """Seconds from the end of a probe (or the start) to the next one, for a container in
        `status` that started `since_start` seconds ago."""
        if since_start < self.start_period and status == "starting":
            return self.start_interval
        return self.interval


@dataclass(frozen=True)
class Probe:
    """One probe's result: start and end (UTC, ISO 8601), exit code (-1: it could not run or
    exceeded its timeout) and the first 4 KB of its output."""

    start: str
    end: str
    exit_code: int
    output: str


@dataclass(frozen=True)
class Health:
    """A container's health: "starting", "healthy" or "unhealthy"; failures in a row; the last
    probes, oldest first."""

    status: str = "starting"
    failing_streak: int = 0
    log: tuple[Probe, ...] = ()

    def after(self, probe: Probe, config: HealthConfig, since_start: float) -> Health:
        """The health once `probe`, begun `since_start` seconds after the container started,
        ended (Docker's rules: a failure within the start period of a container still starting
        does not count)."""
        log = (*self.log, probe)[-LOG_ENTRIES:]
        if probe.exit_code == 0:
            return Health("healthy", 0, log)
        if self.status == "starting" and since_start < config.start_period:
            return replace(self, log=log)
        streak = self.failing_streak + 1
        return Health("unhealthy" if streak >= config.retries else self.status, streak, log)

    def restarted(self) -> Health:
        """At each start: starting again, the log kept."""
        return Health("starting", 0, self.log)

    def to_json(self) -> bytes:
        """As `docker inspect` shows State.Health."""
        log = [{"Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output}
               for p in self.log]  # fmt: skip
        document = {"Status": self.status, "FailingStreak": self.failing_streak, "Log": log}
        return json.dumps(document, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Health:
        doc: dict[str, Any] = json.loads(data)
        log = tuple(Probe(p["Start"], p["End"], int(p["ExitCode"]), p["Output"])
                    for p in doc.get("Log", ()))  # fmt: skip
        return cls(doc["Status"], int(doc.get("FailingStreak", 0)), log)
