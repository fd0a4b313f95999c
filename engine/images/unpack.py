"""Unpacking a layer archive from a stranger into its own directory, and nowhere else.

Each entry is read on its own and created relative to a handle on the layer root: parent
directories are opened with openat2(RESOLVE_IN_ROOT), so `..`, absolute paths and symlinks
(planted earlier in the same archive) resolve inside the layer, and the last component is made
with the *at calls without following links. Whiteouts become what overlayfs reads: `.wh.NAME`
a 0/0 character device, `.wh..wh..opq` the `trusted.overlay.opaque` attribute.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol, cast

from engine.errors import LayerError
from engine.linux import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

__all__ = ["LayerStats", "decompressed", "unpack_layer"]

WHITEOUT_PREFIX: Final = ".wh."
OPAQUE_MARKER: Final = ".wh..wh..opq"
_OPAQUE_XATTR: Final = "trusted.overlay.opaque"
_XATTR_PAX: Final = "SCHILY.xattr."
_CHUNK: Final = 1 << 20
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_DIR_FD_CACHE: Final = 128
_RESOLVE: Final = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


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
        return gzip.GzipFile(fileobj=rest, mode="rb")
    if head == _ZSTD_MAGIC:
        import zstandard  # only layers compressed with zstd pay for the import

        return cast(
            Readable,
            zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], rest), read_size=_CHUNK),
        )
    return rest


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


def unpack_layer(stream: Readable, dest: Path, *, what: str) -> LayerStats:
    """Unpack the (possibly compressed) layer archive `stream` into the empty directory `dest`.

    `what` names the layer in errors (image and digest). On any error `dest` is removed, so a
    layer is either complete or absent.
    """
    try:
        hashing = _HashingReader(decompressed(stream))
        buffered = io.BufferedReader(hashing, buffer_size=_CHUNK)
        with _Unpacker(dest, what) as unpacker:
            with tarfile.open(fileobj=buffered, mode="r|", errorlevel=2) as archive:
                for member in archive:
                    unpacker.add(member, archive)
            unpacker.finish()
        hashing.drain()  # trailing padding after the end-of-archive blocks counts in the digest
        buffered.read()
        hashing.drain()
    except LayerError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise LayerError(f"{what}: the layer archive is malformed or truncated: {exc}") from exc
    except Exception as exc:  # zstandard's errors have no common base we can import lazily
        shutil.rmtree(dest, ignore_errors=True)
        if type(exc).__module__.startswith("zstandard"):
            raise LayerError(f"{what}: the layer archive is malformed or truncated: {exc}") from exc
        raise
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
        self._root = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._dirs: dict[tuple[str, ...], int] = {}
        self._dir_times: list[tuple[tuple[str, ...], int]] = []

    def __enter__(self) -> _Unpacker:
        return self

    def __exit__(self, *exc: object) -> None:
        self._forget(())
        os.close(self._root)

    # -- directories -------------------------------------------------------------------------

    def _forget(self, prefix: tuple[str, ...]) -> None:
        """Close cached handles at or below `prefix`: that part of the tree is being replaced."""
        n = len(prefix)
        for key in [k for k in self._dirs if k[:n] == prefix]:
            os.close(self._dirs.pop(key))

    def _dir(self, parts: tuple[str, ...]) -> int:
        """An O_PATH handle on the directory `parts`, resolved inside the root, made if absent."""
        if not parts:
            return self._root
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        try:
            fd = openat2(self._root, "/".join(parts), os.O_PATH | os.O_DIRECTORY, 0, _RESOLVE)
        except FileNotFoundError:
            parent = self._dir(parts[:-1])
            try:
                os.mkdir(parts[-1], 0o755, dir_fd=parent)
            except FileExistsError:
                pass  # a dangling symlink: the openat2 below fails and says so
            try:
                fd = openat2(parent, parts[-1], os.O_PATH | os.O_DIRECTORY, 0, _RESOLVE)
            except OSError as exc:
                raise LayerError(
                    f"{self.what}: cannot make directory {'/'.join(parts)}: {exc}"
                ) from exc
        except NotADirectoryError as exc:
            raise LayerError(
                f"{self.what}: {'/'.join(parts)} is not a directory, but the layer puts files in it"
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                raise LayerError(
                    "this kernel has no openat2 (Linux 5.6 or newer is needed)"
                ) from exc
            raise
        if len(self._dirs) >= _DIR_FD_CACHE:
            self._forget(())
        self._dirs[parts] = fd
        return fd

    def _clear(self, parent: int, name: str, parts: tuple[str, ...], keep_dir: bool) -> None:
        """Remove what is at `name` unless it is a directory we are to keep (merged into)."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            self._forget(parts)
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)

    # -- entries -------------------------------------------------------------------------------

    def add(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        self.entries += 1
        parts = _clean(member.name, self.what)
        if not parts:
            if member.isdir():  # the layer's own root: its metadata only
                self._metadata(self._root, ".", member, is_root=True)
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
        self._clear(parent, name, parts, keep_dir=member.isdir())
        if member.isreg():
            self._file(parent, name, member, archive)
        elif member.isdir():
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            self._metadata(parent, name, member)
            self._dir_times.append((parts, int(member.mtime * 10**9)))
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=parent)
            self._metadata(parent, name, member, symlink=True)
        elif member.islnk():
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
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        try:
            source = archive.extractfile(member)
            assert source is not None  # a regular file always has a reader
            if member.sparse:
                # Write only the data segments: a huge sparse file stays sparse on disk.
                for offset, length in cast(list[tuple[int, int]], member.sparse):
                    source.seek(offset)
                    os.pwrite(fd, _read_exact(source, length, self.what, member.name), offset)
                os.ftruncate(fd, member.size)
            else:
                for chunk in _chunks(source, member.size, self.what, member.name):
                    os.write(fd, chunk)
            self.size += member.size
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            for key, value in _xattrs(member):
                os.setxattr(fd, key, value)
            os.utime(fd, ns=(int(member.mtime * 10**9),) * 2)
        finally:
            os.close(fd)

    def _hardlink(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        target = _clean(member.linkname, self.what)
        if not target:
            raise LayerError(f"{self.what}: hard link {member.name!r} has no target; refused")
        try:
            os.link(
                target[-1],
                name,
                src_dir_fd=self._dir(target[:-1]),
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
        if symlink:  # a symlink's own mode means nothing on Linux, and cannot be set
            mtime = int(member.mtime * 10**9)
            os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
            return
        # `name` was just made (or checked to be a directory), so following it is safe.
        path = f"/proc/self/fd/{parent}" if is_root else f"/proc/self/fd/{parent}/{name}"
        os.chmod(path, member.mode & 0o7777)
        for key, value in _xattrs(member):
            os.setxattr(path, key, value, follow_symlinks=False)

    def finish(self) -> None:
        """Directory mtimes last, deepest first: making their contents changed them."""
        for parts, mtime in reversed(self._dir_times):
            fd = self._dir(parts)
            os.utime(f"/proc/self/fd/{fd}", ns=(mtime, mtime))


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


def _read_exact(source: IO[bytes], size: int, what: str, name: str) -> bytes:
    return b"".join(_chunks(source, size, what, name))
