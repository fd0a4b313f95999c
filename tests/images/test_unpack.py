"""Unpacking a layer archive: what each kind of entry becomes on disk, and what an archive that
is cut short or damaged does (hostile archives are in test_unpack_safety.py).

Archives are written by hand with tests/images/malicious.Layer; tarfile only writes them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from engine.errors import LayerError
from engine.files import remove_tree
from engine.images.store import ImageStore
from engine.images.unpack import LayerStats, unpack_layer
from tests.images.malicious import BLOCK, MTIME, RECORD, Layer

WHAT = "layer sha256:test of image example:1"
GIB = 1 << 30


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "layer"
    path.mkdir()
    return path


def unpack(archive: bytes | Layer, dest: Path) -> LayerStats:
    data = archive.bytes() if isinstance(archive, Layer) else archive
    return unpack_layer(io.BytesIO(data), dest, what=WHAT)


def refused(archive: bytes, dest: Path) -> str:
    """Unpack `archive`, which must fail; the message, checked to name the layer."""
    with pytest.raises(LayerError) as info:
        unpack(archive, dest)
    assert WHAT in str(info.value)
    return str(info.value)


def xattrs(path: Path) -> dict[str, bytes]:
    return {
        name: os.getxattr(path, name, follow_symlinks=False)
        for name in os.listxattr(path, follow_symlinks=False)
    }


# -- entries ---------------------------------------------------------------------------------------


def test_regular_files_keep_their_content(dest: Path) -> None:
    big = os.urandom(3 * (1 << 20) + 123)  # more than one read chunk
    unpack(Layer().file("empty").file("small", b"hello\n").file("big", big), dest)
    assert (dest / "empty").read_bytes() == b""
    assert (dest / "small").read_bytes() == b"hello\n"
    assert (dest / "big").read_bytes() == big


def test_directories_are_made_with_their_mode(dest: Path) -> None:
    unpack(Layer().dir("etc", mode=0o755).dir("etc/private", mode=0o700), dest)
    assert stat.S_ISDIR((dest / "etc").lstat().st_mode)
    assert stat.S_IMODE((dest / "etc").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "etc/private").stat().st_mode) == 0o700


def test_symlinks_keep_their_targets_verbatim(dest: Path) -> None:
    layer = Layer().symlink("abs", "/etc/hostname").symlink("rel", "../lib/x")
    unpack(layer.symlink("dangling", "/nowhere/at/all"), dest)
    assert os.readlink(dest / "abs") == "/etc/hostname"
    assert os.readlink(dest / "rel") == "../lib/x"
    assert os.readlink(dest / "dangling") == "/nowhere/at/all"


def test_a_hardlink_is_the_same_inode_as_its_target(dest: Path) -> None:
    unpack(Layer().dir("bin").file("bin/busybox", b"elf").hardlink("bin/sh", "bin/busybox"), dest)
    first, second = (dest / "bin/busybox").stat(), (dest / "bin/sh").stat()
    assert first.st_ino == second.st_ino
    assert first.st_nlink == 2
    assert (dest / "bin/sh").read_bytes() == b"elf"


def test_a_hardlink_target_given_with_a_leading_slash_is_in_the_layer(dest: Path) -> None:
    unpack(Layer().file("a", b"a").hardlink("b", "/a"), dest)
    assert (dest / "a").stat().st_ino == (dest / "b").stat().st_ino


def test_hardlinks_across_more_directories_than_handles_are_cached(dest: Path) -> None:
    """Each link needs a handle on its own directory and on its target's; many directories
    make the unpacker drop cached handles, never one in use."""
    layer = Layer()
    for i in range(300):
        layer.dir(f"d{i}").file(f"d{i}/f", str(i).encode())
    for i in range(300):
        layer.hardlink(f"d{i}/h", f"d{(i + 150) % 300}/f")
        if i % 3 == 0:  # one more directory now and then: the cache fills at every step
            layer.file(f"e{i}/f", b"e")
    unpack(layer, dest)
    for i in range(300):
        assert (dest / f"d{i}/h").read_bytes() == str((i + 150) % 300).encode()


def test_owners_are_kept(dest: Path) -> None:
    owner = {"uid": 1000, "gid": 2000}
    layer = Layer().dir("d", **owner).file("d/f", b"x", **owner).symlink("d/l", "f", **owner)
    unpack(layer.chardev("d/c", 1, 3, **owner).fifo("d/p", **owner), dest)
    for name in ("d", "d/f", "d/l", "d/c", "d/p"):
        st = (dest / name).lstat()
        assert (st.st_uid, st.st_gid) == (1000, 2000), name


@pytest.mark.parametrize(
    "mode", [0o4755, 0o2755, 0o6750, 0o1777, 0o000, 0o640], ids=lambda m: f"{m:04o}"
)
def test_file_modes_are_kept_with_setuid_setgid_and_sticky(dest: Path, mode: int) -> None:
    unpack(Layer().file("f", b"x", mode=mode, uid=1000, gid=1000), dest)
    assert stat.S_IMODE((dest / "f").stat().st_mode) == mode


def test_directory_modes_are_kept_with_sticky_and_setgid(dest: Path) -> None:
    unpack(Layer().dir("tmp", mode=0o1777).dir("shared", mode=0o2775), dest)
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((dest / "shared").stat().st_mode) == 0o2775


def test_file_times_are_kept(dest: Path) -> None:
    unpack(Layer().file("f", b"x", mtime=1_234_567_890), dest)
    assert (dest / "f").stat().st_mtime_ns == 1_234_567_890 * 10**9


def test_symlink_times_are_their_own(dest: Path) -> None:
    unpack(Layer().file("target", mtime=MTIME).symlink("link", "target", mtime=1_111_111_111), dest)
    assert (dest / "link").lstat().st_mtime == 1_111_111_111
    assert (dest / "link").stat().st_mtime == MTIME


def test_directory_times_are_set_after_their_contents(dest: Path) -> None:
    layer = Layer().dir("d", mtime=1_000_000_000).dir("d/sub", mtime=1_000_000_001)
    layer.file("d/sub/f", b"x").file("d/g", b"y").symlink("d/l", "g")
    unpack(layer, dest)
    assert (dest / "d").stat().st_mtime == 1_000_000_000
    assert (dest / "d/sub").stat().st_mtime == 1_000_000_001


def test_the_root_entry_sets_the_layer_directory_mode_and_time(dest: Path) -> None:
    unpack(Layer().dir("./", mode=0o751, mtime=1_000_000_000).file("f", b"x"), dest)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o751
    assert dest.stat().st_mtime == 1_000_000_000


def test_device_and_fifo_times_are_kept(dest: Path) -> None:
    unpack(Layer().chardev("null", 1, 3, mtime=1_000_000_000).fifo("p", mtime=1_000_000_001), dest)
    assert (dest / "null").lstat().st_mtime == 1_000_000_000
    assert (dest / "p").lstat().st_mtime == 1_000_000_001


def test_a_later_directory_entry_for_the_same_path_has_the_last_word(dest: Path) -> None:
    layer = Layer().dir("d", mode=0o700, mtime=1_000_000_000).file("d/f", b"x")
    unpack(layer.dir("d", mode=0o755, mtime=1_000_000_002), dest)
    assert (dest / "d/f").read_bytes() == b"x"
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o755
    assert (dest / "d").stat().st_mtime == 1_000_000_002


CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 6 | 1 << 7 | 1 << 10, 0, 0, 0)  # v2, effective


def test_xattrs_are_kept_including_binary_file_capabilities(dest: Path) -> None:
    with pytest.raises(UnicodeDecodeError):  # a pax header holds it as binary
        CAPABILITY.decode()
    file_xattrs = {"user.foo": b"bar", "security.capability": CAPABILITY}
    layer = Layer().file("ping", b"elf", mode=0o755, xattrs=file_xattrs)
    unpack(layer.dir("d", xattrs={"user.dir": b"yes", "trusted.other": b"kept"}), dest)
    assert xattrs(dest / "ping") == file_xattrs
    assert xattrs(dest / "d") == {"user.dir": b"yes", "trusted.other": b"kept"}


def test_overlay_xattrs_from_the_archive_are_dropped(dest: Path) -> None:
    smuggled = {
        "trusted.overlay.opaque": b"y",
        "trusted.overlay.redirect": b"/etc",
        "trusted.overlay.metacopy": b"",
        "user.kept": b"1",
    }
    unpack(Layer().dir("d", xattrs=smuggled).file("f", b"x", xattrs=smuggled), dest)
    assert xattrs(dest / "d") == {"user.kept": b"1"}
    assert xattrs(dest / "f") == {"user.kept": b"1"}


def test_device_nodes_and_fifos_are_made(dest: Path) -> None:
    layer = Layer().dir("dev").chardev("dev/null", 1, 3, mode=0o666).blockdev("dev/loop0", 7, 0)
    unpack(layer.fifo("dev/initctl", mode=0o600), dest)
    null, loop, fifo = ((dest / "dev" / n).lstat() for n in ("null", "loop0", "initctl"))
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0)
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o600


# -- whiteouts ---------------------------------------------------------------------------------------


def test_a_whiteout_becomes_a_0_0_character_device(dest: Path) -> None:
    unpack(Layer().dir("etc").file("etc/.wh.motd"), dest)
    st = (dest / "etc/motd").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not (dest / "etc/.wh.motd").exists()


def test_a_whiteout_replaces_an_earlier_entry_of_the_same_layer(dest: Path) -> None:
    unpack(Layer().dir("d").file("d/f", b"x").file(".wh.d"), dest)
    st = (dest / "d").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_an_opaque_marker_sets_the_xattr_and_keeps_the_directory_s_own_entries(
    dest: Path,
) -> None:
    layer = Layer().dir("keep").file("keep/before", b"1").file("keep/.wh..wh..opq")
    unpack(layer.file("keep/after", b"2"), dest)
    assert xattrs(dest / "keep") == {"trusted.overlay.opaque": b"y"}
    assert sorted(os.listdir(dest / "keep")) == ["after", "before"]


# -- digests and compression -------------------------------------------------------------------------


def plain_tar() -> bytes:
    """A tar as tarfile writes it: end blocks, padded to a 10 KiB record; plus three zero
    blocks more, which still count in the digest."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("a", b"a" * 700), ("b/c", b"c")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            tar.addfile(info, io.BytesIO(data))
    data = out.getvalue() + b"\0" * 3 * BLOCK
    assert len(data) % RECORD == 3 * BLOCK
    return data


