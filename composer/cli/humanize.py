"""Times and states in the words docker uses ("Up 3 seconds", "Exited (1) 2 minutes ago"),
and times as docker's --since and --until read them."""

from __future__ import annotations

import datetime
import re
import time
from typing import TYPE_CHECKING, Final

from composer.errors import UsageError

if TYPE_CHECKING:
    from engine.container.runtime import State

__all__ = ["health_of", "human_duration", "parse_time", "seconds_since", "status_text", "timestamp"]

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def human_duration(seconds: float) -> str:
    """A duration as docker words it (its units.HumanDuration): "Less than a second",
    "3 seconds", "About a minute", "5 minutes", "About an hour", "3 hours", "2 days"…"""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def timestamp(text: str) -> float:
    """Seconds since the epoch of a recorded time (ISO 8601, e.g. 2026-01-02T03:04:05.6Z)."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def seconds_since(text: str) -> float:
    """How long ago a recorded time was (never negative; 0 when there is none)."""
    if not text:
        return 0.0
    try:
        return max(0.0, time.time() - timestamp(text))
    except ValueError:
        return 0.0


def health_of(state: State) -> str:
    """The health of a container with a health check ("starting", "healthy", "unhealthy"),
    "" without one (read defensively: the runtime may say it as text or as a record)."""
    health = getattr(state, "health", None)
    if health is None:
        return ""
    status = health if isinstance(health, str) else getattr(health, "status", "")
    return "" if status in (None, "none") else str(status)


def status_text(state: State) -> str:
    """A container's state as `docker ps` words it: "Up 3 seconds (healthy)", "Up 2 minutes
    (Paused)", "Restarting (1) 5 seconds ago", "Exited (0) 1 second ago", "Created"."""
    code = state.exit_code if state.exit_code is not None else 0
    if state.status == "paused":
        return f"Up {human_duration(seconds_since(state.started_at))} (Paused)"
    if state.status == "restarting":
        return f"Restarting ({code}) {human_duration(seconds_since(state.finished_at))} ago"
    if state.status == "running":
        health = health_of(state)
        shown = f" (health: {health})" if health == "starting" else f" ({health})" if health else ""
        return f"Up {human_duration(seconds_since(state.started_at))}{shown}"
    if state.status == "dead":
        return "Dead"
    if state.status == "created" or not state.started_at:
        return "Created"
    if not state.finished_at:
        return f"Exited ({code})"
    return f"Exited ({code}) {human_duration(seconds_since(state.finished_at))} ago"


def parse_time(text: str, option: str, now: float | None = None) -> float:
    """A time given to --since or --until, in seconds since the epoch: RFC 3339 (a date, a
    date and time, with or without a zone: UTC when without), a Unix timestamp, or a duration
    before now ("10m", "1h30m", "42s")."""
    now = time.time() if now is None else now
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    if value and _DURATION.sub("", value) == "":
        return now - sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(value))
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected a time (2006-01-02T15:04:05Z), a Unix timestamp or "
            "a duration before now (10m, 1h30m)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()
