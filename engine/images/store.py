"""The image store under a state root: blobs by digest, each layer unpacked once, name → image.

Layout (all under `ROOT/images`):
    blobs/sha256/HEX        verified content: manifests, configs, layer archives
    blobs/partial/HEX       downloads in progress (never counted as present)
    layers/HEX/diff         a layer unpacked, named by its diff id; HEX/link its short name
    l/SHORT -> ../layers/HEX/diff   short lowerdir names keep overlay's mount options short
    records/HEX.json        an image (HEX: its config digest, the image id)
    refs.json               name → image id
Every write is a temp file or directory renamed into place, so a crash leaves either the old
state or the new one. Writers (pull, load, import) hold `gc.lock` shared; rm and prune hold it
exclusively, so a blob is never collected between its download and its image's record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Final

from engine.errors import ImageError
from engine.files import discard_tree, write_atomic
from engine.images.manifest import (
    ImageConfig,
    Manifest,
    digest_of,
    parse_config,
    parse_manifest,
)
from engine.images.reference import Reference, parse_reference

__all__ = ["Image", "ImageStore", "Layer", "PartialBlob", "PruneReport"]

_CHUNK: Final = 1 << 20
_SHORT_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class Layer:
    diff_id: str
    blob: str
    media_type: str
    size: int


@dataclass(frozen=True)
class Image:
    """An image in the store, complete: every blob and every layer of it is present."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    manifest_digest: str
    manifest: Manifest
    config: ImageConfig
    layers: tuple[Layer, ...]
    size: int
    added: float
    updated: float

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class PruneReport:
    images: tuple[str, ...]
    layers: int
    blobs: int
    reclaimed: int


def _hex(digest: str) -> str:
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ImageError(f"unsupported digest {digest!r}")
    return digest[7:]


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


