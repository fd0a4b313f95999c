"""A container's root filesystem: the image's layers under one writable layer, mounted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import MountError
from engine.images.archive import load_archive
from engine.images.store import Image, ImageStore
from engine.rootfs import Rootfs
from tests.images.conftest import image_with
from tests.images.imagetools import MULTILAYER_VIEW, OciLayout, oci_archive, walk_view

pytestmark = pytest.mark.kernel


def lowers(store: ImageStore, image: Image) -> list[Path]:
    return [store.layer_link(layer.diff_id) for layer in image.layers]


@pytest.fixture
def multi(store: ImageStore, oci_layout: OciLayout, tmp_path: Path) -> Image:
    archive = oci_archive(oci_layout, "multi:latest", tmp_path / "multi.tar")
    return load_archive(store, archive).images[0]


def new_rootfs(tmp_path: Path, made: list[Rootfs], name: str = "c1") -> Rootfs:
    rootfs = Rootfs(tmp_path / "state/containers" / name)
    made.append(rootfs)
    return rootfs


def test_the_merged_view_applies_whiteouts_and_opaque_directories(store: ImageStore, multi: Image, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    merged = new_rootfs(tmp_path, rootfs_dirs).mount(lowers(store, multi))
    assert dict(walk_view(merged, ["data", "keep", "etc/motd"])) == MULTILAYER_VIEW
    assert (merged / "bin/busybox").is_file()


def test_writes_go_to_the_containers_own_layer_and_survive_a_remount(store: ImageStore, multi: Image, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    rootfs = new_rootfs(tmp_path, rootfs_dirs)
    merged = rootfs.mount(lowers(store, multi))
    (merged / "etc/motd").write_text("changed\n")
    (merged / "data/b").unlink()
    rootfs.unmount()
    assert not rootfs.is_mounted()
    assert (store.layer_path(multi.layers[-1].diff_id) / "etc/motd").read_text() == "motd from layer 3\n"
    merged = rootfs.mount(lowers(store, multi))
    assert (merged / "etc/motd").read_text() == "changed\n"
    assert not (merged / "data/b").exists()


def test_two_containers_of_one_image_do_not_see_each_others_writes(store: ImageStore, multi: Image, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    one = new_rootfs(tmp_path, rootfs_dirs, "one").mount(lowers(store, multi))
    two = new_rootfs(tmp_path, rootfs_dirs, "two").mount(lowers(store, multi))
    (one / "data/new").write_text("1")
    assert not (two / "data/new").exists()


def test_removing_a_rootfs_unmounts_it_and_deletes_its_layer(store: ImageStore, multi: Image, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    rootfs = new_rootfs(tmp_path, rootfs_dirs)
    (tmp_path / "hosts").write_text("")
    rootfs.mount(lowers(store, multi), files={"/etc/hosts": tmp_path / "hosts"})
    rootfs.remove()
    assert not rootfs.directory.exists()
    assert str(rootfs.merged) not in Path("/proc/self/mountinfo").read_text()


def test_read_only_rootfs_refuses_writes(store: ImageStore, multi: Image, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    merged = new_rootfs(tmp_path, rootfs_dirs).mount(lowers(store, multi), read_only=True)
    with pytest.raises(OSError, match=r"Read-only"):
        (merged / "data/new").write_text("x")


def test_generated_files_are_bound_over_their_paths(store: ImageStore, multi: Image, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.0.0.2 web\n")
    hostname = tmp_path / "hostname"
    hostname.write_text("web\n")
    merged = new_rootfs(tmp_path, rootfs_dirs).mount(
        lowers(store, multi), read_only=True, files={"/etc/hosts": hosts, "/etc/hostname": hostname}
    )
    assert (merged / "etc/hosts").read_text() == "10.0.0.2 web\n"
    # rewritten in place on the host, seen at once in the container (same inode)
    with open(hosts, "r+") as f:
        f.write("10.0.0.3 web\n")
    assert (merged / "etc/hosts").read_text() == "10.0.0.3 web\n"
    # the image's own layer is untouched
    assert not (store.layer_path(multi.layers[0].diff_id) / "etc/hosts").read_text()


def test_a_symlink_planted_at_etc_hosts_cannot_redirect_the_bind_mount(store: ImageStore, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    outside = tmp_path / "outside-secret"
    outside.write_text("secret\n")
    image = image_with(
        store, tmp_path, [{"etc": None, "etc/shadow": b"shadow\n"}],
        symlinks={"etc/hosts": "/etc/shadow", "etc/hostname": str(outside)},
    )
    hosts = tmp_path / "hosts"
    hosts.write_text("generated\n")
    merged = new_rootfs(tmp_path, rootfs_dirs).mount(
        lowers(store, image), files={"/etc/hosts": hosts, "/etc/hostname": hosts}
    )
    assert (merged / "etc/hosts").read_text() == "generated\n"
    assert (merged / "etc/shadow").read_text() == "shadow\n"
    assert outside.read_text() == "secret\n"
    assert not os.path.islink(merged / "etc/hosts")


def test_a_directory_symlinked_to_the_root_keeps_binds_inside(store: ImageStore, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    image = image_with(store, tmp_path, [{"bin": None}], symlinks={"etc": "/"})
    hosts = tmp_path / "hosts"
    hosts.write_text("generated\n")
    merged = new_rootfs(tmp_path, rootfs_dirs).mount(lowers(store, image), files={"/etc/hosts": hosts})
    assert (merged / "hosts").read_text() == "generated\n"  # /etc is / inside the container
    assert Path("/etc/hosts").read_text() != "generated\n"


def test_an_image_of_200_layers_mounts_though_their_paths_exceed_a_page(store: ImageStore, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    image = image_with(store, tmp_path, [{f"f{n}": str(n).encode()} for n in range(200)])
    assert sum(len(str(p)) + 1 for p in lowers(store, image)) > 4096
    merged = new_rootfs(tmp_path, rootfs_dirs).mount(lowers(store, image))
    assert (merged / "f0").read_text() == "0"
    assert (merged / "f199").read_text() == "199"


def test_more_layers_than_overlay_stacks_is_an_error_with_the_kernels_reason(store: ImageStore, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    image = image_with(store, tmp_path, [{f"f{n}": b""} for n in range(501)])
    rootfs = new_rootfs(tmp_path, rootfs_dirs)
    with pytest.raises(MountError, match=r"cannot mount the root filesystem.*(too many|limit)"):
        rootfs.mount(lowers(store, image))
    assert not rootfs.is_mounted()


def test_mount_is_idempotent(store: ImageStore, multi: Image, tmp_path: Path, rootfs_dirs: list[Rootfs]) -> None:
    rootfs = new_rootfs(tmp_path, rootfs_dirs)
    rootfs.mount(lowers(store, multi))
    rootfs.mount(lowers(store, multi))
    assert Path("/proc/self/mountinfo").read_text().count(str(rootfs.merged) + " ") == 1
