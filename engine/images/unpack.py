"""Unpacking a layer archive from a stranger into its own directory, and nowhere else.

Each entry is read on its own and created relative to a handle on the layer root: parent
directories are opened with openat2(RESOLVE_IN_ROOT), so `..`, absolute paths and symlinks
(planted earlier in the same archive) resolve inside the layer, and the last component is made
with the *at calls without following links. Whiteouts become what overlayfs reads: `.wh.NAME`
a 0/0 character device, `.wh..wh..opq` the `trusted.overlay.opaque` attribute.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol, Self, cast

from engine.errors import LayerError
from engine.files import discard_tree, remove_tree_at
from engine.linux import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

__all__ = [
    "LayerStats",
    "decompressed",
    "unpack_layer",
]

WHITEOUT_PREFIX: Final = ".wh."
OPAQUE_MARKER: Final = ".wh..wh..opq"
_OPAQUE_XATTR: Final = "trusted.overlay.opaque"
_XATTR_PAX: Final = "SCHILY.xattr."
_CHUNK: Final = 1 << 20
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_DIR_FD_CACHE: Final = 128
_RESOLVE: Final = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_ZSTD_FRAME: Final = 0xFD2FB528
_ZSTD_SKIPPABLE: Final = 0x184D2A50  # the low four bits are free
# What tarfile raises at the end of an archive: a zero block, or no data at a block boundary.
_END_OF_ARCHIVE: Final[tuple[type[Exception], ...]] = (
    tarfile.EOFHeaderError,  # type: ignore[attr-defined]
    tarfile.EmptyHeaderError,  # type: ignore[attr-defined]
)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class LayerStats:
    """What an unpacked layer held: its diff id (sha256 of the uncompressed tar) and sizes."""

    diff_id: str
    entries: int
    size: int


class _HashingReader(io.RawIOBase):
    """Passes reads through and hashes every byte, so the diff id needs no second pass."""

    def __init__(self, inner: Readable) -> None:
        self._inner = inner
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        return n

    def drain(self) -> None:
        while self.readinto(memoryview(bytearray(_CHUNK))):
            pass


def decompressed(stream: Readable) -> Readable:
    """The uncompressed bytes of a layer blob: gzip, zstd or a plain tar, told by its magic."""
    head = stream.read(4)
    rest = _Prefixed(head, stream)
    if head[:2] == _GZIP_MAGIC:
        return _Gunzip(rest)
    if head == _ZSTD_MAGIC:
        return _Zstd(rest)
    return rest


class _Gunzip(io.RawIOBase):
    """gzip (all members) decompressed in a thread of its own: zlib lets go of the interpreter
    lock while it works, so the tar parsing and file writing go on meanwhile, as `tar -xzf`
    runs gzip in a second process. zlib checks each member's CRC and length itself."""

    def __init__(self, source: Readable) -> None:
        import queue
        import threading

        self._source = source
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
        self._pending = b""
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gunzip", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            decompressor = zlib.decompressobj(31)
            started = False
            while not self._stop.is_set():
                data = self._source.read(_CHUNK)
                if not data:
                    if started and not decompressor.eof:
                        raise EOFError("Compressed file ended before the end-of-stream marker")
                    self._put(None)
                    return
                while data:
                    started = True
                    out = decompressor.decompress(data)
                    if out and not self._put(out):
                        return
                    if decompressor.eof:  # the next member, if any, starts right after
                        data = decompressor.unused_data
                        decompressor = zlib.decompressobj(31)
                        started = bool(data)
                    else:
                        data = b""
        except BaseException as exc:
            self._put(exc)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._done:
            item = self._queue.get()
            if item is None:
                self._done = True
            elif isinstance(item, BaseException):
                self._done = True
                raise item
            else:
                self._pending = item
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        super().close()


class _Zstd(io.RawIOBase):
    """A zstd stream decompressed, that fails when the stream is cut inside a frame (the
    decompressor itself just stops there, as if the data had ended)."""

    def __init__(self, source: Readable) -> None:
        import zstandard  # only layers compressed with zstd pay for the import

        self._frames = _ZstdFrames()
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], _Observed(source, self._frames.feed)), read_size=_CHUNK
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._reader.readinto(buffer)
        if not n and len(buffer) and not self._frames.whole:
            raise EOFError("the zstd stream ends inside a frame")
        return n


class _Observed:
    """A stream whose bytes are shown to `see` as they are read."""

    def __init__(self, inner: Readable, see: Callable[[bytes], None]) -> None:
        self._inner = inner
        self._see = see

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self._see(data)
        return data