class PartialBlob:
    """A download in progress: appended to across interruptions, locked against a second
    downloader (in this or another process), and a blob only once its digest is checked.

    Use: `with store.partial_blob(d) as part:` then `part.offset` (bytes kept from an earlier
    try), `part.write(chunk)`, `part.restart()` when the server ignores a range, `part.commit()`.
    """

    def __init__(self, store: ImageStore, digest: str) -> None:
        self._store = store
        self.digest = digest
        self._path = store._partial / _hex(digest)
        self._file: BinaryIO | None = None
        self._sha = hashlib.sha256()
        self.offset = 0

    def try_lock(self) -> bool:
        """Open and lock the file; False while another downloader holds it."""
        f = open(self._path, "a+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        f.seek(0)
        while chunk := f.read(_CHUNK):  # what an earlier try kept counts in the digest
            self._sha.update(chunk)
        self.offset = f.tell()
        self._file = f
        return True

    def __enter__(self) -> PartialBlob:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _opened(self) -> BinaryIO:
        if self._file is None:
            raise ImageError(f"download of {self.digest} is not locked")
        return self._file

    def write(self, chunk: bytes) -> None:
        self._opened().write(chunk)
        self._sha.update(chunk)
        self.offset += len(chunk)

    def restart(self) -> None:
        f = self._opened()
        f.truncate(0)
        self._sha = hashlib.sha256()
        self.offset = 0

    def commit(self, what: str) -> None:
        """Make the download a blob if its digest matches; otherwise discard it and fail."""
        f = self._opened()
        f.flush()
        os.fsync(f.fileno())
        if "sha256:" + self._sha.hexdigest() != self.digest:
            self.restart()
            raise ImageError(f"{what}: downloaded content does not match its digest {self.digest}")
        os.replace(self._path, self._store.blob_path(self.digest))


class ImageStore:
    """Images kept under `root` (the state root's `images` directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs" / "sha256"
        self._partial = root / "blobs" / "partial"
        self._layers = root / "layers"
        self._links = root / "l"
        self._records = root / "records"
        for directory in (self._blobs, self._partial, self._layers, self._links, self._records):
            directory.mkdir(parents=True, exist_ok=True)

    # -- locks ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, name: str, exclusive: bool) -> Iterator[None]:
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Held while adding an image: blobs written meanwhile are not collected."""
        return self._lock("gc.lock", exclusive=False)

    # -- blobs ---------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self._blobs / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the image store") from None

    def put_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store `data`; when `digest` is given it must match, or nothing is stored."""
        actual = digest_of(data)
        if digest is not None and digest != actual:
            raise ImageError(f"blob content does not match its digest {digest} (got {actual})")
        path = self.blob_path(actual)
        if not path.exists():
            write_atomic(path, data, durable=True)
        return actual

    def copy_blob(self, source: IO[bytes], digest: str | None, what: str) -> tuple[str, int]:
        """Stream `source` into the store, checking `digest` when given; (digest, size)."""
        tmp = self._partial / f".copy-{secrets.token_hex(8)}"
        sha = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := source.read(_CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            actual = "sha256:" + sha.hexdigest()
            if digest is not None and actual != digest:
                raise ImageError(
                    f"{what}: content does not match its digest {digest} (got {actual})"
                )
            os.replace(tmp, self.blob_path(actual))
            return actual, size
        finally:
            tmp.unlink(missing_ok=True)

    def partial_blob(self, digest: str) -> PartialBlob:
        """The file a download of `digest` goes to; see PartialBlob."""
        return PartialBlob(self, digest)

    # -- layers --------------------------------------------------------------------------------

    def has_layer(self, diff_id: str) -> bool:
        return (self._layers / _hex(diff_id) / "link").is_file()

    def layer_path(self, diff_id: str) -> Path:
        """The directory holding the layer's files."""
        return self._layers / _hex(diff_id) / "diff"

    def layer_link(self, diff_id: str) -> Path:
        """A short path to the layer's files, for overlay's lowerdir option."""
        try:
            short = (self._layers / _hex(diff_id) / "link").read_text()
        except FileNotFoundError:
            raise ImageError(f"layer {diff_id} is missing from the image store") from None
        return self._links / short

    def layer_size(self, diff_id: str) -> int:
        try:
            return int((self._layers / _hex(diff_id) / "size").read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def ensure_layer(self, blob: str, what: str, diff_id: str | None = None) -> str:
        """Unpack the layer archive `blob` unless the layer `diff_id` is already there; return
        the diff id (computed while unpacking when not given, and checked when given).

        Two processes may unpack the same layer at once: each into its own temp directory;
        the first rename wins and the other discards its copy.
        """
        if diff_id is not None and self.has_layer(diff_id):
            return diff_id
        tmp = self._layers / f".tmp-{secrets.token_hex(8)}"
        (tmp / "diff").mkdir(parents=True)
        link: Path | None = None
        from engine.images.unpack import unpack_layer  # tarfile, gzip: for unpacking only

        try:
            with open(self.blob_path(blob), "rb") as source:
                stats = unpack_layer(source, tmp / "diff", what=what)
            if diff_id is not None and stats.diff_id != diff_id:
                raise ImageError(
                    f"{what}: the layer's content ({stats.diff_id}) does not match the diff id "
                    f"{diff_id} in the image config"
                )
            final = self._layers / _hex(stats.diff_id)
            link = self._new_link(f"../layers/{final.name}/diff")
            (tmp / "size").write_text(str(stats.size))
            (tmp / "link").write_text(link.name)
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished the same layer first
                if not self.has_layer(stats.diff_id):
                    raise
                link.unlink(missing_ok=True)
                discard_tree(tmp)
            return stats.diff_id
        except BaseException:
            if link is not None:
                link.unlink(missing_ok=True)
            discard_tree(tmp)
            raise

    def _new_link(self, target: str) -> Path:
        while True:
            name = "".join(secrets.choice(_SHORT_ALPHABET) for _ in range(12))
            link = self._links / name
            try:
                os.symlink(target, link)
                return link
            except FileExistsError:
                continue

    # -- images --------------------------------------------------------------------------------

    def _refs(self) -> dict[str, str]:
        try:
            refs = json.loads((self.root / "refs.json").read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ImageError(f"{self.root / 'refs.json'} is damaged: {exc}") from exc
        return {str(k): str(v) for k, v in refs.items()}

    def _save_refs(self, refs: dict[str, str]) -> None:
        write_atomic(
            self.root / "refs.json",
            json.dumps(refs, indent=1, sort_keys=True).encode(),
            durable=True,
        )

    def _record(self, image_id: str) -> dict[str, Any] | None:
        try:
            record = json.loads((self._records / f"{_hex(image_id)}.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def add_image(
        self,
        manifest_digest: str,
        names: Iterable[Reference],
        repo_digest: Reference | None = None,
    ) -> Image:
        """Record the image whose manifest blob is `manifest_digest` and point `names` at it.

        Every blob and layer must already be in the store: this is the last step of a pull or a
        load, and the moment the image becomes visible.
        """
        what = f"manifest {manifest_digest}"
        manifest = parse_manifest(self.read_blob(manifest_digest), what)
        config = parse_config(self.read_blob(manifest.config.digest), what)
        if len(config.diff_ids) != len(manifest.layers):
            raise ImageError(
                f"{what}: the config lists {len(config.diff_ids)} layers, the "
                f"manifest {len(manifest.layers)}"
            )
        for diff_id in config.diff_ids:
            if not self.has_layer(diff_id):
                raise ImageError(f"{what}: layer {diff_id} is not in the store")
        image_id = manifest.config.digest
        with self._lock("refs.lock", exclusive=True):
            record = self._record(image_id) or {}
            digests = list(record.get("repo_digests", []))
            if repo_digest is not None and str(repo_digest) not in digests:
                digests = [d for d in digests if not d.startswith(repo_digest.repository + "@")]
                digests.append(str(repo_digest))
            record.update(
                id=image_id,
                manifest=manifest_digest,
                repo_digests=digests,
                size=sum(self.layer_size(d) for d in config.diff_ids),
                added=record.get("added", time.time()),
                updated=time.time(),
            )
            write_atomic(
                self._records / f"{_hex(image_id)}.json",
                json.dumps(record, indent=1).encode(),
                durable=True,
            )
            refs = self._refs()
            for name in names:
                refs[str(name)] = image_id
            self._save_refs(refs)
        return self.get(image_id)

    def tag(self, image: Image, name: Reference) -> None:
        with self._lock("refs.lock", exclusive=True):
            refs = self._refs()
            refs[str(name)] = image.id
            self._save_refs(refs)

    def _load(self, image_id: str, refs: dict[str, str]) -> Image | None:
        """The image `image_id`, or None when its record or any of its parts is missing."""
        record = self._record(image_id)
        if record is None:
            return None
        try:
            what = f"image {image_id}"
            manifest = parse_manifest(self.read_blob(record["manifest"]), what)
            config = parse_config(self.read_blob(manifest.config.digest), what)
        except (ImageError, KeyError):
            return None
        if not all(self.has_layer(d) for d in config.diff_ids):
            return None
        tags = sorted(
            name for name, target in refs.items() if target == image_id and "@" not in name
        )
        return Image(
            id=image_id,
            repo_tags=tuple(parse_reference(t).familiar() for t in tags),
            repo_digests=tuple(
                parse_reference(d).familiar() for d in record.get("repo_digests", [])
            ),
            manifest_digest=record["manifest"],
            manifest=manifest,
            config=config,
            layers=tuple(
                Layer(diff_id, d.digest, d.media_type, d.size)
                for diff_id, d in zip(config.diff_ids, manifest.layers, strict=True)
            ),
            size=int(record.get("size", 0)),
            added=float(record.get("added", 0)),
            updated=float(record.get("updated", record.get("added", 0))),
        )

    def images(self) -> list[Image]:
        """Every complete image, newest first."""
        refs = self._refs()
        found = []
        for path in self._records.glob("*.json"):
            image = self._load("sha256:" + path.stem, refs)
            if image is not None:
                found.append(image)
        return sorted(found, key=lambda i: i.added, reverse=True)

    def find(self, text: str) -> Image | None:
        """The image named `text`: a name[:tag], name@digest, an image id or a unique prefix."""
        refs = self._refs()
        try:
            ref: Reference | None = parse_reference(text)
        except ImageError:
            ref = None
        if ref is not None and ref.digest is None and str(ref) in refs:
            return self._load(refs[str(ref)], refs)
        if ref is not None and ref.digest is not None:
            wanted = f"{ref.repository}@{ref.digest}"
            for path in self._records.glob("*.json"):
                if wanted in (self._record("sha256:" + path.stem) or {}).get("repo_digests", []):
                    return self._load("sha256:" + path.stem, refs)
        image_id = self._id_of(text)
        return self._load(image_id, refs) if image_id else None

    def _id_of(self, text: str) -> str | None:
        """The image id `text` abbreviates, if it is an id or a unique prefix of one."""
        bare = text.removeprefix("sha256:")
        if len(bare) < 4 or not all(c in "0123456789abcdef" for c in bare):
            return None
        matches = [p.stem for p in self._records.glob(f"{bare}*.json")]
        if len(matches) > 1:
            raise ImageError(f"image id prefix {text!r} is ambiguous")
        return "sha256:" + matches[0] if matches else None

    def get(self, text: str) -> Image:
        image = self.find(text)
        if image is None:
            raise ImageError(f"no such image: {text}")
        return image

    # -- removal -------------------------------------------------------------------------------

    def remove(self, text: str, in_use: Callable[[], set[str]], force: bool = False) -> list[str]:
        """Remove the name `text`, or every name of the image id `text`; once an image has no
        name left it is deleted with the layers and blobs nothing else needs. What was done is
        returned as docker rmi prints it."""
        with self._lock("gc.lock", exclusive=True), self._lock("refs.lock", exclusive=True):
            image = self.get(text)
            refs = self._refs()
            names = sorted(n for n, t in refs.items() if t == image.id)
            ref = None if self._id_of(text) == image.id else parse_reference(text)
            if ref is not None and ref.digest is None:
                untag = [str(ref)]
            elif len(names) > 1 and not force:
                shown = ", ".join(parse_reference(n).familiar() for n in names)
                raise ImageError(
                    f"image {image.short_id} has several names ({shown}): remove them by name, "
                    "or use --force to remove them all"
                )
            else:
                untag = names
            deletes = set(untag) >= set(names)
            if deletes and image.id in in_use() and not force:
                raise ImageError(
                    f"image {text} is used by a container: remove the container first, or use "
                    "--force to remove only its names"
                )
            done = [f"Untagged: {parse_reference(n).familiar()}" for n in untag]
            self._save_refs({n: t for n, t in refs.items() if n not in untag})
            if deletes and image.id not in in_use():
                (self._records / f"{_hex(image.id)}.json").unlink(missing_ok=True)
                done.append(f"Deleted: {image.id}")
                self._collect()
            return done

    def prune(self, in_use: Callable[[], set[str]], all_unused: bool = False) -> PruneReport:
        """Delete images without a name (with `all_unused`: every image no container uses),
        then every layer and blob no remaining image needs."""
        with self._lock("gc.lock", exclusive=True), self._lock("refs.lock", exclusive=True):
            used = in_use()
            refs = self._refs()
            named = set(refs.values())
            removed = []
            for path in self._records.glob("*.json"):
                image_id = "sha256:" + path.stem
                if image_id in used or (image_id in named and not all_unused):
                    continue
                path.unlink()
                removed.append(image_id)
            if all_unused:
                self._save_refs({n: t for n, t in refs.items() if t not in removed})
            layers, blobs, reclaimed = self._collect()
            return PruneReport(tuple(removed), layers, blobs, reclaimed)

    def _collect(self) -> tuple[int, int, int]:
        """Remove layers and blobs that no image record refers to."""
        keep_blobs: set[str] = set()
        keep_layers: set[str] = set()
        for path in self._records.glob("*.json"):
            record = self._record("sha256:" + path.stem) or {}
            with contextlib.suppress(ImageError, KeyError):
                keep_blobs.update(self._blobs_of(record["manifest"], keep_layers))
        layers = blobs = reclaimed = 0
        # No writer runs while the gc lock is held exclusively: temp files are leftovers of
        # interrupted ones (partial downloads stay, to be resumed).
        for leftover in self._partial.glob(".copy-*"):
            leftover.unlink(missing_ok=True)
        for layer in self._layers.iterdir():
            if layer.name in keep_layers:
                continue
            if layer.name.startswith(".tmp-"):
                discard_tree(layer)
                continue
            reclaimed += self.layer_size("sha256:" + layer.name)
            with contextlib.suppress(FileNotFoundError):
                (self._links / (layer / "link").read_text()).unlink(missing_ok=True)
            discard_tree(layer)
            layers += 1
        for blob in self._blobs.iterdir():
            if blob.name not in keep_blobs:
                reclaimed += blob.stat().st_size
                blob.unlink()
                blobs += 1
        return layers, blobs, reclaimed

    def _blobs_of(self, manifest_digest: str, layers: set[str]) -> set[str]:
        data = self.read_blob(manifest_digest)
        manifest = parse_manifest(data, manifest_digest)
        config = parse_config(self.read_blob(manifest.config.digest), manifest_digest)
        layers.update(_hex(d) for d in config.diff_ids)
        return {_hex(manifest_digest), _hex(manifest.config.digest)} | {
            _hex(layer.digest) for layer in manifest.layers
        }
