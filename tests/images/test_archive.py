"""Images from files: docker save and OCI archives (as skopeo writes them), rootfs import, save."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.errors import ImageError
from engine.images.archive import ConfigChanges, import_rootfs, load_archive, save_archive
from engine.images.reference import parse_reference
from engine.images.store import ImageStore
from tests.images.imagetools import OciLayout, oci_archive, run_tool, skopeo_copy


def test_import_makes_a_one_layer_image_with_the_given_config(store: ImageStore, busybox_tar: Path) -> None:
    changes = ConfigChanges(
        cmd=("sh", "-c", "echo hi"), entrypoint=("/bin/env",), env=("A=1",), working_dir="/tmp", user="app"
    )
    image = import_rootfs(store, busybox_tar, parse_reference("bb:imported"), changes)
    assert image.repo_tags == ("bb:imported",)
    assert len(image.layers) == 1
    assert image.config.cmd == ("sh", "-c", "echo hi")
    assert image.config.entrypoint == ("/bin/env",)
    assert image.config.env == ("A=1",)
    assert (image.config.working_dir, image.config.user) == ("/tmp", "app")
    layer = store.layer_path(image.layers[0].diff_id)
    assert os.readlink(layer / "bin/sh") == "busybox"
    assert (layer / "tmp").stat().st_mode & 0o7777 == 0o1777


def test_import_of_a_file_that_is_not_a_tar_fails_and_leaves_no_image(store: ImageStore, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar"
    bogus.write_bytes(b"this is not a tar archive" * 100)
    with pytest.raises(ImageError, match=r"bogus.tar"):
        import_rootfs(store, bogus, parse_reference("bogus"), ConfigChanges())
    assert store.images() == []
    assert list((store.root / "layers").iterdir()) == []


def test_docker_archive_loads_with_all_its_tags(store: ImageStore, docker_archive: Path) -> None:
    result = load_archive(store, docker_archive)
    assert [i.repo_tags for i in result.images] == [("busybox:local", "busybox:other")]
    image = store.get("busybox:local")
    assert image.config.cmd == ("sh",)
    assert store.get("docker.io/library/busybox:other").id == image.id


def test_oci_archive_loads_with_its_ref_name(store: ImageStore, oci_archive: Path) -> None:
    result = load_archive(store, oci_archive)
    assert result.images[0].repo_tags == ("busybox:latest",)
    assert result.unnamed == ()


def test_oci_archive_named_only_by_a_tag_loads_unnamed(store: ImageStore, oci_layout: OciLayout, tmp_path: Path) -> None:
    archive = oci_archive(oci_layout, "busybox:latest", tmp_path / "x.tar", ref="latest")
    result = load_archive(store, archive)
    assert result.unnamed == (result.images[0].id,)
    assert result.images[0].repo_tags == ()


def test_archive_with_gzip_layers_loads(store: ImageStore, oci_layout: OciLayout, tmp_path: Path) -> None:
    archive = tmp_path / "gz.tar"
    skopeo_copy(oci_layout.ref("busybox:latest"), f"oci-archive:{archive}:busybox:gz", "--dest-compress")
    image = load_archive(store, archive).images[0]
    assert image.layers[0].media_type.endswith("gzip")
    assert store.get("busybox:gz").id == image.id


def test_multi_arch_oci_archive_loads_this_machines_image(store: ImageStore, oci_layout: OciLayout, tmp_path: Path) -> None:
    archive = tmp_path / "multi.tar"
    skopeo_copy(oci_layout.ref("multiarch:latest"), f"oci-archive:{archive}:multiarch:latest", "--all")
    image = load_archive(store, archive).images[0]
    assert image.config.architecture == "amd64"
    assert (store.layer_path(image.layers[-1].diff_id) / "arch").read_text() == "amd64"


def test_loading_twice_shares_layers(store: ImageStore, docker_archive: Path, oci_archive: Path) -> None:
    load_archive(store, docker_archive)
    load_archive(store, oci_archive)
    assert len(list((store.root / "layers").iterdir())) == 1


def test_a_file_that_is_no_archive_is_refused_with_its_name(store: ImageStore, tmp_path: Path) -> None:
    path = tmp_path / "nothing.tar"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(ImageError, match=r"nothing.tar"):
        load_archive(store, path)


def test_an_archive_whose_layer_does_not_match_its_diff_id_is_refused(store: ImageStore, docker_archive: Path, tmp_path: Path) -> None:
    import tarfile

    tampered = tmp_path / "tampered.tar"
    with tarfile.open(docker_archive) as src, tarfile.open(tampered, "w") as dst:
        manifest = json.loads(src.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config_name = manifest[0]["Config"]
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name == config_name and data is not None:
                config = json.loads(data.read())
                config["rootfs"]["diff_ids"][0] = "sha256:" + "1" * 64
                raw = json.dumps(config).encode()
                member.size = len(raw)
                import io

                dst.addfile(member, io.BytesIO(raw))
            else:
                dst.addfile(member, data)
    with pytest.raises(ImageError, match=r"does not match the diff id"):
        load_archive(store, tampered)
    assert store.images() == []


def test_save_writes_an_archive_skopeo_reads_back(store: ImageStore, docker_archive: Path, tmp_path: Path) -> None:
    image = load_archive(store, docker_archive).images[0]
    out = tmp_path / "saved.tar"
    save_archive(store, [(image, [parse_reference("busybox:saved")])], out)
    inspected = json.loads(run_tool("skopeo", "inspect", f"docker-archive:{out}"))
    assert inspected["Layers"] == [layer.diff_id for layer in image.layers]
    # and a second store loads it with the same image id
    other = ImageStore(tmp_path / "other")
    assert load_archive(other, out).images[0].id == image.id
    assert other.get("busybox:saved").id == image.id


def test_save_of_a_gzip_layer_image_writes_it_uncompressed(store: ImageStore, busybox_tar: Path, tmp_path: Path) -> None:
    image = import_rootfs(store, busybox_tar, parse_reference("bb:gz"), ConfigChanges())
    out = tmp_path / "saved.tar"
    save_archive(store, [(image, list(map(parse_reference, image.repo_tags)))], out)
    skopeo_copy(f"docker-archive:{out}", f"oci:{tmp_path / 'layout'}:bb")
    index = json.loads((tmp_path / "layout/index.json").read_text())
    assert index["manifests"]
    assert load_archive(ImageStore(tmp_path / "again"), out).images[0].id == image.id
