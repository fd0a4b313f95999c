"""The stack files `composer serve` applies: found in a directory (or recorded in the state
store for the stacks up on this host), fingerprinted by content, and loaded.

In a directory, each `*.yaml` / `*.yml` file is one stack, and so is each subdirectory holding
a compose file (the first of compose.yaml, compose.yml, docker-compose.yaml,
docker-compose.yml, stack.yaml: its project directory is that subdirectory). Hidden names
(starting with a dot) are skipped. A top-level file without `name:` is named after the file
(`web.yaml` → project `web`): its directory is shared by the others.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from composer.errors import ComposerError, UsageError

if TYPE_CHECKING:
    from composer.config.loader import Stack
    from composer.state import StackRecord

__all__ = [
    "Seen",
    "StackSource",
    "directory_sources",
    "fingerprint",
    "load_source",
    "newer_than",
    "recorded_sources",
    "served_from",
    "survey",
]

_SUFFIXES: Final = (".yaml", ".yml")


@dataclass(frozen=True)
class StackSource:
    """Where one stack comes from: its files and project directory; `project`, the name it
    must have (a stack recorded in the state store), else the file's `name:`, else
    `default_name`."""

    files: tuple[Path, ...]
    directory: Path
    project: str | None = None
    default_name: str | None = None

    @property
    def key(self) -> str:
        """What identifies the source (its first file)."""
        return str(self.files[0])

    def watched(self) -> dict[Path, frozenset[str]]:
        """The directories to watch for changes of this source, and the names in each."""
        found: dict[Path, frozenset[str]] = {self.directory: frozenset({".env"})}
        for path in self.files:
            found[path.parent] = found.get(path.parent, frozenset()) | {path.name}
        return found


def _normal(path: Path) -> Path:
    """An absolute path spelled as the loader records it (not resolving symlinks)."""
    return Path(os.path.normpath(path.absolute()))


def directory_sources(directory: Path) -> list[StackSource]:
    """The stacks of `directory`, in name order; OSError when it cannot be listed."""
    from composer.config.loader import DEFAULT_FILES

    directory = _normal(directory)
    found = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        path = directory / entry.name
        if entry.is_file() and entry.name.endswith(_SUFFIXES):
            found.append(StackSource((path,), directory, default_name=_name_from(path.stem)))
        elif entry.is_dir():
            compose = next((path / n for n in DEFAULT_FILES if (path / n).is_file()), None)
            if compose is not None:
                found.append(StackSource((compose,), path))
    return found


def _name_from(stem: str) -> str:
    """A project name made of a file name, by the rule compose applies to directory names."""
    return re.sub(r"[^a-z0-9_-]", "", stem.lower()).lstrip("_-")


def recorded_sources(records: Iterable[StackRecord]) -> list[StackSource]:
    """The stacks up on this host, from the files each was brought up from."""
    return [
        StackSource(tuple(Path(f) for f in r.files), Path(r.directory), project=r.project)
        for r in records
        if r.files
    ]


def served_from(record: StackRecord, directory: Path) -> bool:
    """Whether a stack up on this host was brought up from `directory`'s stack files (one
    of its files or of its subdirectories')."""
    top = _normal(directory)
    return bool(record.files) and all(
        Path(f).parent == top or Path(f).parent.parent == top for f in record.files
    )


def fingerprint(source: StackSource) -> str | None:
    """A hash of the source's content (its files and its project directory's .env); None
    when a file cannot be read (it was just removed, for example)."""
    digest = hashlib.sha256()
    env = source.directory / ".env"
    for path in (*source.files, *([env] if env.is_file() else [])):
        try:
            data = path.read_bytes()
        except OSError:
            return None
        digest.update(f"{path}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def newer_than(source: StackSource, when: str) -> bool:
    """Whether a file of the source changed after `when` (a time as the state store records
    it); True when one cannot be read."""
    try:
        since = datetime.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return True
    env = source.directory / ".env"
    try:
        changed = max(p.stat().st_mtime for p in (*source.files, *([env] if env.is_file() else [])))
    except OSError:
        return True
    return changed > since


def load_source(source: StackSource, environ: Mapping[str, str]) -> Stack:
    """Load the source's stack (StackError with every problem, UsageError, ComposerError)."""
    from composer.config.loader import LoadOptions, load_stack

    options = LoadOptions(files=source.files, project_name=source.project,
                          project_directory=source.directory, environ=environ,
                          working_directory=source.directory)  # fmt: skip
    stack = load_stack(options)
    if source.project is None and source.default_name is not None and "name" not in stack.raw:
        if not source.default_name:
            raise UsageError(f"{source.key}: cannot name its project after the file: give it a "
                             "`name:`")  # fmt: skip
        from dataclasses import replace

        stack = load_stack(replace(options, project_name=source.default_name))
    return stack


@dataclass(frozen=True)
class Seen:
    """A source as found: its content hash; when that is not the one known, what loading it
    gave (the stack, or the ComposerError — a StackError with every problem — saying why
    not), and whether the stack is up from these files, unchanged since."""

    source: StackSource
    fingerprint: str
    loaded: Stack | ComposerError | None
    current: bool = False


def survey(
    sources: Iterable[StackSource],
    known: Mapping[str, str],
    records: Mapping[str, StackRecord],
    environ: Mapping[str, str],
) -> list[Seen]:
    """Each source that can be read, loaded when its content is not the one `known` (source
    key → fingerprint); `records`: the stacks up on this host, by project."""
    seen = []
    for source in sources:
        print_ = fingerprint(source)
        if print_ is None:
            continue  # being replaced, or gone: the next look sees which
        if print_ == known.get(source.key):
            seen.append(Seen(source, print_, None))
            continue
        try:
            stack = load_source(source, environ)
        except ComposerError as exc:
            seen.append(Seen(source, print_, exc))
            continue
        record = records.get(stack.project.name)
        current = (record is not None and record.files == tuple(map(str, stack.files))
                   and not newer_than(source, record.updated))  # fmt: skip
        seen.append(Seen(source, print_, stack, current))
    return seen
