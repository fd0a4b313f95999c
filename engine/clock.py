"""Times as composer records them: UTC, ISO 8601, with a Z."""

from __future__ import annotations

import datetime

__all__ = ["utc_now"]


def utc_now() -> str:
    """Now, e.g. 2026-11-29T05:02:08.123456Z."""
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
