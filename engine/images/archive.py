"""Images to and from files: `docker save` archives, OCI image-layout archives, and a root
filesystem tarball imported as a one-layer image (as `docker import` does).

Archives are read member by member (never extracted): each blob is streamed into the store and
checked against its digest, and each layer is unpacked by the store's safe unpacker.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.errors import ImageError
from engine.images.manifest import (
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    OCI_LAYER,
    Descriptor,
    layer_media_type,
    make_manifest,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from engine.images.reference import Reference, parse_reference
from engine.images.store import Image, ImageStore
from engine.images.unpack import decompressed
from engine.linux import machine_architecture

__all__ = ["ConfigChanges", "LoadResult", "import_rootfs", "load_archive", "save_archive"]

_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"


@dataclass(frozen=True)
class LoadResult:
    """What a load added: each image with the names the archive gave it."""

    images: tuple[Image, ...]
    unnamed: tuple[str, ...]  # ids of images the archive gave no usable name


@dataclass(frozen=True)
class ConfigChanges:
    """Defaults an imported image's config gets (like `docker import --change`)."""

    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str | None = None
    user: str | None = None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- import -----------------------------------------------------------------------------------


def import_rootfs(
    store: ImageStore, tarball: Path, name: Reference | None, changes: ConfigChanges
) -> Image:
    """Make a one-layer image of the root filesystem tarball `tarball` (plain, gzip or zstd)."""
    what = f"rootfs {tarball}"
    with store.writing():
        try:
            with open(tarball, "rb") as source:
                head = source.read(4)
                source.seek(0)
                blob, size = store.copy_blob(source, None, what)
        except OSError as exc:
            raise ImageError(f"cannot read {tarball}: {exc.strerror}") from exc
        diff_id = store.ensure_layer(blob, what)
        config: dict[str, Any] = {}
        if changes.cmd is not None:
            config["Cmd"] = list(changes.cmd)
        if changes.entrypoint is not None:
            config["Entrypoint"] = list(changes.entrypoint)
        if changes.env:
            config["Env"] = list(changes.env)
        if changes.working_dir:
            config["WorkingDir"] = changes.working_dir
        if changes.user:
            config["User"] = changes.user
        created = _now()
        config_doc = {
            "architecture": machine_architecture(),
            "os": "linux",
            "created": created,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [
                {"created": created, "created_by": f"composer image import {tarball.name}"}
            ],
        }
        config_bytes = json.dumps(config_doc, separators=(",", ":")).encode()
        config_digest = store.put_blob(config_bytes)
        manifest = make_manifest(
            Descriptor("", config_digest, len(config_bytes)),
            [Descriptor(layer_media_type(head), blob, size)],
        )
        return store.add_image(store.put_blob(manifest), [name] if name else [])


# -- load -------------------------------------------------------------------------------------