COMPRESSIONS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda data: data,
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "zstd": lambda data: zstandard.ZstdCompressor(write_checksum=True).compress(data),
}


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
def test_the_diff_id_is_the_sha256_of_the_uncompressed_tar(dest: Path, compression: str) -> None:
    tar = plain_tar()
    stats = unpack(COMPRESSIONS[compression](tar), dest)
    assert stats.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (dest / "b/c").read_bytes() == b"c"


def test_stats_count_the_entries_and_the_file_bytes(dest: Path) -> None:
    stats = unpack(Layer().dir("d").file("d/a", b"12345").file("b", b"678").symlink("l", "b"), dest)
    assert (stats.entries, stats.size) == (4, 8)


def test_a_zstd_layer_of_several_frames_and_a_skippable_one_unpacks_whole(dest: Path) -> None:
    tar = Layer().file("a", b"a" * 5000).file("b", b"b" * 5000).bytes()
    half = len(tar) // 2
    compressor = zstandard.ZstdCompressor()
    skippable = struct.pack("<II", 0x184D2A5E, 6) + b"nonsense"[:6]
    blob = compressor.compress(tar[:half]) + skippable + compressor.compress(tar[half:])
    stats = unpack(blob, dest)
    assert stats.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (dest / "b").read_bytes() == b"b" * 5000


