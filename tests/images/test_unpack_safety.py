"""Hostile layers (tests/images/malicious.py) are refused, or unpacked with everything inside.

Each case is unpacked into ``sandbox/layers/a/b/dest`` beside ``sandbox/outside`` (marker files,
a symlink, an xattr). Whatever the outcome, a listing of the whole sandbox but the layer
directory (types, modes, owners, sizes, link counts, times, content hashes, link targets,
xattrs) is the same after as before, /etc/passwd and /etc/shadow are untouched, and the
absolute paths the archives name outside the sandbox do not exist. Then the outcome is the one
the case states: refused with a LayerError naming the layer and saying why (and the layer
directory removed), or contained, with the entries where the case says.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.errors import LayerError
from engine.files import remove_tree
from engine.images.unpack import unpack_layer
from tests.images.malicious import CORPUS, Sandbox

WATCHED = (Path("/etc/passwd"), Path("/etc/shadow"))


def make_sandbox(sandbox: Sandbox) -> None:
    outside = sandbox.outside
    (outside / "sub").mkdir(parents=True)
    (outside / "marker").write_bytes(b"marker\n")
    (outside / "secret").write_bytes(b"secret\n")
    (outside / "secret").chmod(0o600)
    (outside / "sub" / "deep").write_bytes(b"deep\n")
    (outside / "link").symlink_to("marker")
    os.setxattr(outside, "user.sandbox", b"outside")
    sandbox.dest.mkdir(parents=True)


def _entry(path: Path, whole: bool = True) -> tuple[Any, ...]:
    """What is at `path`; not `whole`: only what removing a subdirectory leaves alone."""
    st = path.lstat()
    xattrs = sorted(
        (name, os.getxattr(path, name, follow_symlinks=False))
        for name in os.listxattr(path, follow_symlinks=False)
    )
    own = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, xattrs)
    if not whole:
        return own
    if stat.S_ISREG(st.st_mode):
        content: str | None = hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        content = os.readlink(path)
    else:
        content = None
    return (*own, st.st_size, st.st_nlink, st.st_rdev, st.st_mtime_ns, st.st_ctime_ns, content)


def listing(sandbox: Sandbox) -> dict[str, tuple[Any, ...]]:
    """Everything in the sandbox but the layer directory; the times and link count of the
    layer directory's parent change when it is removed, so they are left out."""
    base, dest = sandbox.base, sandbox.dest
    out = {".": _entry(base)}
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        if here == dest.parent and dest.name in dirnames:
            dirnames.remove(dest.name)
        for name in (*dirnames, *filenames):
            path = here / name
            out[str(path.relative_to(base))] = _entry(path, whole=path != dest.parent)
    return out


def watched() -> list[tuple[Any, ...]]:
    return [_entry(path) if path.exists() else () for path in WATCHED]


@pytest.fixture
def tmpfs_path() -> Iterator[Path | None]:
    """A directory on /dev/shm when that is a tmpfs (making a hundred thousand inodes on a
    slow disk takes minutes), removed afterwards; else None."""
    with open("/proc/self/mounts") as mounts:
        is_tmpfs = any(
            line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts if line.strip()
        )
    if not is_tmpfs or not os.access("/dev/shm", os.W_OK):
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="composer-unpack-", dir="/dev/shm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_hostile_layer_is_refused_or_kept_inside_its_directory(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    case = CORPUS[name]
    root = (request.getfixturevalue("tmpfs_path") if case.heavy else None) or tmp_path
    sandbox = Sandbox(root / "sandbox", f"composer-unpack-{secrets.token_hex(6)}")
    make_sandbox(sandbox)
    archive = case.build(sandbox)
    before, etc_before = listing(sandbox), watched()
    what = f"layer {name}"
    error: LayerError | None = None
    try:
        try:
            unpack_layer(io.BytesIO(archive), sandbox.dest, what=what)
        except LayerError as exc:
            error = exc

        assert listing(sandbox) == before, "something outside the layer directory changed"
        assert watched() == etc_before
        for path in sandbox.absent:
            assert not os.path.lexists(path), f"{path} was made"

        outcome = "contained" if error is None else "refused"
        assert outcome == case.outcome, f"{name} was {outcome} ({error})"
        if error is not None:
            message = str(error)
            assert what in message
            assert re.search(case.match, message), message
            assert not sandbox.dest.exists(), "a refused layer leaves its directory behind"
        elif case.check is not None:
            case.check(sandbox)
    finally:
        if os.path.lexists(sandbox.dest):
            remove_tree(sandbox.dest)  # some are deeper than shutil.rmtree can go
        for path in sandbox.absent:  # only if the unpacker wrongly made them
            if os.path.lexists(path):
                shutil.rmtree(path, ignore_errors=True)


def test_the_corpus_covers_both_outcomes() -> None:
    outcomes = {case.outcome for case in CORPUS.values()}
    assert outcomes == {"refused", "contained"}
    assert all(case.match for case in CORPUS.values() if case.outcome == "refused")
