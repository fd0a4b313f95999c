"""A container's log: what it writes to stdout and stderr, timestamped and size-rotated.

The container appends to two plain files in its directory (`stdout`, `stderr`), so nothing it
prints is lost or blocks when no reader is there (a pipe would lose its reader with the
supervisor, and the writer would get SIGPIPE). A pump (the stack's supervisor) moves complete
lines into `container.log` (JSON lines as docker's json-file driver writes them, rotated at a
size), records how far it got in `log-offsets`, and frees the disk space of what it moved by
punching a hole in the raw file: the raw files keep their size but not their blocks.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from engine.linux import punch_hole

__all__ = ["LogLine", "pump", "read_log"]

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


def pump(directory: Path, max_size: int = 10 << 20, keep: int = 3, final: bool = False) -> int:
    """Move what the container wrote since the last pump into its log; the number of lines.
    `final`: the container has ended, so a last line without a newline is logged too."""
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
    files = [directory / f"container.log.{n}" for n in range(keep, 0, -1)]
    for path in [*files, directory / "container.log"]:
        try:
            with open(path, "rb") as f:
                for raw in f:
                    with contextlib.suppress(ValueError, KeyError):
                        entry = json.loads(raw)
                        yield LogLine(entry["time"], entry["stream"], entry["log"])
        except FileNotFoundError:
            continue
    offsets = _offsets(directory)
    when = _now()
    for stream in STREAMS:
        data = _unpumped(directory, stream, offsets[stream]) or b""
        for line in data.splitlines(keepends=True):
            yield LogLine(when, stream, line.decode(errors="replace"))
