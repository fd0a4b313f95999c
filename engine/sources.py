"""The code of a package as it is on disk now, for a process that loaded it once and serves
others (composer's fork server): it serves only requests made by the same code."""

from __future__ import annotations

import os

__all__ = ["source_listing"]


def source_listing(package: str) -> list[str]:
    """`PATH SIZE MTIME_NS` of each module of the package in the directory `package`, in a
    fixed order; a few hundred microseconds. Imports nothing: the
    composer program reads it before it loads anything else."""
    lines = []
    for directory, subdirectories, files in os.walk(package):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(directory, file)
                info = os.stat(path)
                lines.append(f"{path} {info.st_size} {info.st_mtime_ns}")
    return lines
