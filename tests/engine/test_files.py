"""Directories whose subdirectories the filesystem places apart (ext4's chattr +T)."""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

import pytest

from engine.cgroups import detect
from engine.container.runtime import Runtime
from engine.files import make_spread_directory

TOPDIR = 0x00020000
GETFLAGS = 0x80086601


def flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        value: int = struct.unpack("i", fcntl.ioctl(fd, GETFLAGS, b"\0" * 4))[0]
    finally:
        os.close(fd)
    return value


def topdir_supported(tmp_path: Path) -> bool:
    try:
        flags(tmp_path)
    except OSError:
        return False
    return True


def test_a_spread_directory_is_made_with_its_parents_and_carries_the_flag(tmp_path: Path) -> None:
    if not topdir_supported(tmp_path):
        pytest.skip("the filesystem of the temporary directory keeps no inode flags")
    path = tmp_path / "a" / "b"
    make_spread_directory(path)
    make_spread_directory(path)  # again: nothing changes, no error
    assert path.is_dir()
    assert flags(path) & TOPDIR
    assert not flags(tmp_path / "a") & TOPDIR  # the parents are plain


def test_a_filesystem_without_inode_flags_makes_the_directory_all_the_same() -> None:
    path = Path("/proc/self/fd")  # procfs: exists, and knows no inode flags
    make_spread_directory(path)


@pytest.mark.kernel
def test_the_runtime_spreads_its_containers(tmp_path: Path) -> None:
    if not topdir_supported(tmp_path):
        pytest.skip("the filesystem of the temporary directory keeps no inode flags")
    runtime = Runtime(tmp_path / "root", detect())
    assert flags(runtime.containers) & TOPDIR
