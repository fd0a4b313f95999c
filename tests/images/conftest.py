"""Real images and registries for the image tests, built once per session where they can be.

Session fixtures (built on first use): ``busybox_dir``, ``busybox_tar``, ``oci_layout``
(``busybox:latest``, ``multi:latest``, ``multiarch:latest``), ``docker_archive`` and
``oci_archive``. Per test: ``registry`` and ``auth_registry`` (user ``tester``, password
``s3cret``), stopped when the test ends however it ends. Everything is skipped, with the
reason, on a machine without skopeo, umoci, docker-registry or busybox.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.images.manifest import Descriptor, make_manifest
from engine.images.store import Image, ImageStore
from engine.rootfs import Rootfs
from tests.images import imagetools
from tests.images.imagetools import (
    OciLayout,
    Registry,
    busybox_rootfs,
    layer_tar,
    missing_tools,
    multilayer_with_whiteouts,
    tar_dir,
)

AUTH = ("tester", "s3cret")
ARCHES = ("amd64", "arm64")


def _require_tools() -> None:
    missing = missing_tools()
    if missing:
        pytest.skip(
            f"image fixtures need {', '.join(missing)} (apt install skopeo umoci "
            "docker-registry busybox-static)"
        )


@pytest.fixture(scope="session")
def busybox_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal busybox root filesystem directory (see imagetools.busybox_rootfs)."""
    _require_tools()
    return busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory, busybox_dir: Path) -> Path:
    """``busybox_dir`` as a gzip tar, laid out like ``docker export`` output."""
    return tar_dir(
        busybox_dir, tmp_path_factory.mktemp("busybox-tar") / "busybox.tar.gz", compression="gzip"
    )


@pytest.fixture(scope="session")
def oci_layout(tmp_path_factory: pytest.TempPathFactory, busybox_dir: Path) -> OciLayout:
    """An OCI layout holding ``busybox:latest`` (Cmd ["sh"]), ``multi:latest`` (busybox plus
    two layers with whiteouts, see imagetools.MULTILAYER_VIEW) and ``multiarch:latest`` (an
    index of amd64 and arm64 busybox images whose file ``/arch`` names their architecture)."""
    root = tmp_path_factory.mktemp("oci")
    layout = OciLayout(root / "layout")
    layout.new("busybox:latest", busybox_dir, {"Cmd": ["sh"], "architecture": "amd64"})
    multilayer_with_whiteouts(layout, "multi:latest", base="busybox:latest")
    sources = {}
    for arch in ARCHES:
        source = f"multiarch-{arch}"
        layer = layer_tar(root / f"arch-{arch}.tar", {"arch": arch.encode()})
        layout.add_layer("busybox:latest", layer, source)
        layout.configure(source, {"architecture": arch})
        sources[arch] = source
    layout.multi_arch_index("multiarch:latest", sources)
    for source in sources.values():
        layout.remove_tag(source)  # the index still reaches them
    layout.gc()
    return layout


@pytest.fixture(scope="session")
def docker_archive(tmp_path_factory: pytest.TempPathFactory, oci_layout: OciLayout) -> Path:
    """busybox as a ``docker save`` archive tagged ``busybox:local`` and ``busybox:other``."""
    dest = tmp_path_factory.mktemp("docker-archive") / "busybox.tar"
    return imagetools.docker_archive(
        oci_layout, "busybox:latest", dest, ["busybox:local", "busybox:other"]
    )


@pytest.fixture(scope="session")
def oci_archive(tmp_path_factory: pytest.TempPathFactory, oci_layout: OciLayout) -> Path:
    """busybox as an ``oci-archive`` whose image is named ``busybox:latest``."""
    dest = tmp_path_factory.mktemp("oci-archive") / "busybox.oci.tar"
    return imagetools.oci_archive(oci_layout, "busybox:latest", dest)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A running registry without auth, with empty storage, stopped after the test."""
    _require_tools()
    with Registry(tmp_path / "registry") as running:
        yield running


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    """A running registry with basic auth for ``tester``/``s3cret``, stopped after the test."""
    _require_tools()
    with Registry(tmp_path / "auth-registry", auth=AUTH) as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    """An empty image store in the test's own state root."""
    return ImageStore(tmp_path / "state" / "images")


@pytest.fixture
def rootfs_dirs(tmp_path: Path) -> Iterator[list[Rootfs]]:
    """Root filesystems a test mounts: add each to the list; all are unmounted afterwards."""
    made: list[Rootfs] = []
    yield made
    for rootfs in made:
        rootfs.remove()


def image_with(store: ImageStore, tmp_path: Path, layers: list[dict[str, bytes | None]], symlinks: dict[str, str] | None = None) -> Image:
    """An image made directly in the store from hand-written layers (symlinks in the first)."""
    diff_ids, descriptors = [], []
    for n, entries in enumerate(layers):
        path = layer_tar(tmp_path / f"layer{n}.tar", entries)
        if n == 0 and symlinks:
            with tarfile.open(path, "a") as tar:
                for name, target in symlinks.items():
                    info = tarfile.TarInfo(name)
                    info.type, info.linkname = tarfile.SYMTYPE, target
                    tar.addfile(info)
        data = path.read_bytes()
        blob = store.put_blob(data)
        diff_ids.append(store.ensure_layer(blob, f"layer {n}"))
        descriptors.append(Descriptor("application/vnd.oci.image.layer.v1.tar", blob, len(data)))
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_digest = store.put_blob(config)
    manifest = store.put_blob(make_manifest(Descriptor("", config_digest, len(config)), descriptors))
    return store.add_image(manifest, [])
