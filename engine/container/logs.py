"""A container's log: what it writes to stdout and stderr, timestamped and size-rotated.

The container appends to two plain files in its directory (`stdout`, `stderr`), so nothing it
prints is lost or blocks when no reader is there (a pipe would lose its reader with the
supervisor, and the writer would get SIGPIPE). A pump (the stack's supervisor) moves complete
lines into `container.log` (JSON lines as docker's json-file driver writes them, rotated at a
size), records how far it got in `log-offsets`, and frees the disk space of what it moved by
punching a hole in the raw file: the raw files keep their size but not their blocks.

A pump holds an exclusive lock on the container's directory (flock) and a reader a shared one,
so a reader sees the log, the offsets and the raw files as one pump left them: it shows every
line once, whether a pump moved it before, after or while it read.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from engine.linux import punch_hole

__all__ = ["LogLine", "LogReader", "pump", "read_log"]

STREAMS: Final = ("stdout", "stderr")
_PARTIAL_LIMIT: Final = 16 << 10  # a line this long without a newline is logged as it is
_READ_LIMIT: Final = 4 << 20
_BLOCK: Final = 4096


@dataclass(frozen=True)
class LogLine:
    time: str
    stream: str
    text: str


def _now() -> str:
    return (
        datetime.datetime.now(datetime.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def _offsets(directory: Path) -> dict[str, int]:
    try:
        data = json.loads((directory / "log-offsets").read_bytes())
        return {stream: int(data.get(stream, 0)) for stream in STREAMS}
    except (FileNotFoundError, ValueError):
        return dict.fromkeys(STREAMS, 0)


def _lines(data: bytes, final: bool) -> tuple[list[bytes], int]:
    """Complete lines of `data`, and how many bytes they take (a long partial line counts)."""
    end = data.rfind(b"\n") + 1
    if end == 0 and (final or len(data) >= _PARTIAL_LIMIT):
        end = len(data)
    return data[:end].splitlines(keepends=True), end


def _unpumped(directory: Path, stream: str, offset: int) -> bytes | None:
    """What the container wrote to `stream` from `offset` on (at most 4 MiB); None when it
    has no such file."""
    try:
        with open(directory / stream, "rb") as raw:
            raw.seek(offset)
            return raw.read(_READ_LIMIT)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _locked(directory: Path, operation: int) -> Iterator[None]:
    """Hold a lock on the container's directory (LOCK_EX to pump, LOCK_SH to read)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


def pump(directory: Path, max_size: int = 10 << 20, keep: int = 3, final: bool = False) -> int:
    """Move what the container wrote since the last pump into its log; the number of lines.
    `final`: the container has ended, so a last line without a newline is logged too."""
    with _locked(directory, fcntl.LOCK_EX):
        return _pump(directory, max_size, keep, final)


def _pump(directory: Path, max_size: int, keep: int, final: bool) -> int:
    offsets = _offsets(directory)
    entries: list[bytes] = []
    moved = dict(offsets)
    for stream in STREAMS:
        data = _unpumped(directory, stream, offsets[stream])
        if data is None:
            continue
        lines, used = _lines(data, final)
        when = _now()
        for line in lines:
            text = line.decode(errors="replace")
            entries.append(json.dumps({"log": text, "stream": stream, "time": when}).encode())
        moved[stream] = offsets[stream] + used
    if not entries:
        return 0
    log = directory / "container.log"
    with open(log, "ab") as out:
        out.write(b"\n".join(entries) + b"\n")
        size = out.tell()
    tmp = directory / ".log-offsets.tmp"
    tmp.write_text(json.dumps(moved))
    os.replace(tmp, directory / "log-offsets")
    for stream in STREAMS:  # free the blocks of what is now in the log (whole blocks only)
        start = offsets[stream] // _BLOCK * _BLOCK
        end = moved[stream] // _BLOCK * _BLOCK
        if end > start:
            fd = os.open(directory / stream, os.O_WRONLY | os.O_CLOEXEC)
            try:
                with contextlib.suppress(OSError):
                    punch_hole(fd, 0, end)
            finally:
                os.close(fd)
    if size >= max_size:
        _rotate(log, keep)
    return len(entries)