class _ZstdFrames:
    """Follows the layout of a zstd stream (RFC 8878) as its bytes go by, passing over block
    contents unread, to tell a stream that ends between frames from one cut inside a frame."""

    def __init__(self) -> None:
        self._field = bytearray()  # the bytes read so far of the field being read
        self._want = 4  # its length
        self._step = "magic"  # what it is: a magic number, a frame header byte, a block header
        self._skip = 0  # bytes to pass over before the next field
        self._checksum = 0  # bytes of checksum after the last block of the current frame

    @property
    def whole(self) -> bool:
        return self._step == "magic" and not self._field and not self._skip

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                n = min(self._skip, end - pos)
                self._skip -= n
                pos += n
                continue
            n = min(self._want - len(self._field), end - pos)
            self._field += data[pos : pos + n]
            pos += n
            if len(self._field) == self._want:
                value = int.from_bytes(self._field, "little")
                self._field.clear()
                self._next(value)

    def _next(self, value: int) -> None:
        if self._step == "magic":
            if value == _ZSTD_FRAME:
                self._step, self._want = "descriptor", 1
            elif value & ~0xF == _ZSTD_SKIPPABLE:
                self._step, self._want = "skippable", 4
            else:
                raise ValueError("the zstd stream holds something that is not a zstd frame")
        elif self._step == "skippable":  # its length, then that many bytes
            self._skip, self._step, self._want = value, "magic", 4
        elif self._step == "descriptor":  # the frame header descriptor, then the rest of it
            single_segment = value & 0x20
            content_size = (1 if single_segment else 0, 2, 4, 8)[value >> 6]
            window = 0 if single_segment else 1
            self._skip = window + (0, 1, 2, 4)[value & 3] + content_size
            self._checksum = 4 if value & 0x04 else 0
            self._step, self._want = "block", 3
        else:  # a block header: last-block bit, type, size; an RLE block holds one byte
            kind, size = (value >> 1) & 3, value >> 3
            self._skip = 1 if kind == 1 else size
            if value & 1:
                self._skip += self._checksum
                self._step, self._want = "magic", 4


class _Prefixed(io.RawIOBase):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, tail: Readable) -> None:
        self._head = head
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._tail.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._tail.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._tail.read(size)


