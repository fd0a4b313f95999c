"""User and group names resolved the way a container sees them: in its own /etc/passwd and
/etc/group, read through a handle on its root (a symlink there cannot point at the host's)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from engine.errors import EngineError
from engine.linux import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

__all__ = ["Identity", "UserError", "resolve_identity"]

_LIMIT: Final = 4 << 20


class UserError(EngineError):
    """A user or group name the container does not know."""


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _read(root: int, path: str) -> list[list[str]]:
    try:
        fd = openat2(root, path, os.O_RDONLY, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        text = f.read(_LIMIT).decode(errors="replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def resolve_identity(rootfs: str, user: str, group_add: Sequence[str] = ()) -> Identity:
    """uid, gid, supplementary groups and home for `user` (`name`, `uid`, `name:group`,
    `uid:gid`, or empty for root), as Docker resolves them."""
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        passwd = _read(root, "etc/passwd")
        groups = _read(root, "etc/group")
    finally:
        os.close(root)
    name, _, group = (user or "0").partition(":")
    uid = _number(name)
    entry = next(
        (e for e in passwd if len(e) >= 7 and (e[0] == name if uid is None else e[2] == name)),
        None,
    )
    if uid is None:
        if entry is None:
            raise UserError(f"unable to find user {name}: no matching entries in passwd file")
        uid = int(entry[2])
    gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    home = entry[5] if entry is not None else "/"
    login = entry[0] if entry is not None else None
    if group:
        gid = _group_id(group, groups)
    extra = []
    if login is not None:  # the groups that list the user as a member, as login does
        extra = [
            int(g[2]) for g in groups if len(g) >= 4 and g[2].isdigit() and login in g[3].split(",")
        ]
    extra += [_group_id(g, groups) for g in group_add]
    # The primary group is among the supplementary ones too, as initgroups(3) makes it.
    return Identity(uid, gid, tuple(dict.fromkeys([gid, *extra])), home)


def _group_id(group: str, groups: list[list[str]]) -> int:
    number = _number(group)
    if number is not None:
        return number
    for entry in groups:
        if len(entry) >= 3 and entry[0] == group and entry[2].isdigit():
            return int(entry[2])
    raise UserError(f"unable to find group {group}: no matching entries in group file")
