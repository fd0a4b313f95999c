"""Directories watched with inotify for files saved, renamed or removed in them — what wakes
`composer serve` — each with the names that matter in it (or all but hidden ones)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Final

import anyio

__all__ = ["DirectoryWatch"]

# IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_DELETE_SELF,
# IN_MOVE_SELF: a file saved in place or by rename, or gone — never IN_MODIFY (half a write).
_MASK: Final = 0x0008 | 0x0040 | 0x0080 | 0x0100 | 0x0200 | 0x0400 | 0x0800
_IN_IGNORED: Final = 0x8000  # the watch is gone (its directory was)


class DirectoryWatch:
    """Watches on directories, made equal to the wanted ones by `watch`."""

    def __init__(self) -> None:
        from inotify_simple import INotify  # type: ignore[import-untyped]

        self._inotify = INotify(nonblocking=True)
        self._watches: dict[Path, int] = {}
        self._names: dict[int, frozenset[str] | None] = {}  # watch → names that matter

    def close(self) -> None:
        self._inotify.close()

    def watch(self, wanted: dict[Path, frozenset[str] | None]) -> None:
        """Watch exactly these directories; in each, changes to the names given matter (None:
        to every name but hidden ones, .env excepted). A directory that is not there is
        left out (watch again later)."""
        for path in [p for p in self._watches if p not in wanted]:
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(self._watches[path])
            self._names.pop(self._watches.pop(path), None)
        for path, names in wanted.items():
            if path not in self._watches:
                try:
                    self._watches[path] = self._inotify.add_watch(str(path), _MASK)
                except OSError:
                    continue
            self._names[self._watches[path]] = names

    async def changed(self) -> None:
        """Return once something that matters changed."""
        while True:
            await anyio.wait_readable(self._inotify.fileno())
            matters = False
            for event in self._inotify.read(timeout=0):
                matters = matters or self._matters(event.wd, event.name)
                if event.mask & _IN_IGNORED:
                    self._names.pop(event.wd, None)
                    self._watches = {p: w for p, w in self._watches.items() if w != event.wd}
            if matters:
                return

    def _matters(self, watch: int, name: str) -> bool:
        names = self._names.get(watch)
        if not name:
            return True  # the directory itself
        if names is not None:
            return name in names
        return not name.startswith(".") or name == ".env"  # not an editor's swap file
