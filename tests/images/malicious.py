"""Layer tarballs written by hand, honest and hostile, for the unpacker's tests.

:class:`Layer` writes a tar entry by entry: each header comes from a :class:`tarfile.TarInfo`
(``tobuf``) or is put together byte by byte where tarfile cannot write it (GNU sparse headers, a
size that lies, a bad checksum). Nothing here extracts a tar; :mod:`tarfile` only writes.

``CORPUS`` maps a name to a :class:`Case`: a function of a :class:`Sandbox` returning the bytes of
a layer that tries to reach outside its directory, or to break the unpacker, and the outcome the
unpacker must reach: ``refused`` (LayerError matching ``match``) or ``contained`` (unpacked,
everything inside the layer directory, ``check`` holds).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile and GNU tar pad an archive to a multiple of this
MTIME = 1_600_000_000  # 2020-09-13, a fixed time for every entry unless told otherwise


class Layer:
    """A layer archive built entry by entry; ``bytes()`` ends it (two zero blocks, padding)."""

    def __init__(self, format: int = tarfile.PAX_FORMAT) -> None:
        self.format = format
        self._out = io.BytesIO()

    # -- honest entries --------------------------------------------------------------------------

    def entry(
        self,
        name: str,
        kind: bytes,
        data: bytes = b"",
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        mtime: float = MTIME,
        linkname: str = "",
        devmajor: int = 0,
        devminor: int = 0,
        xattrs: dict[str, bytes] | None = None,
        pax: dict[str, str] | None = None,
    ) -> Self:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = len(data)
        info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, mtime
        info.linkname = linkname
        info.devmajor, info.devminor = devmajor, devminor
        headers = dict(pax or {})
        for key, value in (xattrs or {}).items():
            headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        info.pax_headers = headers
        self.raw(info.tobuf(self.format, "utf-8", "surrogateescape"))
        return self.data(data)

    def file(self, name: str, data: bytes = b"", **kw: Any) -> Self:
        return self.entry(name, tarfile.REGTYPE, data, **kw)

    def dir(self, name: str, **kw: Any) -> Self:
        kw.setdefault("mode", 0o755)
        return self.entry(name, tarfile.DIRTYPE, **kw)

    def symlink(self, name: str, target: str, **kw: Any) -> Self:
        kw.setdefault("mode", 0o777)
        return self.entry(name, tarfile.SYMTYPE, linkname=target, **kw)

    def hardlink(self, name: str, target: str, **kw: Any) -> Self:
        return self.entry(name, tarfile.LNKTYPE, linkname=target, **kw)

    def chardev(self, name: str, major: int, minor: int, **kw: Any) -> Self:
        return self.entry(name, tarfile.CHRTYPE, devmajor=major, devminor=minor, **kw)

    def blockdev(self, name: str, major: int, minor: int, **kw: Any) -> Self:
        return self.entry(name, tarfile.BLKTYPE, devmajor=major, devminor=minor, **kw)

    def fifo(self, name: str, **kw: Any) -> Self:
        return self.entry(name, tarfile.FIFOTYPE, **kw)

    # -- by hand -----------------------------------------------------------------------------------

    def raw(self, blocks: bytes) -> Self:
        """Append bytes as they are (headers already padded to whole blocks)."""
        self._out.write(blocks)
        return self

    def data(self, data: bytes) -> Self:
        """Append entry data padded to a whole block."""
        return self.raw(data + pad(len(data)))

    def bytes(self, *, end: bool = True, record: bool = True) -> bytes:
        """The archive: with the end-of-archive blocks and, like tarfile, zero padding to a
        whole record."""
        out = self._out.getvalue()
        if end:
            out += b"\0" * (2 * BLOCK)
        if record:
            out += b"\0" * (-len(out) % RECORD)
        return out

    # -- sparse files ------------------------------------------------------------------------------

    def gnu_sparse(self, name: str, size: int, segments: Sequence[tuple[int, bytes]]) -> Self:
        """An old GNU sparse entry ('S'): the map in the header, four segments there and 21 in
        each extension block; the data of the segments stored one after another."""
        stored = b"".join(data for _, data in segments)
        head = bytearray(ustar_header(name, len(stored), b"S", magic=b"ustar  \0"))
        entries = [(offset, len(data)) for offset, data in segments]
        for i, (offset, length) in enumerate(entries[:4]):
            head[386 + 24 * i : 398 + 24 * i] = number(offset, 12)
            head[398 + 24 * i : 410 + 24 * i] = number(length, 12)
        rest = entries[4:]
        head[482] = 1 if rest else 0
        head[483:495] = number(size, 12)
        self.raw(checksummed(head))
        while rest:
            ext = bytearray(BLOCK)
            for i, (offset, length) in enumerate(rest[:21]):
                ext[24 * i : 24 * i + 12] = number(offset, 12)
                ext[24 * i + 12 : 24 * i + 24] = number(length, 12)
            rest = rest[21:]
            ext[504] = 1 if rest else 0
            self.raw(bytes(ext))
        return self.data(stored)

    def pax_sparse_01(self, name: str, size: int, segments: Sequence[tuple[int, bytes]]) -> Self:
        """A PAX sparse entry, format 0.1: the map in ``GNU.sparse.map``."""
        stored = b"".join(data for _, data in segments)
        flat = ",".join(f"{offset},{len(data)}" for offset, data in segments)
        info = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
        info.size, info.mtime, info.mode = len(stored), MTIME, 0o644
        info.pax_headers = {
            "GNU.sparse.size": str(size),
            "GNU.sparse.numblocks": str(len(segments)),
            "GNU.sparse.map": flat,
            "GNU.sparse.name": name,
        }
        self.raw(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        return self.data(stored)

    def pax_sparse_10(self, name: str, size: int, segments: Sequence[tuple[int, bytes]]) -> Self:
        """A PAX sparse entry, format 1.0 (GNU tar's default): the map in decimal lines at the
        start of the data, padded to a block."""
        lines = [str(len(segments))]
        for offset, data in segments:
            lines += [str(offset), str(len(data))]
        sparse_map = ("\n".join(lines) + "\n").encode()
        stored = sparse_map + pad(len(sparse_map)) + b"".join(data for _, data in segments)
        info = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
        info.size, info.mtime, info.mode = len(stored), MTIME, 0o644
        info.pax_headers = {
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": name,
            "GNU.sparse.realsize": str(size),
        }
        self.raw(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        return self.data(stored)


def pad(length: int) -> bytes:
    return b"\0" * (-length % BLOCK)


def number(value: int, width: int) -> bytes:
    """A numeric header field: octal with a NUL, or GNU base-256 when it does not fit."""
    digits = width - 1
    if 0 <= value < 8**digits:
        return b"%0*o\0" % (digits, value)
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def checksummed(head: bytearray) -> bytes:
    head[148:156] = b" " * 8
    head[148:155] = b"%06o\0" % sum(head)
    return bytes(head)


def ustar_header(
    name: str,
    size: int,
    kind: bytes = tarfile.REGTYPE,
    *,
    linkname: str = "",
    mode: int = 0o644,
    magic: bytes = b"ustar\x0000",
) -> bytes:
    """A ustar header written byte by byte, for sizes and layouts tarfile will not write."""
    head = bytearray(BLOCK)
    head[0:100] = name.encode().ljust(100, b"\0")[:100]
    head[100:108] = number(mode, 8)
    head[108:116] = number(0, 8)
    head[116:124] = number(0, 8)
    head[124:136] = number(size, 12)
    head[136:148] = number(MTIME, 12)
    head[156:157] = kind
    head[157:257] = linkname.encode().ljust(100, b"\0")[:100]
    head[257:265] = magic
    return checksummed(head)


# -- the corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """Where an archive is unpacked and what it aims at.

    ``base`` holds ``outside/`` (marker files: what an escape would change) and the layer
    directory ``dest`` three levels down (``base/layers/a/b/dest``), so that ``..`` from the
    layer climbs into ``base`` before it leaves it. ``unique`` names nothing yet anywhere: an
    archive that climbs out of ``base`` or names ``/tmp/<unique>`` uses it, and the test checks
    those paths stay absent.
    """

    base: Path
    unique: str

    @property
    def outside(self) -> Path:
        return self.base / "outside"

    @property
    def dest(self) -> Path:
        return self.base / "layers" / "a" / "b" / "dest"

    @property
    def absent(self) -> list[Path]:
        """Absolute paths that archives name and that must not exist afterwards."""
        return [self.base.parent / self.unique, Path("/tmp") / self.unique]


Outcome = Literal["refused", "contained"]


@dataclass(frozen=True)
class Case:
    build: Callable[[Sandbox], bytes]
    outcome: Outcome
    match: str = ""  # for refused: a regex the message matches (besides naming the layer)
    check: Callable[[Sandbox], None] | None = None  # for contained: what the layer holds
    heavy: bool = False  # makes many inodes: the test puts it on a tmpfs where there is one


CORPUS: dict[str, Case] = {}


def case(
    outcome: Outcome,
    match: str = "",
    check: Callable[[Sandbox], None] | None = None,
    heavy: bool = False,
) -> Callable[[Callable[[Sandbox], bytes]], Callable[[Sandbox], bytes]]:
    def register(build: Callable[[Sandbox], bytes]) -> Callable[[Sandbox], bytes]:
        CORPUS[build.__name__] = Case(build, outcome, match, check, heavy)
        return build

    return register


OUTSIDE_LINK = "symlink to nothing in the layer"
NOT_IN_LAYER = "the target is not a file of this layer"
CLIMBS = "points outside the layer; refused"


def _inside(sandbox: Sandbox, path: str | Path) -> Path:
    """Where the absolute path `path` lands when it is taken inside the layer."""
    return sandbox.dest / str(path).lstrip("/")


def _is_file(path: Path, content: bytes) -> None:
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode), path
    assert path.read_bytes() == content


# absolute and climbing names


def _landed_abs_outside(s: Sandbox) -> None:
    _is_file(_inside(s, s.outside / "pwn"), b"pwned")


@case("contained", check=_landed_abs_outside)
def absolute_path_to_outside(s: Sandbox) -> bytes:
    """A file named by the absolute path of the sandbox's outside directory."""
    return Layer().file(f"{s.outside}/pwn", b"pwned").bytes()


def _landed_abs_tmp(s: Sandbox) -> None:
    _is_file(_inside(s, f"/tmp/{s.unique}/pwn"), b"pwned")


@case("contained", check=_landed_abs_tmp)
def absolute_path_to_tmp(s: Sandbox) -> bytes:
    """/tmp/<unique>/pwn: lands in the layer's own tmp/."""
    return Layer().file(f"/tmp/{s.unique}/pwn", b"pwned").bytes()


@case("refused", match=CLIMBS)
def dotdot_climbs_out(s: Sandbox) -> bytes:
    return Layer().file(f"../../{s.unique}", b"pwned").bytes()


@case("refused", match=CLIMBS)
def dotdot_climbs_out_of_base(s: Sandbox) -> bytes:
    return Layer().file(f"../../../../{s.unique}/pwn", b"pwned").bytes()


@case("refused", match=CLIMBS)
def dotdot_after_a_directory(s: Sandbox) -> bytes:
    """a/../../x: one level down, two up."""
    return Layer().dir("a").file("a/../../x", b"pwned").bytes()


@case("refused", match=CLIMBS)
def dotdot_in_pax_path(s: Sandbox) -> bytes:
    """An innocent ustar name, replaced by a pax ``path`` record that climbs out."""
    return Layer().file("innocent", b"pwned", pax={"path": f"../../{s.unique}"}).bytes()


@case("refused", match=CLIMBS)
def dotdot_in_gnu_long_name(s: Sandbox) -> bytes:
    """A GNU long name ('L' entry) that climbs out."""
    name = "../" * 3 + "x" * 120 + s.unique
    return Layer(tarfile.GNU_FORMAT).file(name, b"pwned").bytes()


@case("refused", match=CLIMBS)
def dotdot_as_the_whole_name(s: Sandbox) -> bytes:
    return Layer().symlink("..", str(s.outside)).bytes()


def _root_still_a_directory(s: Sandbox) -> None:
    assert stat.S_ISDIR(s.dest.lstat().st_mode)
    _is_file(s.dest / "pwned", b"pwned")


@case("contained", check=_root_still_a_directory)
def symlink_named_dot_replaces_the_root(s: Sandbox) -> bytes:
    """A symlink entry named ``./`` to outside: the root stays the layer's directory."""
    return Layer().symlink("./", str(s.outside)).file("pwned", b"pwned").bytes()


# symlinks planted earlier in the archive


@case("refused", match=OUTSIDE_LINK)
def symlink_to_outside_then_file_through_it(s: Sandbox) -> bytes:
    return Layer().symlink("evil", str(s.outside)).file("evil/pwned", b"pwned").bytes()


@case("refused", match=OUTSIDE_LINK)
def symlink_to_outside_then_overwrite_marker(s: Sandbox) -> bytes:
    return Layer().symlink("evil", str(s.outside)).file("evil/marker", b"pwned").bytes()


def _landed_in_root_etc(s: Sandbox) -> None:
    _is_file(s.dest / "etc" / "x", b"pwned")
    assert os.readlink(s.dest / "evil") == "../../.."


@case("contained", check=_landed_in_root_etc)
def symlink_dotdot_then_file_through_it(s: Sandbox) -> bytes:
    """evil -> ../../.. then evil/etc/x: the climb stops at the layer's root."""
    return Layer().symlink("evil", "../../..").file("evil/etc/x", b"pwned").bytes()


@case("refused", match=OUTSIDE_LINK)
def symlink_dotdot_to_sandbox_then_file(s: Sandbox) -> bytes:
    """evil -> ../../../../outside, exactly the sandbox were `..` not stopped at the root."""
    return Layer().symlink("evil", "../../../../outside").file("evil/marker", b"pwned").bytes()


@case("refused", match=OUTSIDE_LINK)
def symlink_chain_to_outside(s: Sandbox) -> bytes:
    """a -> b, b -> outside, then a/pwned."""
    return Layer().symlink("a", "b").symlink("b", str(s.outside)).file("a/pwned", b"pwned").bytes()


@case("refused", match="Too many levels of symbolic links")
def symlink_loop(s: Sandbox) -> bytes:
    return Layer().symlink("a", "b").symlink("b", "a").file("a/x", b"pwned").bytes()


def _file_replaced_link(s: Sandbox) -> None:
    _is_file(s.dest / "evil", b"pwned")


@case("contained", check=_file_replaced_link)
def symlink_to_outside_file_then_file_of_same_name(s: Sandbox) -> bytes:
    """evil -> outside/marker, then a file evil: the link is replaced, not written through."""
    return Layer().symlink("evil", str(s.outside / "marker")).file("evil", b"pwned").bytes()


def _dir_replaced_link(s: Sandbox) -> None:
    assert stat.S_ISDIR((s.dest / "evil").lstat().st_mode)
    _is_file(s.dest / "evil" / "pwned", b"pwned")


@case("contained", check=_dir_replaced_link)
def symlink_to_outside_then_directory_of_same_name(s: Sandbox) -> bytes:
    return (
        Layer()
        .symlink("evil", str(s.outside))
        .dir("evil", mode=0o777)
        .file("evil/pwned", b"pwned")
        .bytes()
    )


@case("refused", match=OUTSIDE_LINK)
def directory_replaced_by_symlink_mid_archive(s: Sandbox) -> bytes:
    """d/, d/f, then d -> outside, then d/g: the cached handle on d must not be used."""
    return (
        Layer()
        .dir("d")
        .file("d/f", b"f")
        .symlink("d", str(s.outside))
        .file("d/g", b"pwned")
        .bytes()
    )


def _d_to_root(s: Sandbox) -> None:
    _is_file(s.dest / "g", b"pwned")
    assert os.readlink(s.dest / "d") == "/"


@case("contained", check=_d_to_root)
def directory_replaced_by_symlink_to_root(s: Sandbox) -> bytes:
    """d/, d/f, then d -> /, then d/g: g lands in the layer's root."""
    return Layer().dir("d").file("d/f", b"f").symlink("d", "/").file("d/g", b"pwned").bytes()


def _aliased_dir_kept_apart(s: Sandbox) -> None:
    _is_file(s.dest / "d" / "sub" / "x", b"x")
    _is_file(s.dest / "e" / "sub" / "y", b"y")


@case("contained", check=_aliased_dir_kept_apart)
def symlink_retargeted_between_entries(s: Sandbox) -> bytes:
    """l -> d, l/sub/x, then l -> e, l/sub/y: y goes where l points now."""
    return (
        Layer()
        .dir("d")
        .dir("e")
        .symlink("l", "d")
        .file("l/sub/x", b"x")
        .symlink("l", "e")
        .file("l/sub/y", b"y")
        .bytes()
    )


# hard links


@case("refused", match=NOT_IN_LAYER)
def hardlink_to_etc_passwd(s: Sandbox) -> bytes:
    return Layer().hardlink("passwd", "/etc/passwd").bytes()


@case("refused", match=CLIMBS)
def hardlink_dotdot_to_etc_shadow(s: Sandbox) -> bytes:
    return Layer().hardlink("shadow", "../../../etc/shadow").bytes()


@case("refused", match=NOT_IN_LAYER)
def hardlink_to_outside_marker(s: Sandbox) -> bytes:
    return Layer().hardlink("marker", str(s.outside / "marker")).bytes()


@case("refused", match=NOT_IN_LAYER)
def hardlink_through_symlink_to_outside(s: Sandbox) -> bytes:
    return Layer().symlink("evil", str(s.outside)).hardlink("marker", "evil/marker").bytes()


@case("refused", match=NOT_IN_LAYER)
def hardlink_to_a_directory(s: Sandbox) -> bytes:
    return Layer().dir("d").hardlink("h", "d").bytes()


@case("refused", match=NOT_IN_LAYER)
def hardlink_to_nothing(s: Sandbox) -> bytes:
    return Layer().hardlink("h", "nope").bytes()


def _hardlink_name_replaced(s: Sandbox) -> None:
    _is_file(s.dest / "hl", b"pwned")
    assert os.readlink(s.dest / "sym") == str(s.outside / "marker")
    assert (s.dest / "hl").stat().st_nlink == 1


@case("contained", check=_hardlink_name_replaced)
def hardlink_to_symlink_then_write_to_it(s: Sandbox) -> bytes:
    """sym -> outside/marker, hl hard link to sym, then a file hl: hl is replaced, nothing is
    written through the link."""
    return (
        Layer()
        .symlink("sym", str(s.outside / "marker"))
        .hardlink("hl", "sym")
        .file("hl", b"pwned")
        .bytes()
    )


# whiteouts and opaque markers


@case("refused", match="whiteout entry '.wh...' is invalid")
def whiteout_of_dotdot(s: Sandbox) -> bytes:
    return Layer().file(".wh...").bytes()


@case("refused", match=r"whiteout entry 'sub/\.wh\.\.\.' is invalid")
def whiteout_of_dotdot_in_a_directory(s: Sandbox) -> bytes:
    """sub/.wh... would remove the layer's root."""
    return Layer().dir("sub").file("sub/.wh...").bytes()


@case("refused", match="whiteout entry '.wh..' is invalid")
def whiteout_of_dot(s: Sandbox) -> bytes:
    return Layer().file(".wh..").bytes()


@case("refused", match="whiteout entry '.wh.' is invalid")
def whiteout_of_nothing(s: Sandbox) -> bytes:
    return Layer().file(".wh.").bytes()


@case("refused", match=OUTSIDE_LINK)
def whiteout_through_symlink_to_outside(s: Sandbox) -> bytes:
    """evil -> outside, then evil/.wh.marker: must not delete outside/marker."""
    return Layer().symlink("evil", str(s.outside)).file("evil/.wh.marker").bytes()


def _link_whited_out(s: Sandbox) -> None:
    st = (s.dest / "evil").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


@case("contained", check=_link_whited_out)
def whiteout_of_symlink_to_outside(s: Sandbox) -> bytes:
    """evil -> outside, then .wh.evil: the link goes, not what it points to."""
    return Layer().symlink("evil", str(s.outside)).file(".wh.evil").bytes()


@case("contained", check=lambda s: _whiteout_at(s.dest / "d"))
def whiteout_of_directory_holding_symlink_to_outside(s: Sandbox) -> bytes:
    """d/evil -> outside, then .wh.d: removing d must not follow evil."""
    return Layer().dir("d").symlink("d/evil", str(s.outside)).file(".wh.d").bytes()


def _whiteout_at(path: Path) -> None:
    st = path.lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


@case("contained", check=lambda s: _is_file(s.dest / "d", b"file"))
def directory_holding_symlink_to_outside_replaced_by_file(s: Sandbox) -> bytes:
    return Layer().dir("d").symlink("d/evil", str(s.outside)).file("d", b"file").bytes()


@case("refused", match=OUTSIDE_LINK)
def opaque_marker_through_symlink_to_outside(s: Sandbox) -> bytes:
    """evil -> outside, then evil/.wh..wh..opq: no xattr may be set on outside."""
    return Layer().symlink("evil", str(s.outside)).file("evil/.wh..wh..opq").bytes()


def _no_overlay_xattrs(s: Sandbox) -> None:
    names = os.listxattr(s.dest / "d", follow_symlinks=False)
    assert not [n for n in names if n.startswith("trusted.overlay.")], names


@case("contained", check=_no_overlay_xattrs)
def overlay_xattrs_smuggled_in_pax_headers(s: Sandbox) -> bytes:
    """trusted.overlay.redirect/metacopy/opaque on a directory would steer the overlay mount."""
    xattrs = {
        "trusted.overlay.redirect": str(s.outside).encode(),
        "trusted.overlay.metacopy": b"",
        "trusted.overlay.opaque": b"y",
        "trusted.overlay.overlay.opaque": b"y",
    }
    return Layer().dir("d", xattrs=xattrs).bytes()


# device nodes and fifos


@case("refused", match=OUTSIDE_LINK)
def char_device_through_symlink_to_outside(s: Sandbox) -> bytes:
    return Layer().symlink("evil", str(s.outside)).chardev("evil/null", 1, 3).bytes()


@case("refused", match=OUTSIDE_LINK)
def block_device_through_symlink_to_outside(s: Sandbox) -> bytes:
    return Layer().symlink("evil", str(s.outside)).blockdev("evil/sda", 8, 0).bytes()


@case("refused", match=OUTSIDE_LINK)
def fifo_through_symlink_to_outside(s: Sandbox) -> bytes:
    return Layer().symlink("evil", str(s.outside)).fifo("evil/fifo").bytes()


def _device_inside(s: Sandbox) -> None:
    st = _inside(s, s.outside / "null").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


@case("contained", check=_device_inside)
def char_device_at_absolute_path_to_outside(s: Sandbox) -> bytes:
    return Layer().chardev(f"{s.outside}/null", 1, 3).bytes()


# size and shape

BOMB_FILES = 100_000


def _bomb_check(s: Sandbox) -> None:
    count = sum(1 for d in os.scandir(s.dest / "bomb") for _ in os.scandir(d.path))
    assert count == BOMB_FILES


@case("contained", check=_bomb_check, heavy=True)
def tar_bomb_of_small_files(s: Sandbox) -> bytes:
    """100 000 one-byte files in 100 directories."""
    layer = Layer(tarfile.USTAR_FORMAT)
    for d in range(100):
        layer.dir(f"bomb/{d}")
        for i in range(BOMB_FILES // 100):
            layer.file(f"bomb/{d}/{i}", b"x")
    return layer.bytes()


LONG = "/".join(["d"] * 1995) + "/file"  # 3994 characters, 1996 components


def _long_path_check(s: Sandbox) -> None:
    assert read_deep(s.dest, LONG) == b"deep"


@case("contained", check=_long_path_check)
def long_path_of_deep_directories(s: Sandbox) -> bytes:
    """A 4000-character name of two thousand directories, none of them given as entries."""
    return Layer().file(LONG, b"deep").bytes()


@case("contained", check=_long_path_check)
def long_path_with_its_directories(s: Sandbox) -> bytes:
    """The same, every directory an entry of its own (made, then their times set)."""
    layer = Layer()
    parts = LONG.split("/")
    for i in range(1, len(parts)):
        layer.dir("/".join(parts[:i]))
    return layer.file(LONG, b"deep").bytes()


@case("contained", check=lambda s: _whiteout_at(s.dest / "d"))
def deep_tree_whited_out(s: Sandbox) -> bytes:
    """A directory 1500 levels deep, then removed by a whiteout in the same layer."""
    return Layer().file("/".join(["d"] * 1500) + "/f", b"f").file(".wh.d").bytes()


@case("refused", match="File name too long")
def path_longer_than_path_max(s: Sandbox) -> bytes:
    return Layer().file("/".join(["d"] * 2600) + "/f", b"f").bytes()


@case("refused", match="unexpected end of data|ends inside")
def size_claims_more_than_archive_holds(s: Sandbox) -> bytes:
    """A header claiming 1 MiB followed by 100 bytes and the end of the stream."""
    return Layer().raw(ustar_header("big", 1 << 20)).raw(b"x" * 100).bytes(end=False, record=False)


@case("refused", match="unexpected end of data|bad header|ends inside")
def size_claims_more_swallowing_later_entries(s: Sandbox) -> bytes:
    """A header claiming 8 KiB, holding 512 bytes, then what would be other entries' headers."""
    layer = Layer().raw(ustar_header("big", 8192)).raw(b"x" * BLOCK)
    layer.file("a", b"a").file("b", b"b")
    return layer.bytes(end=False, record=False)


@case("refused", match="bad header at byte 1024: bad checksum")
def corrupt_header_mid_archive(s: Sandbox) -> bytes:
    """tarfile alone takes a bad header after the first for the end of the archive."""
    good = Layer(tarfile.USTAR_FORMAT).file("a", b"a").file("b", b"b").file("c", b"c").bytes()
    bad = bytearray(good)
    bad[2 * BLOCK + 10] ^= 0xFF
    return bytes(bad)


@case("refused", match="timestamp out of range")
def time_too_large_for_the_system(s: Sandbox) -> bytes:
    return Layer().file("a", b"a", pax={"mtime": "1e30"}).bytes()


@case("refused", match="uid is")
def owner_too_large_for_the_system(s: Sandbox) -> bytes:
    return Layer().file("a", b"a", pax={"uid": str(1 << 40)}).bytes()


@case("refused", match="sparse map .* is invalid")
def sparse_map_past_the_file_size(s: Sandbox) -> bytes:
    return Layer().gnu_sparse("s", 4096, [(1 << 30, b"x" * 512)]).bytes()


@case("refused", match="sparse map .* claims more data")
def sparse_map_claims_more_than_stored(s: Sandbox) -> bytes:
    """The map says 8 KiB of data; the entry holds 512 bytes."""
    stored = b"x" * BLOCK
    head = bytearray(ustar_header("s", len(stored), b"S", magic=b"ustar  \0"))
    head[386:398], head[398:410] = number(0, 12), number(8192, 12)
    head[483:495] = number(1 << 20, 12)
    return Layer().raw(checksummed(head)).data(stored).file("after", b"a").bytes()


def read_deep(root: Path, relative: str) -> bytes:
    """Read a file whose path may be longer than the system takes at once, a few components of
    it at a time, each relative to the directory before."""
    parts = relative.split("/")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for i in range(0, len(parts) - 1, 500):
            step = "/".join(parts[i : min(i + 500, len(parts) - 1)])
            nxt = os.open(step, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        try:
            return os.read(leaf, 1 << 16)
        finally:
            os.close(leaf)
    finally:
        os.close(fd)
