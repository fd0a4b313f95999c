"""The JSON documents of an image: manifests, indexes and the image config, parsed and checked."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Final

from engine.errors import ImageError

__all__ = [
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "INDEX_TYPES",
    "LAYER_TYPES",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "Descriptor",
    "ImageConfig",
    "Manifest",
    "Platform",
    "digest_of",
    "layer_media_type",
    "make_manifest",
    "parse_config",
    "parse_index",
    "parse_manifest",
    "select_platform",
]

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES: Final = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES: Final = (OCI_INDEX, DOCKER_LIST)
LAYER_TYPES: Final = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
        # Layers a registry may not redistribute still unpack the same way.
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None


@dataclass(frozen=True)
class Descriptor:
    """A pointer to a blob: its media type, digest and size (and platform in an index)."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a container is made from; `raw` is the whole document."""

    architecture: str
    os: str
    cmd: tuple[str, ...] | None
    entrypoint: tuple[str, ...] | None
    env: tuple[str, ...]
    working_dir: str
    user: str
    exposed_ports: tuple[str, ...]
    stop_signal: str | None
    healthcheck: dict[str, Any] | None
    labels: dict[str, str]
    volumes: tuple[str, ...]
    diff_ids: tuple[str, ...]
    created: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ImageError(f"{what} is not a JSON object")
    return doc


def _descriptor(doc: Any, what: str) -> Descriptor:
    try:
        digest, size = doc["digest"], doc["size"]
        media_type = doc.get("mediaType", "")
    except (TypeError, KeyError) as exc:
        raise ImageError(f"{what}: a descriptor lacks {exc}") from exc
    if not (isinstance(digest, str) and digest.startswith("sha256:") and len(digest) == 71):
        raise ImageError(f"{what}: unsupported digest {digest!r} (only sha256 is supported)")
    if not isinstance(size, int) or size < 0:
        raise ImageError(f"{what}: descriptor {digest} has an invalid size {size!r}")
    platform = None
    if isinstance(doc.get("platform"), dict):
        p = doc["platform"]
        platform = Platform(str(p.get("os", "")), str(p.get("architecture", "")), p.get("variant"))
    return Descriptor(str(media_type), digest, size, platform)


def parse_manifest(data: bytes, what: str) -> Manifest:
    doc = _json(data, what)
    media_type = doc.get("mediaType") or OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise ImageError(f"{what}: unsupported manifest type {media_type!r}")
    if not isinstance(doc.get("layers"), list) or "config" not in doc:
        raise ImageError(f"{what}: the manifest has no config or no layers")
    layers = tuple(_descriptor(layer, what) for layer in doc["layers"])
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise ImageError(f"{what}: unsupported layer type {layer.media_type!r}")
    return Manifest(str(media_type), _descriptor(doc["config"], what), layers)


def parse_index(data: bytes, what: str) -> tuple[Descriptor, ...]:
    doc = _json(data, what)
    if not isinstance(doc.get("manifests"), list):
        raise ImageError(f"{what}: the index has no manifests")
    return tuple(_descriptor(m, what) for m in doc["manifests"])


def select_platform(manifests: tuple[Descriptor, ...], architecture: str, what: str) -> Descriptor:
    """The manifest of an index for linux on `architecture` (arm64 prefers variant v8)."""
    candidates = [
        m
        for m in manifests
        if m.platform is not None
        and m.platform.os == "linux"
        and m.platform.architecture == architecture
    ]
    if not candidates:
        offered = sorted(
            {f"{m.platform.os}/{m.platform.architecture}" for m in manifests if m.platform}
        )
        offers = ", ".join(offered) or "none"
        raise ImageError(f"{what} has no image for linux/{architecture} (it offers {offers})")
    candidates.sort(key=lambda m: m.platform is None or m.platform.variant not in (None, "v8"))
    return candidates[0]


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def parse_config(data: bytes, what: str) -> ImageConfig:
    doc = _json(data, what)
    config = doc.get("config") or {}
    rootfs = doc.get("rootfs") or {}
    try:
        return ImageConfig(
            architecture=str(doc.get("architecture", "")),
            os=str(doc.get("os", "")),
            cmd=_strings(config.get("Cmd")),
            entrypoint=_strings(config.get("Entrypoint")),
            env=_strings(config.get("Env")) or (),
            working_dir=str(config.get("WorkingDir") or ""),
            user=str(config.get("User") or ""),
            exposed_ports=tuple(sorted(config.get("ExposedPorts") or {})),
            stop_signal=config.get("StopSignal") or None,
            healthcheck=config.get("Healthcheck") or None,
            labels=dict(config.get("Labels") or {}),
            volumes=tuple(sorted(config.get("Volumes") or {})),
            diff_ids=_strings(rootfs.get("diff_ids")) or (),
            created=doc.get("created"),
            raw=doc,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ImageError(f"{what}: invalid image config: {exc}") from exc


def layer_media_type(head: bytes) -> str:
    """The OCI media type of a layer archive, told by its first bytes."""
    if head[:2] == b"\x1f\x8b":
        return OCI_LAYER_GZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return OCI_LAYER + "+zstd"
    return OCI_LAYER


def make_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """An OCI image manifest for a config and its layers (for images made or loaded here)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [
            {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()
