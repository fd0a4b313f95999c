"""Restart policies, as Docker's: whether a container whose process ended is started again, and
after how long (the backoff of a crash loop). Pure: the supervisor acts on the decisions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from engine.container.launch import ContainerError

__all__ = ["Backoff", "Decision", "RestartPolicy", "decide"]

POLICIES: Final = ("no", "always", "on-failure", "unless-stopped")
FIRST_DELAY: Final = 0.1  # seconds before the second restart of a crash loop
MAX_DELAY: Final = 60.0
RESET_AFTER: Final = 10.0  # a run this long ends the crash loop: the next restart is immediate


@dataclass(frozen=True)
class RestartPolicy:
    """`name`: no, always, on-failure or unless-stopped; `max_retries`: on-failure's limit
    (0: none)."""

    name: str = "no"
    max_retries: int = 0

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        """Docker's form: no, always, unless-stopped, on-failure or on-failure:N."""
        name, colon, count = text.partition(":")
        if name not in POLICIES or (colon and (name != "on-failure" or not count.isdigit())):
            raise ContainerError(
                f"restart policy {text!r}: expected no, always, on-failure[:N] or unless-stopped"
            )
        return cls(name, int(count) if colon else 0)

    def __str__(self) -> str:
        return f"{self.name}:{self.max_retries}" if self.max_retries else self.name


@dataclass(frozen=True)
class Backoff:
    """The delays of a crash loop: the first restart is immediate, then 100 ms doubling up to
    1 min; a run of 10 s or more ends the loop."""

    delay: float | None = None  # before the last restart; None: no restart yet

    def next(self, ran_for: float) -> Backoff:
        """The backoff after a run of `ran_for` seconds: its delay is the next restart's."""
        if self.delay is None or ran_for >= RESET_AFTER:
            return Backoff(0.0)
        if self.delay == 0.0:
            return Backoff(FIRST_DELAY)
        return Backoff(min(self.delay * 2, MAX_DELAY))


@dataclass(frozen=True)
class Decision:
    """Restart after `delay` seconds, or not (`delay` None), and why; `backoff`: to keep for
    the container's next decision."""

    delay: float | None
    backoff: Backoff
    reason: str

    @property
    def restart(self) -> bool:
        return self.delay is not None


def decide(
    policy: RestartPolicy,
    exit_code: int | None,
    restarts: int,
    stopped: bool,
    ran_for: float,
    backoff: Backoff,
) -> Decision:
    """What to do about a container whose process ended with `exit_code` (None: unknown, as
    when its shim was killed too) after running `ran_for` seconds, having been restarted
    `restarts` times since it was last started on purpose. `stopped`: it was stopped on
    purpose (a stop or a kill), which no policy overrides until it is started again (Docker
    cancels a container's restarts on `docker stop` the same way; unless-stopped differs from
    always only when a daemon brings a host's containers back at boot, a step composer has
    not)."""
    if stopped:
        return Decision(None, backoff, "stopped on purpose")
    if policy.name == "no":
        return Decision(None, backoff, "restart policy no")
    if policy.name == "on-failure":
        if exit_code == 0:
            return Decision(None, backoff, "exited with code 0")
        if policy.max_retries and restarts >= policy.max_retries:
            return Decision(None, backoff, f"{policy}: restarted {restarts} times already")
    following = backoff.next(ran_for)
    assert following.delay is not None
    return Decision(following.delay, following, f"restart policy {policy}")