# -- layouts -------------------------------------------------------------------------------------------


def test_a_layer_without_its_parent_directory_entries_still_unpacks(dest: Path) -> None:
    unpack(Layer().file("usr/share/doc/pkg/README", b"read me"), dest)
    assert (dest / "usr/share/doc/pkg/README").read_bytes() == b"read me"
    assert stat.S_IMODE((dest / "usr/share").stat().st_mode) == 0o755


def test_an_archive_of_only_its_end_blocks_is_an_empty_layer(dest: Path) -> None:
    stats = unpack(b"\0" * RECORD, dest)
    assert os.listdir(dest) == []
    assert stats.entries == 0


def test_an_archive_without_end_blocks_ending_between_entries_unpacks(dest: Path) -> None:
    """As Go's archive/tar (docker, containerd) reads it."""
    unpack(Layer().file("a", b"a").bytes(end=False, record=False), dest)
    assert (dest / "a").read_bytes() == b"a"


def test_a_later_file_replaces_an_earlier_file(dest: Path) -> None:
    unpack(Layer().file("f", b"first", mode=0o600).file("f", b"second", mode=0o644), dest)
    assert (dest / "f").read_bytes() == b"second"
    assert stat.S_IMODE((dest / "f").stat().st_mode) == 0o644


def test_a_later_directory_replaces_an_earlier_file(dest: Path) -> None:
    unpack(Layer().file("x", b"file").dir("x").file("x/inner", b"in"), dest)
    assert (dest / "x/inner").read_bytes() == b"in"


