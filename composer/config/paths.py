"""Relative paths in a stack file become absolute, against the directory that declares them.

Paths in the files given with `-f` are relative to the project directory; paths in a file
reached through `extends` or `include` are relative to that file's own directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from composer.config.yamlio import MarkedMap, MarkedSeq

__all__ = ["absolute", "resolve_paths", "resolve_service_paths"]


def absolute(path: str, base: Path, home: str | None) -> str:
    """`~/x` against the user's home, `./x` against `base`; absolute paths stay as they are."""
    if path == "~" or path.startswith("~/"):
        path = (home or os.path.expanduser("~")) + path[1:]
    if os.path.isabs(path):
        return os.path.normpath(path)
    return os.path.normpath(os.path.join(base, path))


def _is_remote(context: str) -> bool:
    return "://" in context or context.startswith(("git@", "github.com/"))


def resolve_service_paths(service: Any, base: Path, home: str | None) -> None:
    """Make one service's build context, env files and bind sources absolute, in place."""
    if not isinstance(service, MarkedMap):
        return
    build = service.get("build")
    if isinstance(build, str) and not _is_remote(build):
        service["build"] = absolute(build, base, home)
    elif isinstance(build, MarkedMap):
        context = build.get("context", ".")
        if isinstance(context, str) and not _is_remote(context):
            build["context"] = absolute(context, base, home)
    env_files = service.get("env_file")
    if isinstance(env_files, str):
        service["env_file"] = absolute(env_files, base, home)
    elif isinstance(env_files, MarkedSeq):
        for i, item in enumerate(env_files):
            if isinstance(item, str):
                env_files[i] = absolute(item, base, home)
            elif isinstance(item, MarkedMap) and isinstance(item.get("path"), str):
                item["path"] = absolute(item["path"], base, home)
    volumes = service.get("volumes")
    if isinstance(volumes, MarkedSeq):
        for i, item in enumerate(volumes):
            volumes[i] = _volume(item, base, home)


def _volume(item: Any, base: Path, home: str | None) -> Any:
    if isinstance(item, str):
        source, sep, rest = item.partition(":")
        if sep and source.startswith((".", "~")):
            return absolute(source, base, home) + sep + rest
        return item
    if isinstance(item, MarkedMap) and item.get("type") == "bind":
        bind_source = item.get("source")
        if isinstance(bind_source, str) and not os.path.isabs(bind_source):
            item["source"] = absolute(bind_source, base, home)
    return item


def resolve_paths(tree: MarkedMap, base: Path, home: str | None) -> None:
    """Every relative path of a file's services, configs and secrets, made absolute in place."""
    services = tree.get("services")
    if isinstance(services, MarkedMap):
        for service in services.values():
            resolve_service_paths(service, base, home)
    for section in ("configs", "secrets"):
        entries = tree.get(section)
        if isinstance(entries, MarkedMap):
            for entry in entries.values():
                if isinstance(entry, MarkedMap) and isinstance(entry.get("file"), str):
                    entry["file"] = absolute(entry["file"], base, home)