def _rotate(log: Path, keep: int) -> None:
    for n in range(keep - 1, 0, -1):
        older = log.with_name(f"{log.name}.{n}")
        if older.exists():
            os.replace(older, log.with_name(f"{log.name}.{n + 1}"))
    os.replace(log, log.with_name(f"{log.name}.1"))
    with contextlib.suppress(FileNotFoundError):
        log.with_name(f"{log.name}.{keep + 1}").unlink()


def read_log(directory: Path, keep: int = 3) -> Iterator[LogLine]:
    """Every line of the log, oldest first, then what is still waiting in the raw files (not
    pumped yet: it is shown with the time it is read)."""
    reader = LogReader(directory, keep)
    try:
        lines = reader.read(final=True)
    finally:
        reader.close()
    yield from lines


class LogReader:
    """A container's output as it grows: each call of `read` returns the lines written since
    the previous one (everything, the first time), from the log and then from the raw files,
    each line once. Used by a follower (`logs -f`) as by a one-time reader."""

    def __init__(self, directory: Path, keep: int = 3) -> None:
        self.directory = directory
        self.keep = keep
        self._log: BinaryIO | None = None  # the log file being read, at what was read
        self._covered = dict.fromkeys(STREAMS, 0)  # raw offsets the log covered last time
        self._shown = dict.fromkeys(STREAMS, 0)  # raw offsets shown (from the log or raw)
        self._finished: int | None = None  # the inode of the last log file read to its end

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def read(self, final: bool = False) -> list[LogLine]:
        """The new lines; `final`: the container has ended, so a last line without a
        newline is returned too. None at all once the container's directory is gone."""
        try:
            with _locked(self.directory, fcntl.LOCK_SH):
                return self._read(final)
        except FileNotFoundError:
            self.close()
            return []

    def _read(self, final: bool) -> list[LogLine]:
        covered = _offsets(self.directory)
        lines = []
        skip = {s: self._shown[s] - self._covered[s] for s in STREAMS}
        for entry in self._new_entries():
            size = len(entry.text.encode())
            if skip.get(entry.stream, 0) > 0:  # shown already, read from the raw file
                skip[entry.stream] -= size
                continue
            lines.append(entry)
        when = _now()
        for stream in STREAMS:
            self._shown[stream] = max(self._shown[stream], covered[stream])
            self._covered[stream] = covered[stream]
            data = _unpumped(self.directory, stream, self._shown[stream]) or b""
            complete, used = (data.splitlines(True), len(data)) if final else _lines(data, False)
            lines += [LogLine(when, stream, line.decode(errors="replace")) for line in complete]
            self._shown[stream] += used
        return lines

    def _new_entries(self) -> Iterator[LogLine]:
        """The log's entries not read yet: the rest of the file being read, then the files
        written since (rotated ones too, when it rotated more than once meanwhile)."""
        current = self.directory / "container.log"
        if self._log is not None:
            yield from _entries(self._log)
            if _inode(current) == os.fstat(self._log.fileno()).st_ino:
                return
            self._finished = os.fstat(self._log.fileno()).st_ino  # rotated: read to its end
            self.close()
        files = [self.directory / f"container.log.{n}" for n in range(self.keep, 0, -1)]
        files.append(current)
        inodes = [_inode(path) for path in files]
        if self._finished is not None and self._finished in inodes:
            files = files[inodes.index(self._finished) + 1 :]
        for path in files:
            try:
                handle = open(path, "rb")  # kept open while it is the current file
            except FileNotFoundError:
                continue
            yield from _entries(handle)
            if path == current:
                self._log = handle
            else:
                self._finished = os.fstat(handle.fileno()).st_ino
                handle.close()


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _entries(handle: BinaryIO) -> Iterator[LogLine]:
    for raw in handle:
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(raw)
            yield LogLine(entry["time"], entry["stream"], entry["log"])