def test_a_later_file_replaces_an_earlier_directory_and_its_contents(dest: Path) -> None:
    layer = Layer().dir("x", mtime=1_000_000_000).dir("x/sub").file("x/sub/f", b"f")
    unpack(layer.file("x", b"now a file"), dest)
    assert (dest / "x").read_bytes() == b"now a file"


def test_a_later_symlink_replaces_an_earlier_file(dest: Path) -> None:
    unpack(Layer().file("x", b"file").symlink("x", "target"), dest)
    assert os.readlink(dest / "x") == "target"


def test_a_hardlink_to_a_file_replaced_later_keeps_the_old_content(dest: Path) -> None:
    unpack(Layer().file("a", b"old").hardlink("b", "a").file("a", b"new"), dest)
    assert (dest / "a").read_bytes() == b"new"
    assert (dest / "b").read_bytes() == b"old"


def test_a_path_two_thousand_directories_deep_unpacks_and_can_be_removed(dest: Path) -> None:
    deep = "/".join(["d"] * 1990) + "/f"
    unpack(Layer().file(deep, b"deep"), dest)
    remove_tree(dest)
    assert not dest.exists()


# -- sparse files -------------------------------------------------------------------------------------

SPARSE_SIZE = 10 * GIB
SEGMENTS = [
    (0, b"A" * 4096),
    (3 * GIB + 5, b"B" * 1000),
    (5 * GIB, b"C" * 8192),
    (7 * GIB + 12345, b"D" * 10),
    (9 * GIB, b"E" * 513),
    (SPARSE_SIZE - 100, b"F" * 100),  # the file ends with data
]
SPARSE_FORMATS = {
    "gnu": Layer.gnu_sparse,  # the old GNU 'S' header, six segments: one extension block
    "pax-0.1": Layer.pax_sparse_01,
    "pax-1.0": Layer.pax_sparse_10,
}


