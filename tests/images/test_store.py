"""The image store: names, ids, removal, pruning, and staying consistent under concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import ImageError
from engine.images.archive import ConfigChanges, import_rootfs, load_archive
from engine.images.reference import parse_reference
from engine.images.store import ImageStore

NO_CONTAINERS: set[str] = set()


def none_in_use() -> set[str]:
    return NO_CONTAINERS


def test_an_image_is_found_by_name_id_and_id_prefix(store: ImageStore, docker_archive: Path) -> None:
    image = load_archive(store, docker_archive).images[0]
    assert store.get("busybox:local") == image
    assert store.get(image.id) == image
    assert store.get(image.short_id) == image
    assert store.get(image.id.removeprefix("sha256:")[:6]) == image


def test_an_unknown_image_is_an_error_naming_it(store: ImageStore) -> None:
    with pytest.raises(ImageError, match=r"no such image: nope:1"):
        store.get("nope:1")


def test_removing_one_name_keeps_the_image_under_its_other_name(store: ImageStore, docker_archive: Path) -> None:
    image = load_archive(store, docker_archive).images[0]
    assert store.remove("busybox:local", none_in_use) == ["Untagged: busybox:local"]
    assert store.get("busybox:other").id == image.id
    assert store.find("busybox:local") is None


def test_removing_the_last_name_deletes_the_image_and_its_layers(store: ImageStore, docker_archive: Path) -> None:
    image = load_archive(store, docker_archive).images[0]
    store.remove("busybox:local", none_in_use)
    done = store.remove("busybox:other", none_in_use)
    assert done == ["Untagged: busybox:other", f"Deleted: {image.id}"]
    assert store.images() == []
    assert list((store.root / "layers").iterdir()) == []
    assert list((store.root / "blobs/sha256").iterdir()) == []
    assert list((store.root / "l").iterdir()) == []


def test_removing_by_id_an_image_with_several_names_needs_force(store: ImageStore, docker_archive: Path) -> None:
    image = load_archive(store, docker_archive).images[0]
    with pytest.raises(ImageError, match=r"several names"):
        store.remove(image.short_id, none_in_use)
    store.remove(image.short_id, none_in_use, force=True)
    assert store.images() == []


def test_an_image_a_container_uses_is_not_deleted(store: ImageStore, docker_archive: Path) -> None:
    image = load_archive(store, docker_archive).images[0]
    store.remove("busybox:local", none_in_use)
    with pytest.raises(ImageError, match=r"used by a container"):
        store.remove("busybox:other", lambda: {image.id})
    assert store.get("busybox:other").id == image.id


def test_prune_removes_unnamed_images_and_what_only_they_used(store: ImageStore, docker_archive: Path, busybox_tar: Path) -> None:
    kept = load_archive(store, docker_archive).images[0]
    dangling = import_rootfs(store, busybox_tar, None, ConfigChanges())
    report = store.prune(none_in_use)
    assert report.images == (dangling.id,)
    assert (report.layers, report.blobs) == (1, 3)  # its layer; its config, manifest, layer blob
    assert store.images() == [kept]
    assert store.layer_path(kept.layers[0].diff_id).is_dir()


def test_prune_all_keeps_images_containers_use(store: ImageStore, docker_archive: Path, busybox_tar: Path) -> None:
    used = load_archive(store, docker_archive).images[0]
    import_rootfs(store, busybox_tar, parse_reference("bb:unused"), ConfigChanges())
    report = store.prune(lambda: {used.id}, all_unused=True)
    assert [i.id for i in store.images()] == [used.id]
    assert len(report.images) == 1


def test_an_image_with_a_missing_layer_is_not_listed(store: ImageStore, docker_archive: Path) -> None:
    image = load_archive(store, docker_archive).images[0]
    import shutil

    shutil.rmtree(store.layer_path(image.layers[0].diff_id).parent)
    assert store.images() == []
    assert store.find("busybox:local") is None


def test_leftovers_of_an_interrupted_unpack_are_ignored_and_pruned(store: ImageStore, docker_archive: Path) -> None:
    (store.root / "layers/.tmp-deadbeef/diff").mkdir(parents=True)
    load_archive(store, docker_archive)
    assert len(store.images()) == 1
    store.prune(none_in_use)
    assert not (store.root / "layers/.tmp-deadbeef").exists()


def test_two_processes_loading_the_same_archive_at_once_leave_one_good_copy(store: ImageStore, docker_archive: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from engine.images.store import ImageStore;"
        "from engine.images.archive import load_archive;"
        "load_archive(ImageStore(Path(sys.argv[1])), Path(sys.argv[2]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(store.root), str(docker_archive)])
        for _ in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    image = store.get("busybox:local")
    layers = [p for p in (store.root / "layers").iterdir()]
    assert [p.name for p in layers] == [image.layers[0].diff_id.removeprefix("sha256:")]
    assert len(list((store.root / "l").iterdir())) == 1
    assert (store.layer_path(image.layers[0].diff_id) / "bin/busybox").stat().st_size > 100_000
    assert json.loads((store.root / "refs.json").read_text())["docker.io/library/busybox:local"] == image.id


def test_a_tag_points_a_new_name_at_an_image(store: ImageStore, docker_archive: Path) -> None:
    image = load_archive(store, docker_archive).images[0]
    store.tag(image, parse_reference("mine/box:v1"))
    assert store.get("mine/box:v1").repo_tags == ("busybox:local", "busybox:other", "mine/box:v1")


def test_a_load_killed_at_any_moment_leaves_a_usable_store(store: ImageStore, tmp_path: Path) -> None:
    import signal
    import time

    from tests.images.imagetools import OciLayout, big_image
    from tests.images.imagetools import docker_archive as make_docker_archive

    layout = OciLayout(tmp_path / "layout")
    big_image(layout, "big:1", 40, 400, layers=4)
    archive = make_docker_archive(layout, "big:1", tmp_path / "big.tar", ["big:1"])
    code = (
        "import sys; from pathlib import Path; from engine.images.store import ImageStore;"
        "from engine.images.archive import load_archive;"
        "load_archive(ImageStore(Path(sys.argv[1])), Path(sys.argv[2]))"
    )
    for delay in (0.3, 0.6, 0.9):
        proc = subprocess.Popen([sys.executable, "-c", code, str(store.root), str(archive)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        listed = store.images()  # never an incomplete image
        assert all(len(i.layers) == 4 for i in listed)
    image = load_archive(store, archive).images[0]
    assert store.get("big:1").id == image.id
    store.prune(none_in_use)
    assert not [p for p in (store.root / "layers").iterdir() if p.name.startswith(".tmp-")]