# Entry types the fast header path takes (regular, hard link, symlink, devices, directory,
# fifo); long names, pax and sparse headers take tarfile's own.
_PLAIN_TYPES = frozenset({b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6"})
_NUMERIC_FIELDS = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (148, 156),
                   (329, 337), (337, 345))  # fmt: skip


def _octal(field: bytes) -> int:
    """A header's octal number (base-256 numbers, first byte 0x80 or 0xff, fail here)."""
    digits = field.split(b"\0", 1)[0].strip()
    if not digits:
        return 0
    if not digits.isdigit():  # bytes.isdigit: ASCII digits only
        raise ValueError(field)
    return int(digits, 8)


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile takes a header it cannot read (cut short, a bad checksum, garbage) for the end of
    the archive unless it is the first one, so a layer cut or damaged there would unpack as if
    complete. Here only a zero block, or the data ending at a block boundary, ends it."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        """tarfile's parser, with a fast path for the plain headers nearly every layer holds
        (a third of the time per entry); anything unusual goes the standard way."""
        buf = bytes(buf)
        if len(buf) == tarfile.BLOCKSIZE and buf[156:157] in _PLAIN_TYPES and buf[345:346] == b"\0":
            try:
                fields = [_octal(buf[a:b]) for a, b in _NUMERIC_FIELDS]
            except ValueError:
                fields = []
            if fields and fields[5] == sum(buf) - sum(buf[148:156]) + 256:
                obj = cls()
                obj.name = buf[0:100].split(b"\0", 1)[0].decode(encoding, errors)
                obj.mode, obj.uid, obj.gid, obj.size, obj.mtime, obj.chksum = fields[:6]
                obj.devmajor, obj.devminor = fields[6:]
                obj.type = buf[156:157]
                obj.linkname = buf[157:257].split(b"\0", 1)[0].decode(encoding, errors)
                obj.uname = buf[265:297].split(b"\0", 1)[0].decode(encoding, errors)
                obj.gname = buf[297:329].split(b"\0", 1)[0].decode(encoding, errors)
                if obj.type == tarfile.AREGTYPE and obj.name.endswith("/"):
                    obj.type = tarfile.DIRTYPE
                if obj.type == tarfile.DIRTYPE:
                    obj.name = obj.name.rstrip("/")
                return obj
        return super().frombuf(buf, encoding, errors)

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except _END_OF_ARCHIVE:
            raise
        except tarfile.HeaderError as exc:
            raise tarfile.ReadError(f"bad header at byte {tarfile_.offset}: {exc}") from exc


def unpack_layer(stream: Readable, dest: Path, *, what: str) -> LayerStats:
    """Unpack the (possibly compressed) layer archive `stream` into the empty directory `dest`.

    `what` names the layer in errors (image and digest). On any error `dest` is removed, so a
    layer is either complete or absent.
    """
    source = decompressed(stream)
    try:
        hashing = _HashingReader(source)
        buffered = io.BufferedReader(hashing, buffer_size=_CHUNK)
        with _Unpacker(dest, what) as unpacker:
            with tarfile.open(
                fileobj=buffered, mode="r|", errorlevel=2, tarinfo=_StrictTarInfo
            ) as archive:
                while (member := archive.next()) is not None:
                    unpacker.add(member, archive)
                    # tarfile keeps every member it read; a layer of a million files would
                    # keep them all in memory for nothing.
                    archive.members.clear()  # type: ignore[attr-defined]
            unpacker.finish()
        hashing.drain()  # trailing padding after the end-of-archive blocks counts in the digest
        buffered.read()
        hashing.drain()
    except LayerError:
        discard_tree(dest)
        raise
    except (
        tarfile.TarError,
        EOFError,
        zlib.error,
        gzip.BadGzipFile,
        OSError,
        ValueError,
        OverflowError,  # numbers in headers (a time, an owner) too large for the system calls
    ) as exc:
        discard_tree(dest)
        raise LayerError(f"{what}: the layer archive is malformed or truncated: {exc}") from exc
    except Exception as exc:  # zstandard's errors have no common base we can import lazily
        discard_tree(dest)
        if type(exc).__module__.startswith("zstandard"):
            raise LayerError(f"{what}: the layer archive is malformed or truncated: {exc}") from exc
        raise
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()  # the gzip thread stops, even when the archive was left half read
    return LayerStats("sha256:" + hashing.sha256.hexdigest(), unpacker.entries, unpacker.size)


def _clean(name: str, what: str) -> tuple[str, ...]:
    """The components of an entry name inside the layer; `..` may not climb above the root."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise LayerError(f"{what}: entry {name!r} points outside the layer; refused")
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


class _Unpacker:
    """Creates entries one by one relative to an fd on the layer root."""

    def __init__(self, dest: Path, what: str) -> None:
        self.what = what
        self.entries = 0
        self.size = 0
        # Files are made by root:root here; a setgid directory would give them its group, so
        # once one exists in the layer every file is chowned (it is skipped for root:root).
        self._own = (os.geteuid(), os.getegid())
        self._setgid_seen = False
        self._root = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._dirs: dict[tuple[str, ...], int] = {}
        # Directory times, set last: (device, inode) -> (where it was made, mtime in ns).
        self._dir_times: dict[tuple[int, int], tuple[tuple[str, ...], int]] = {}

    def __enter__(self) -> _Unpacker:
        return self

    def __exit__(self, *exc: object) -> None:
        self._forget()
        os.close(self._root)

    # -- directories -------------------------------------------------------------------------

    def _forget(self, keep: tuple[str, ...] | None = None) -> None:
        """Close the cached directory handles but that of `keep` (which the caller holds)."""
        for key in [k for k in self._dirs if k != keep]:
            os.close(self._dirs.pop(key))

    def _dir(self, parts: tuple[str, ...], *, make: bool = True) -> int:
        """An O_PATH handle on the directory `parts`, resolved inside the root; with `make`, the
        directories missing on the way are made. Raises FileNotFoundError without `make`."""
        if not parts:
            return self._root
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        try:
            fd = self._open(parts)
        except FileNotFoundError:
            if not make:
                raise
            fd = self._make(parts)
        self._dirs[parts] = fd
        return fd

    def _open(self, parts: tuple[str, ...]) -> int:
        """A new handle on the directory `parts`, resolved from the root and inside it."""
        try:
            return openat2(self._root, "/".join(parts), os.O_PATH | os.O_DIRECTORY, 0, _RESOLVE)
        except FileNotFoundError:
            raise
        except NotADirectoryError as exc:
            raise LayerError(
                f"{self.what}: {'/'.join(parts)} is not a directory, but the layer puts files in it"
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                raise LayerError(
                    "this kernel has no openat2 (Linux 5.6 or newer is needed)"
                ) from exc
            raise LayerError(
                f"{self.what}: cannot open directory {'/'.join(parts)}: {exc.strerror}"
            ) from exc

    def _make(self, parts: tuple[str, ...]) -> int:
        """Make the missing directories of `parts` below the deepest one that exists, each
        reopened from the root: a dangling symlink on the way is an error, not a way out. A loop,
        not a recursion: a path may have two thousand components."""
        depth, parent = len(parts) - 1, -1
        while depth:
            try:
                parent = self._open(parts[:depth])
                break
            except FileNotFoundError:
                depth -= 1
        if parent < 0:
            parent = os.dup(self._root)
        try:
            for i in range(depth, len(parts)):
                try:
                    os.mkdir(parts[i], 0o755, dir_fd=parent)
                except FileExistsError:
                    pass  # a dangling symlink: opening it below fails and says so
                try:
                    child = self._open(parts[: i + 1])
                except FileNotFoundError as exc:
                    raise LayerError(
                        f"{self.what}: cannot make directory {'/'.join(parts[: i + 1])}: it is "
                        "a symlink to nothing in the layer"
                    ) from exc
                os.close(parent)
                parent = child
        except BaseException:
            os.close(parent)
            raise
        return parent

    def _clear(self, parent: int, name: str, parts: tuple[str, ...], keep_dir: bool) -> None:
        """Remove what is at `name` unless it is a directory we are to keep (merged into)."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            remove_tree_at(parent, name)
        else:
            os.unlink(name, dir_fd=parent)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            # Handles cached under this path, or under any path through a symlink to it, now
            # lead to a removed directory or to the old target of a symlink.
            self._forget(keep=parts[:-1])

    # -- entries -------------------------------------------------------------------------------

    def add(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        self.entries += 1
        if len(self._dirs) >= _DIR_FD_CACHE:  # here, while no handle of it is in use
            self._forget()
        parts = _clean(member.name, self.what)
        if not parts:
            if member.isdir():  # the layer's own root: its metadata only
                self._metadata(self._root, ".", member, is_root=True)
                self._dir_time(self._root, ".", (), member)
            return
        parent = self._dir(parts[:-1])
        name = parts[-1]
        if name == OPAQUE_MARKER:
            os.setxattr(f"/proc/self/fd/{parent}", _OPAQUE_XATTR, b"y")
            return
        if name.startswith(WHITEOUT_PREFIX):
            hidden = name[len(WHITEOUT_PREFIX) :]
            if hidden in ("", ".", ".."):
                raise LayerError(f"{self.what}: whiteout entry {member.name!r} is invalid")
            self._clear(parent, hidden, (*parts[:-1], hidden), keep_dir=False)
            os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
            return
        # The common entries are made first and what is in the way cleared only when there is
        # something: a stat per entry is a tenth of the time of a small file.
        if member.isreg():
            try:
                self._file(parent, name, member, archive)
            except FileExistsError:
                self._clear(parent, name, parts, keep_dir=False)
                self._file(parent, name, member, archive)
            return
        if member.isdir():
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                self._clear(parent, name, parts, keep_dir=True)
                with contextlib.suppress(FileExistsError):  # kept: a directory already
                    os.mkdir(name, 0o700, dir_fd=parent)
            self._metadata(parent, name, member)
            self._dir_time(parent, name, parts, member)
            return
        if member.issym():
            try:
                os.symlink(member.linkname, name, dir_fd=parent)
            except FileExistsError:
                self._clear(parent, name, parts, keep_dir=False)
                os.symlink(member.linkname, name, dir_fd=parent)
            self._metadata(parent, name, member, symlink=True)
            return
        self._clear(parent, name, parts, keep_dir=False)
        if member.islnk():
            self._hardlink(parent, name, member)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(
                name, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=parent
            )
            self._metadata(parent, name, member)
        elif member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=parent)
            self._metadata(parent, name, member)
        else:
            raise LayerError(
                f"{self.what}: entry {member.name!r} has an unknown type {member.type!r}"
            )

    def _file(
        self, parent: int, name: str, member: tarfile.TarInfo, archive: tarfile.TarFile
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        mode = member.mode & 0o7777
        # The mode given to open survives when the umask takes nothing from it and it has no
        # setuid/setgid/sticky bit (chown would clear those): then no fchmod is needed.
        exact = not mode & (_UMASK | 0o7000)
        fd = os.open(name, flags, mode if exact else 0o600, dir_fd=parent)
        try:
            if member.sparse:
                self._sparse(fd, member, archive)
            else:
                # The stream is at the entry's data (tarfile's own reader adds a layer of
                # Python per read); tarfile skips the padding to the next header itself.
                source = cast(IO[bytes], archive.fileobj)
                for chunk in _chunks(source, member.size, self.what, member.name):
                    _write(fd, chunk, None)
            self.size += member.size
            if self._setgid_seen or (member.uid, member.gid) != self._own:
                os.fchown(fd, member.uid, member.gid)
            if not exact:
                os.fchmod(fd, mode)
            for key, value in _xattrs(member):
                os.setxattr(fd, key, value)
            os.utime(fd, ns=(_ns(member.mtime),) * 2)
        finally:
            os.close(fd)

    def _sparse(self, fd: int, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        """Write only the data segments, so a huge sparse file stays sparse on disk. They are
        stored one after another; read them in that order (the stream cannot seek back)."""
        segments = [(o, n) for o, n in cast(list[tuple[int, int]], member.sparse) if n]
        end = stored = 0
        for offset, length in segments:
            if offset < end or length < 0 or offset + length > member.size:
                raise LayerError(
                    f"{self.what}: the sparse map of {member.name!r} is invalid: a segment "
                    f"({offset}, {length}) overlaps another or lies past its size {member.size}"
                )
            end = offset + length
            stored += length
        if stored > archive.offset - member.offset_data:  # the next header starts there
            raise LayerError(
                f"{self.what}: the sparse map of {member.name!r} claims more data than the "
                "entry holds"
            )
        plain = copy.copy(member)  # the stored data, read straight through
        plain.sparse, plain.size = None, stored
        source = archive.extractfile(plain)
        assert source is not None  # a regular file always has a reader
        for offset, length in segments:
            for chunk in _chunks(source, length, self.what, member.name):
                _write(fd, chunk, offset)
                offset += len(chunk)
        os.ftruncate(fd, member.size)

    def _hardlink(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        target = _clean(member.linkname, self.what)
        if not target:
            raise LayerError(f"{self.what}: hard link {member.name!r} has no target; refused")
        try:
            os.link(
                target[-1],
                name,
                src_dir_fd=self._dir(target[:-1], make=False),
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise LayerError(
                f"{self.what}: hard link {member.name!r} to {member.linkname!r}: the target is "
                "not a file of this layer"
            ) from exc

    def _metadata(
        self,
        parent: int,
        name: str,
        member: tarfile.TarInfo,
        *,
        symlink: bool = False,
        is_root: bool = False,
    ) -> None:
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if member.isdir() and member.mode & 0o2000:
            self._setgid_seen = True
        if not member.isdir():  # a directory's time is set once its contents are in
            mtime = _ns(member.mtime)
            os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
        if symlink:  # a symlink's own mode means nothing on Linux, and cannot be set
            return
        # `name` was just made (or checked to be a directory), so following it is safe.
        path = f"/proc/self/fd/{parent}" if is_root else f"/proc/self/fd/{parent}/{name}"
        os.chmod(path, member.mode & 0o7777)
        for key, value in _xattrs(member):
            os.setxattr(path, key, value, follow_symlinks=False)

    def _dir_time(
        self, parent: int, name: str, parts: tuple[str, ...], member: tarfile.TarInfo
    ) -> None:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        self._dir_times[st.st_dev, st.st_ino] = (parts, _ns(member.mtime))

    def finish(self) -> None:
        """Directory times last: making their contents changed them. A directory removed or
        replaced later in the layer is skipped: what is at its path now is not it."""
        self._forget()
        for (dev, ino), (parts, mtime) in self._dir_times.items():
            try:
                fd = openat2(self._root, "/".join(parts) or ".", os.O_PATH, 0, _RESOLVE)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.utime(f"/proc/self/fd/{fd}", ns=(mtime, mtime))
            finally:
                os.close(fd)


def _process_umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: never trust the mode given to open


_UMASK = _process_umask()


def _ns(mtime: float) -> int:
    return int(mtime * 10**9)


def _write(fd: int, data: bytes, offset: int | None) -> None:
    """Write all of `data` (at `offset`, or at the file position): a write may be short."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


def _xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    """The extended attributes recorded for an entry, minus overlayfs' own: a layer may not
    steer the union mount (redirects, metacopy) by setting them."""
    for key, value in member.pax_headers.items():
        if key.startswith(_XATTR_PAX):
            attr = key[len(_XATTR_PAX) :]
            if attr.startswith("trusted.overlay."):
                continue
            yield attr, value.encode("utf-8", "surrogateescape")


def _chunks(source: IO[bytes], size: int, what: str, name: str) -> Iterator[bytes]:
    left = size
    while left:
        chunk = source.read(min(left, _CHUNK))
        if not chunk:
            raise LayerError(f"{what}: the layer archive ends inside {name!r}")
        left -= len(chunk)
        yield chunk