class _Archive:
    """Random access to the members of an archive file, by name, without extracting."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:*")
            self._members = {m.name.removeprefix("./"): m for m in self._tar.getmembers()}
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ImageError(f"{path} is not an image archive: {exc}") from exc

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tar.close()

    def has(self, name: str) -> bool:
        return name in self._members

    def open(self, name: str) -> IO[bytes]:
        member = self._members.get(name.removeprefix("./"))
        reader = self._tar.extractfile(member) if member is not None else None
        if reader is None:
            raise ImageError(f"{self.path}: the archive has no file {name!r}")
        return reader

    def read(self, name: str, limit: int = 16 << 20) -> bytes:
        with self.open(name) as reader:
            data = reader.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{self.path}: {name} is too large for a JSON document")
        return data


def load_archive(store: ImageStore, path: Path) -> LoadResult:
    """Load every image of a `docker save` archive or an OCI image-layout archive."""
    with store.writing(), _Archive(path) as archive:
        if archive.has("manifest.json") and not archive.has("index.json"):
            return _load_docker(store, archive)
        if archive.has("index.json"):
            return _load_oci(store, archive)
        raise ImageError(
            f"{path} is neither a docker save archive (manifest.json) nor an OCI image layout "
            "(index.json)"
        )


def _load_docker(store: ImageStore, archive: _Archive) -> LoadResult:
    try:
        entries = json.loads(archive.read("manifest.json"))
        assert isinstance(entries, list)
    except (ValueError, AssertionError) as exc:
        raise ImageError(f"{archive.path}: manifest.json is not a list of images") from exc
    images, unnamed = [], []
    for entry in entries:
        try:
            config_name, layer_names = entry["Config"], entry["Layers"]
            tags = entry.get("RepoTags") or []
        except (KeyError, TypeError) as exc:
            raise ImageError(f"{archive.path}: manifest.json entry lacks {exc}") from exc
        config_bytes = archive.read(config_name)
        config_digest = store.put_blob(config_bytes)
        config = parse_config(config_bytes, f"{archive.path}: {config_name}")
        if len(config.diff_ids) != len(layer_names):
            raise ImageError(f"{archive.path}: {config_name} and manifest.json disagree on layers")
        layers = []
        for layer_name, diff_id in zip(layer_names, config.diff_ids, strict=True):
            what = f"{archive.path}: layer {layer_name}"
            with archive.open(layer_name) as reader:
                head = reader.read(4)
            with archive.open(layer_name) as reader:
                blob, size = store.copy_blob(reader, None, what)
            store.ensure_layer(blob, what, diff_id)
            layers.append(Descriptor(layer_media_type(head), blob, size))
        manifest = make_manifest(Descriptor("", config_digest, len(config_bytes)), layers)
        names = [parse_reference(t) for t in tags]
        image = store.add_image(store.put_blob(manifest), names)
        images.append(image)
        if not names:
            unnamed.append(image.id)
    return LoadResult(tuple(images), tuple(unnamed))


def _blob_name(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _copy_verified(store: ImageStore, archive: _Archive, descriptor: Descriptor, what: str) -> None:
    if store.has_blob(descriptor.digest):
        return
    with archive.open(_blob_name(descriptor.digest)) as reader:
        store.copy_blob(reader, descriptor.digest, what)


def _load_oci(store: ImageStore, archive: _Archive) -> LoadResult:
    index_bytes = archive.read("index.json")
    images, unnamed = [], []
    for descriptor in parse_index(index_bytes, f"{archive.path}: index.json"):
        annotations = _annotations(index_bytes, descriptor.digest)
        name = annotations.get(_CONTAINERD_NAME) or annotations.get(_REF_NAME) or ""
        what = f"{archive.path}: {name or descriptor.digest}"
        chosen = descriptor
        if descriptor.media_type in INDEX_TYPES:
            _copy_verified(store, archive, descriptor, what)
            nested = parse_index(store.read_blob(descriptor.digest), what)
            chosen = select_platform(nested, machine_architecture(), what)
        elif descriptor.media_type not in MANIFEST_TYPES:
            raise ImageError(f"{what}: unsupported media type {descriptor.media_type!r}")
        _copy_verified(store, archive, chosen, what)
        manifest = parse_manifest(store.read_blob(chosen.digest), what)
        _copy_verified(store, archive, manifest.config, what)
        config = parse_config(store.read_blob(manifest.config.digest), what)
        if len(config.diff_ids) != len(manifest.layers):
            raise ImageError(f"{what}: the config and the manifest disagree on layers")
        for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
            if not store.has_layer(diff_id):
                _copy_verified(store, archive, layer, f"{what}: layer {layer.digest}")
                store.ensure_layer(layer.digest, f"{what}: layer {layer.digest}", diff_id)
        names = [parse_reference(name)] if _is_full_name(name) else []
        image = store.add_image(chosen.digest, names)
        images.append(image)
        if not names:
            unnamed.append(image.id)
    return LoadResult(tuple(images), tuple(unnamed))


def _annotations(index_bytes: bytes, digest: str) -> dict[str, str]:
    for entry in json.loads(index_bytes).get("manifests", []):
        if entry.get("digest") == digest and isinstance(entry.get("annotations"), dict):
            return {str(k): str(v) for k, v in entry["annotations"].items()}
    return {}


def _is_full_name(name: str) -> bool:
    """A ref.name that names a repository (`busybox:local`), not only a tag (`latest`)."""
    if not name or not any(c in name for c in ":/@"):
        return False
    try:
        parse_reference(name)
    except ImageError:
        return False
    return True


# -- save -------------------------------------------------------------------------------------


def save_archive(
    store: ImageStore, images: Iterable[tuple[Image, list[Reference]]], out: Path
) -> None:
    """Write a `docker save` archive of `images` (each with the names to record) to `out`.

    Layers are written uncompressed, as docker save does; the file appears only when complete.
    """
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            entries, written = [], set()
            for image, names in images:
                config_name = f"{image.id.removeprefix('sha256:')}.json"
                if config_name not in written:
                    _add_bytes(tar, config_name, store.read_blob(image.id))
                    written.add(config_name)
                layer_names = []
                for layer in image.layers:
                    name = f"{layer.diff_id.removeprefix('sha256:')}/layer.tar"
                    if name not in written:
                        _add_layer(tar, name, store, layer.blob, layer.media_type)
                        written.add(name)
                    layer_names.append(name)
                entries.append(
                    {
                        "Config": config_name,
                        "RepoTags": [n.familiar() for n in names],
                        "Layers": layer_names,
                    }
                )
            _add_bytes(tar, "manifest.json", json.dumps(entries).encode())
        os.replace(tmp, out)
    except OSError as exc:
        raise ImageError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_layer(
    tar: tarfile.TarFile, name: str, store: ImageStore, blob: str, media_type: str
) -> None:
    """Add a layer uncompressed; a compressed blob is expanded into a temp file first, since a
    tar header needs the size before the content."""
    if media_type not in LAYER_TYPES:
        raise ImageError(f"layer {blob} has an unsupported media type {media_type!r}")
    with open(store.blob_path(blob), "rb") as source:
        head = source.read(4)
        source.seek(0)
        if layer_media_type(head) == OCI_LAYER:
            info = tar.gettarinfo(fileobj=source, arcname=name)
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
            tar.addfile(info, source)
            return
        with tempfile.TemporaryFile(dir=store.root) as plain:
            shutil.copyfileobj(decompressed(source), plain, 1 << 20)
            plain.seek(0)
            info = tar.gettarinfo(fileobj=plain, arcname=name)
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
            tar.addfile(info, plain)