@pytest.mark.parametrize("form", sorted(SPARSE_FORMATS))
def test_a_huge_sparse_file_is_written_sparse_with_its_data_in_place(dest: Path, form: str) -> None:
    layer = Layer()
    SPARSE_FORMATS[form](layer, "disk.img", SPARSE_SIZE, SEGMENTS)
    unpack(layer.file("after", b"next entry"), dest)
    image = dest / "disk.img"
    st = image.stat()
    assert st.st_size == SPARSE_SIZE
    assert st.st_blocks * 512 < 1 << 20  # a few segments, not 10 GiB
    with open(image, "rb") as f:
        for offset, data in SEGMENTS:
            f.seek(offset)
            assert f.read(len(data)) == data, offset
        f.seek(GIB)
        assert f.read(4096) == b"\0" * 4096  # a hole
    assert (dest / "after").read_bytes() == b"next entry"


def test_a_sparse_file_that_ends_in_a_hole_has_its_full_size(dest: Path) -> None:
    layer = Layer()
    layer.pax_sparse_10("s", 4 * GIB, [(1 << 20, b"x" * 100)])
    unpack(layer, dest)
    assert (dest / "s").stat().st_size == 4 * GIB


# -- damage ------------------------------------------------------------------------------------------


def honest() -> bytes:
    return Layer().dir("d").file("d/a", b"a" * 3000).file("d/b", b"b" * 3000).bytes()


def test_an_archive_cut_inside_file_data_is_refused_and_leaves_nothing(dest: Path) -> None:
    message = refused(honest()[: 5 * BLOCK + 100], dest)
    assert "ends inside 'd/a'" in message
    assert not dest.exists()


def test_an_archive_cut_inside_a_header_is_refused_and_leaves_nothing(dest: Path) -> None:
    data = honest()
    cut = data.index(b"d/b") + 200  # inside the header of d/b, past the earlier entries
    message = refused(data[:cut], dest)
    assert "truncated header" in message
    assert not dest.exists()


def test_an_archive_with_a_damaged_header_is_refused(dest: Path) -> None:
    data = bytearray(honest())
    data[data.index(b"d/b") + 100] ^= 0x55
    assert "bad checksum" in refused(bytes(data), dest)
    assert not dest.exists()


def test_a_corrupt_gzip_layer_is_refused_and_leaves_nothing(dest: Path) -> None:
    blob = bytearray(gzip.compress(honest()))
    blob[len(blob) // 2 : len(blob) // 2 + 16] = b"\xaa" * 16
    refused(bytes(blob), dest)
    assert not dest.exists()


def test_a_gzip_layer_cut_short_is_refused(dest: Path) -> None:
    blob = gzip.compress(honest())
    refused(blob[: len(blob) - 20], dest)
    assert not dest.exists()


def test_a_zstd_layer_cut_inside_a_frame_is_refused(dest: Path) -> None:
    """The zstd decompressor itself ends quietly where the data ends."""
    blob = zstandard.ZstdCompressor().compress(honest() + os.urandom(4000))
    assert "the zstd stream ends inside a frame" in refused(blob[:-10], dest)
    assert not dest.exists()


def test_garbage_after_the_zstd_frames_is_refused(dest: Path) -> None:
    blob = zstandard.ZstdCompressor().compress(honest()) + b"garbage!"
    refused(blob, dest)
    assert not dest.exists()


def test_an_empty_blob_is_refused(dest: Path) -> None:
    assert "empty file" in refused(b"", dest)


# -- the store -----------------------------------------------------------------------------------------


def test_the_store_unpacks_a_layer_into_place_under_its_diff_id(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    tar = Layer().dir("etc").file("etc/motd", b"hi").bytes()
    blob = store.put_blob(gzip.compress(tar))
    diff_id = store.ensure_layer(blob, WHAT)
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (store.layer_path(diff_id) / "etc/motd").read_bytes() == b"hi"


def test_the_store_keeps_nothing_of_a_refused_layer(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    blob = store.put_blob(Layer().file("ok", b"x").file("../../escape", b"x").bytes())
    with pytest.raises(LayerError, match="points outside the layer"):
        store.ensure_layer(blob, WHAT)
    assert list((store.root / "layers").iterdir()) == []
    assert list((store.root / "l").iterdir()) == []
