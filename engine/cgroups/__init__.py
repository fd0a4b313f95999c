"""cgroup drivers: v1 (a hierarchy per controller) and v2 (unified), chosen at run time."""

from __future__ import annotations

from pathlib import Path

from engine.cgroups.base import CgroupDriver, CgroupError, CgroupLimits, CgroupStats
from engine.cgroups.v1 import V1
from engine.cgroups.v2 import V2

__all__ = ["V1", "V2", "CgroupDriver", "CgroupError", "CgroupLimits", "CgroupStats", "detect"]


def detect(root: Path = Path("/sys/fs/cgroup")) -> CgroupDriver:
    """The driver for the host whose cgroups are mounted at `root`: v2 when it is a unified
    hierarchy (it has cgroup.controllers), else v1 (hybrid hosts included)."""
    if (root / "cgroup.controllers").exists():
        return V2(root)
    return V1(root)
