"""Build real container images and run a real local registry, for the image tests.

Everything here shells out to the tools a Debian machine packages: ``umoci`` builds OCI image
layouts, ``skopeo`` converts them to archives and pushes them, ``docker-registry`` (the CNCF
distribution registry v2) serves them. Layer tars are written with :mod:`tarfile`; nothing here
extracts a tar with it.

Reference names in an OCI layout are free-form (``busybox:latest`` is a valid one), so
``OciLayout.ref("busybox:latest")`` is ``oci:PATH:busybox:latest``, which skopeo understands.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

BUSYBOX = Path("/bin/busybox")
UMOCI = "umoci"
SKOPEO = "skopeo"
DOCKER_REGISTRY = "/usr/bin/docker-registry"

APPLETS = (
    "sh ls cat echo wget httpd nc sleep true false id env hostname mkdir rm touch test printf "
    "ps kill grep sed head wc stat"
).split()

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "app:x:1000:1000::/home/app:/bin/sh\n"
)
GROUP = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n"

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (MEDIA_MANIFEST, MEDIA_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"

# Entries of the crafted layers (path -> content, None for a directory).
MULTI_LAYER2: dict[str, bytes | None] = {
    "data": None,
    "data/a": b"a from layer 2\n",
    "data/b": b"b from layer 2\n",
    "data/sub": None,
    "data/sub/c": b"c from layer 2\n",
    "keep": None,
    "keep/x": b"x from layer 2\n",
    "etc": None,
    "etc/motd": b"motd from layer 2\n",
}
MULTI_LAYER3: dict[str, bytes | None] = {
    "data": None,
    "data/.wh.a": b"",
    "keep": None,
    "keep/.wh..wh..opq": b"",
    "keep/y": b"y from layer 3\n",
    "etc": None,
    "etc/motd": b"motd from layer 3\n",
}
#: The merged view of ``data/``, ``keep/`` and ``etc/motd`` in the image that
#: :func:`multilayer_with_whiteouts` builds: path -> content, None for a directory.
MULTILAYER_VIEW: dict[str, bytes | None] = {
    "data": None,
    "data/b": b"b from layer 2\n",
    "data/sub": None,
    "data/sub/c": b"c from layer 2\n",
    "keep": None,
    "keep/y": b"y from layer 3\n",
    "etc/motd": b"motd from layer 3\n",
}


class ToolError(RuntimeError):
    """An external tool (umoci, skopeo, docker-registry) failed; the message holds its stderr."""


def run_tool(*argv: str) -> str:
    """Run a command to completion and return its stdout; raise ToolError with stderr on failure."""
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise ToolError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr.strip() or done.stdout}"
        )
    return done.stdout


def missing_tools() -> list[str]:
    """The tools this module needs that this machine lacks (empty when all are there)."""
    return [t for t in (UMOCI, SKOPEO, DOCKER_REGISTRY) if shutil.which(t) is None] + (
        [] if BUSYBOX.is_file() else [str(BUSYBOX)]
    )


# --------------------------------------------------------------------------- root filesystems


def busybox_rootfs(dest: Path, *, busybox: Path = BUSYBOX) -> Path:
    """Make a minimal busybox root filesystem in ``dest`` and return it.

    It holds ``bin/busybox`` with its applet symlinks, ``etc/passwd`` and ``etc/group`` (users
    root, nobody, app 1000; groups root, nogroup, app, extra 2000 with member app), a sticky
    ``tmp``, ``root``, ``home/app`` owned by 1000:1000 (when run as root), ``etc/hostname`` and an
    empty ``etc/hosts``.
    """
    for name, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("home/app", 0o755)):
        (dest / name).mkdir(parents=True, exist_ok=True)
        (dest / name).chmod(mode)
    (dest / "tmp").mkdir(exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    shutil.copyfile(busybox, dest / "bin/busybox")
    (dest / "bin/busybox").chmod(0o755)
    for applet in APPLETS:
        link = dest / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    for name, text in (
        ("etc/passwd", PASSWD),
        ("etc/group", GROUP),
        ("etc/hostname", "busybox\n"),
        ("etc/hosts", ""),
    ):
        (dest / name).write_text(text)
        (dest / name).chmod(0o644)
    if os.geteuid() == 0:
        os.chown(dest / "home/app", 1000, 1000)
    return dest


def _numeric_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Drop user and group names so the archive carries numeric owners only."""
    info.uname = info.gname = ""
    return info


def tar_dir(src: Path, dest: Path, *, compression: str | None) -> Path:
    """Tar the tree under ``src`` into ``dest`` like ``docker export`` does and return ``dest``.

    Paths are relative with no leading ``./`` and no entry for the root itself; owners are
    numeric. ``compression`` is None for a plain tar or ``"gzip"``.
    """
    if compression not in (None, "gzip"):
        raise ValueError(f"unknown compression {compression!r}: use None or 'gzip'")
    mode: Literal["w", "w:gz"] = "w" if compression is None else "w:gz"
    with tarfile.open(dest, mode, format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(src):
            dirs.sort()
            for name in [*dirs, *sorted(files)]:
                path = Path(top, name)
                rel = path.relative_to(src).as_posix()
                tar.add(path, arcname=rel, recursive=False, filter=_numeric_owner)
    return dest


def layer_tar(dest: Path, entries: Mapping[str, bytes | None], *, mtime: int = 0) -> Path:
    """Write an uncompressed layer tar holding ``entries`` (path -> content, None for a dir).

    Missing parent directories are added first. Whiteouts are ordinary entries: an empty
    ``dir/.wh.name`` deletes ``dir/name``; ``dir/.wh..wh..opq`` makes ``dir`` opaque.
    Everything is owned by 0:0, directories 0755 and files 0644.
    """
    written: set[str] = set()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in entries.items():
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts) + 1):
                name = "/".join(parts[:depth])
                is_dir = depth < len(parts) or content is None
                if name in written:
                    continue
                written.add(name)
                info = tarfile.TarInfo(name)
                info.mtime = mtime
                if is_dir:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                else:
                    data = content or b""
                    info.mode, info.size = 0o644, len(data)
                    tar.addfile(info, io.BytesIO(data))
    return dest


class _RandomReader(io.RawIOBase):
    """An endless file of incompressible bytes, read in chunks to keep memory small."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        view[:] = os.urandom(len(view))
        return len(view)


# --------------------------------------------------------------------------- OCI layouts


class OciLayout:
    """An OCI image layout directory that umoci builds images in.

    Tags are reference names in ``index.json`` (``busybox:latest`` is fine); ``ref(tag)`` gives
    the skopeo reference ``oci:PATH:TAG``.
    """

    def __init__(self, path: Path) -> None:
        """Open the layout at ``path``, creating it with ``umoci init`` when it is not there."""
        self.path = path
        if not (path / "oci-layout").is_file():
            run_tool(UMOCI, "init", "--layout", str(path))

    def ref(self, tag: str) -> str:
        """The skopeo reference of ``tag``: ``oci:PATH:TAG``."""
        return f"oci:{self.path}:{tag}"

    def _image(self, tag: str) -> str:
        return f"--image={self.path}:{tag}"

    @staticmethod
    def _rootless() -> list[str]:
        return [] if os.geteuid() == 0 else ["--rootless"]

    # -- building

    def empty(self, tag: str) -> None:
        """Create ``tag`` as an image with no layers (``umoci new``)."""
        run_tool(UMOCI, "new", self._image(tag))

    def new(self, tag: str, rootfs_dir: Path, config: Mapping[str, Any] | None = None) -> None:
        """Create image ``tag`` with one layer holding the tree ``rootfs_dir``, then configure it.

        ``config`` takes the keys :meth:`configure` does.
        """
        self.empty(tag)
        with tempfile.TemporaryDirectory(prefix="umoci-bundle-") as tmp:
            bundle = Path(tmp, "bundle")
            run_tool(UMOCI, "unpack", *self._rootless(), self._image(tag), str(bundle))
            run_tool("cp", "-a", "--", f"{rootfs_dir}/.", str(bundle / "rootfs"))
            run_tool(UMOCI, "repack", self._image(tag), str(bundle))
        if config:
            self.configure(tag, config)

    def configure(self, tag: str, config: Mapping[str, Any], *, new_tag: str | None = None) -> None:
        """Set fields of the image config with ``umoci config``; given fields replace old ones.

        Keys: ``Cmd`` and ``Entrypoint`` (lists), ``Env`` (list of ``K=V`` or a dict),
        ``WorkingDir``, ``User``, ``StopSignal`` (strings), ``ExposedPorts`` and ``Volumes``
        (lists or dicts keyed like ``"80/tcp"``), ``Labels`` (dict), ``architecture``, ``os``.
        """
        args = [UMOCI, "config", self._image(tag)]
        if new_tag is not None:
            args.append(f"--tag={new_tag}")
        for key, value in config.items():
            args += _config_args(key, value)
        run_tool(*args)

    def add_layer(self, tag: str, layer_tar: Path, new_tag: str | None = None) -> None:
        """Append the layer tar (plain, or gzip which is undone first) to ``tag``.

        The result is saved as ``new_tag``, or replaces ``tag`` when it is None. umoci stores
        the layer gzip-compressed.
        """
        with open(layer_tar, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        with tempfile.TemporaryDirectory(prefix="layer-") as tmp:
            if gzipped:
                plain = Path(tmp, "layer.tar")
                with gzip.open(layer_tar, "rb") as src, open(plain, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                layer_tar = plain
            tag_args = [] if new_tag is None else [f"--tag={new_tag}"]
            run_tool(UMOCI, "raw", "add-layer", self._image(tag), *tag_args, str(layer_tar))

    def multi_arch_index(self, tag: str, sources: Mapping[str, str]) -> str:
        """Tag as ``tag`` an image index of the images ``sources`` maps architectures to.

        Each source image's config must already name its architecture (``amd64``, ``arm64``...).
        The index is a real OCI image index blob, each entry carrying ``platform`` {os,
        architecture}. Returns the index digest.
        """
        entries = []
        for arch, source in sources.items():
            descriptor = self.descriptor(source)
            manifest = self.manifest(source)
            image_config = json.loads(self.blob(manifest["config"]["digest"]))
            if image_config.get("architecture") != arch:
                raise ValueError(
                    f"{source} has architecture {image_config.get('architecture')!r}, not "
                    f"{arch!r}: configure it with {{'architecture': {arch!r}}} first"
                )
            entries.append(
                {
                    "mediaType": descriptor["mediaType"],
                    "digest": descriptor["digest"],
                    "size": descriptor["size"],
                    "platform": {"architecture": arch, "os": image_config.get("os", "linux")},
                }
            )
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}
        digest, size = self.put_blob(json.dumps(index, separators=(",", ":")).encode())
        self.set_tag(tag, {"mediaType": MEDIA_INDEX, "digest": digest, "size": size})
        return digest

    def remove_tag(self, tag: str) -> None:
        """Drop ``tag`` from ``index.json`` (its blobs stay until :meth:`gc`)."""
        run_tool(UMOCI, "rm", self._image(tag))

    def gc(self) -> None:
        """Delete the blobs no tag reaches any more."""
        run_tool(UMOCI, "gc", f"--layout={self.path}")

    # -- reading

    def index(self) -> dict[str, Any]:
        """The layout's ``index.json``."""
        data: dict[str, Any] = json.loads((self.path / "index.json").read_text())
        return data

    def tags(self) -> list[str]:
        """The reference names in ``index.json``, in order."""
        return [
            d["annotations"][REF_NAME]
            for d in self.index()["manifests"]
            if REF_NAME in d.get("annotations", {})
        ]

    def descriptor(self, tag: str) -> dict[str, Any]:
        """The descriptor ``index.json`` holds for ``tag``."""
        for d in self.index()["manifests"]:
            if d.get("annotations", {}).get(REF_NAME) == tag:
                found: dict[str, Any] = d
                return found
        raise KeyError(f"no tag {tag!r} in {self.path}")

    def blob(self, digest: str) -> bytes:
        """The content of blob ``digest`` (``sha256:...``)."""
        algorithm, hexdigest = digest.split(":", 1)
        return (self.path / "blobs" / algorithm / hexdigest).read_bytes()

    def manifest(self, tag: str) -> dict[str, Any]:
        """The manifest (or index) that ``tag`` names, parsed."""
        data: dict[str, Any] = json.loads(self.blob(self.descriptor(tag)["digest"]))
        return data

    # -- low level

    def put_blob(self, data: bytes) -> tuple[str, int]:
        """Store ``data`` as a blob and return its digest and size."""
        hexdigest = hashlib.sha256(data).hexdigest()
        path = self.path / "blobs/sha256" / hexdigest
        if not path.exists():
            _write_atomic(path, data)
        return f"sha256:{hexdigest}", len(data)

    def set_tag(self, tag: str, descriptor: Mapping[str, Any]) -> None:
        """Point ``tag`` at ``descriptor`` in ``index.json``, replacing an older entry."""
        index = self.index()
        kept = [d for d in index["manifests"] if d.get("annotations", {}).get(REF_NAME) != tag]
        annotations = {**descriptor.get("annotations", {}), REF_NAME: tag}
        index["manifests"] = [*kept, {**descriptor, "annotations": annotations}]
        _write_atomic(self.path / "index.json", json.dumps(index).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _keys(value: Mapping[str, Any] | Sequence[str]) -> list[str]:
    return list(value.keys()) if isinstance(value, Mapping) else list(value)


def _config_args(key: str, value: Any) -> list[str]:
    """The ``umoci config`` flags that set config field ``key`` to ``value``."""
    lists = {"Cmd": "config.cmd", "Entrypoint": "config.entrypoint"}
    scalars = {
        "WorkingDir": "--config.workingdir",
        "User": "--config.user",
        "StopSignal": "--config.stopsignal",
        "architecture": "--architecture",
        "os": "--os",
    }
    if key in lists:
        return [f"--clear={lists[key]}", *(f"--{lists[key]}={v}" for v in value)]
    if key in scalars:
        return [f"{scalars[key]}={value}"]
    if key == "Env":
        pairs = [f"{k}={v}" for k, v in value.items()] if isinstance(value, Mapping) else value
        return ["--clear=config.env", *(f"--config.env={p}" for p in pairs)]
    if key == "ExposedPorts":
        ports = _keys(value)
        return ["--clear=config.exposedports", *(f"--config.exposedports={p}" for p in ports)]
    if key == "Volumes":
        return ["--clear=config.volume", *(f"--config.volume={v}" for v in _keys(value))]
    if key == "Labels":
        labels = [f"--config.label={k}={v}" for k, v in value.items()]
        return ["--clear=config.labels", *labels]
    raise ValueError(f"unsupported image config key {key!r}")


# --------------------------------------------------------------------------- special images


def multilayer_with_whiteouts(
    layout: OciLayout, tag: str, *, base: str = "busybox:latest"
) -> dict[str, bytes | None]:
    """Build ``tag`` as three layers: the one of ``base`` (busybox) and two crafted ones.

    Layer 2 adds ``data/a``, ``data/b``, ``data/sub/c``, ``keep/x`` and ``etc/motd``. Layer 3
    whites out ``data/a`` (``data/.wh.a``), makes ``keep/`` opaque (``keep/.wh..wh..opq``) and
    adds ``keep/y``, and rewrites ``etc/motd``. Returns :data:`MULTILAYER_VIEW`, the merged view
    of ``data/``, ``keep/`` and ``etc/motd`` (path -> content, None for a directory).
    """
    if len(layout.manifest(base)["layers"]) != 1:
        raise ValueError(f"{base} must be a one-layer image")
    with tempfile.TemporaryDirectory(prefix="layers-") as tmp:
        layout.add_layer(base, layer_tar(Path(tmp, "2.tar"), MULTI_LAYER2, mtime=1), tag)
        layout.add_layer(tag, layer_tar(Path(tmp, "3.tar"), MULTI_LAYER3, mtime=2))
    return dict(MULTILAYER_VIEW)


def big_image(
    layout: OciLayout,
    tag: str,
    size_mb: int,
    nfiles: int,
    *,
    base: str | None = None,
    layers: int = 1,
) -> int:
    """Build ``tag`` holding ``size_mb`` MiB of random bytes in ``nfiles`` files.

    The files are ``big/L/fNNNNNN`` spread over ``layers`` layers (L is the layer number), on
    top of ``base`` or of nothing. The content is incompressible, so the blobs are as big as
    the data. Returns the number of random bytes written.
    """
    if nfiles < 1 or layers < 1 or size_mb < 0:
        raise ValueError("need nfiles >= 1, layers >= 1 and size_mb >= 0")
    total = size_mb << 20
    sizes = [total // nfiles + (1 if i < total % nfiles else 0) for i in range(nfiles)]
    if base is None:
        layout.empty(tag)
    with tempfile.TemporaryDirectory(prefix="big-") as tmp:
        for number in range(layers):
            path = Path(tmp, f"{number}.tar")
            with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
                for name in ("big", f"big/{number}"):
                    info = tarfile.TarInfo(name)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                for i in range(number, nfiles, layers):
                    info = tarfile.TarInfo(f"big/{number}/f{i:06d}")
                    info.mode, info.size = 0o644, sizes[i]
                    with _RandomReader() as random:
                        tar.addfile(info, random)
            if number == 0 and base is not None:
                layout.add_layer(base, path, tag)
            else:
                layout.add_layer(tag, path)
            path.unlink()
    return total


# --------------------------------------------------------------------------- skopeo


def skopeo_copy(src: str, dest: str, *extra: str) -> None:
    """``skopeo copy --insecure-policy [extra...] SRC DEST``; raise ToolError on failure."""
    run_tool(SKOPEO, "copy", "--insecure-policy", "--quiet", *extra, src, dest)


def docker_archive(layout: OciLayout, tag: str, dest: Path, names: Sequence[str]) -> Path:
    """Write ``tag`` as a ``docker save`` style archive tagged with every name in ``names``.

    ``names`` are ``name:tag`` strings (at least one); an existing ``dest`` is replaced.
    """
    if not names:
        raise ValueError("a docker archive needs at least one name:tag")
    dest.unlink(missing_ok=True)
    extra = [f"--additional-tag={n}" for n in names[1:]]
    skopeo_copy(layout.ref(tag), f"docker-archive:{dest}:{names[0]}", *extra)
    return dest


def oci_archive(layout: OciLayout, tag: str, dest: Path, ref: str | None = None) -> Path:
    """Write ``tag`` as an ``oci-archive`` (a tarred layout) naming it ``ref`` (default ``tag``)."""
    dest.unlink(missing_ok=True)
    skopeo_copy(layout.ref(tag), f"oci-archive:{dest}:{ref or tag}")
    return dest


# --------------------------------------------------------------------------- registry


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Registry:
    """A CNCF distribution registry on 127.0.0.1, storing under ``workdir``.

    ``auth=(user, password)`` turns on basic auth through an htpasswd file. Logs go to
    ``workdir/registry.log``. The port is chosen once and kept across :meth:`restart`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        auth: tuple[str, str] | None = None,
        binary: str = DOCKER_REGISTRY,
        port: int | None = None,
    ) -> None:
        """Prepare (but do not start) a registry in ``workdir``."""
        self.workdir = workdir
        self.auth = auth
        self.binary = binary
        self.port = port
        self.storage = workdir / "storage"
        self.log = workdir / "registry.log"
        self.config = workdir / "config.yml"
        self._secret = secrets.token_hex(16)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        if self.port is None:
            raise RuntimeError("the registry has no port before it starts")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.address}"

    @property
    def creds(self) -> str | None:
        """``user:password`` when auth is on."""
        return None if self.auth is None else f"{self.auth[0]}:{self.auth[1]}"

    @property
    def pid(self) -> int | None:
        """The registry process id while it runs."""
        return None if self._process is None else self._process.pid

    # -- lifecycle

    def start(self, timeout: float = 20.0) -> Self:
        """Start the registry and wait until ``GET /v2/`` answers 200 or 401."""
        if self._process is not None:
            raise RuntimeError("the registry is already running")
        fixed = self.port is not None
        for _attempt in range(3):
            if not fixed:
                self.port = free_port()
            self._spawn()
            if self._wait_ready(timeout):
                return self
            if fixed:
                break  # the port was asked for (or kept for a restart): no other will do
        raise ToolError(f"docker-registry did not start:\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop the registry: SIGTERM, then SIGKILL after 5 s; storage stays."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """SIGKILL the registry at once (to cut a pull short); storage stays."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same storage."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self) -> None:
        """Write the registry config (JSON, which YAML reads) and the htpasswd file."""
        self.storage.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.address, "secret": self._secret},
        }
        if self.auth is not None:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(htpasswd_line(*self.auth))
            config["auth"] = {"htpasswd": {"realm": "composer-tests", "path": str(htpasswd)}}
        self.config.write_text(json.dumps(config, indent=2))

    def _spawn(self) -> None:
        """Start the process with its output appended to the log file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        # Variables named REGISTRY_* override the config file: keep the caller's out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "serve", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
            )

    def _wait_ready(self, timeout: float) -> bool:
        """Poll ``/v2/`` until it answers; False (after reaping) when the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                self._process.wait()
                self._process = None
                return False
            with contextlib.suppress(OSError):
                if self.request("GET", "/v2/", authenticate=False)[0] in (200, 401):
                    return True
            time.sleep(0.05)
        self.stop()
        return False

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- HTTP and skopeo

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        *,
        authenticate: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request (with basic auth when on and ``authenticate``) and return status,
        headers (lower-case names) and body. No proxy is involved."""
        sent = dict(headers or {})
        if authenticate and self.creds is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(self.creds.encode()).decode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers=sent)
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def image(self, name_tag: str) -> str:
        """The full reference ``127.0.0.1:PORT/NAME:TAG``."""
        return f"{self.address}/{name_tag}"

    def push(self, src_ref: str, name_tag: str, all_images: bool = False) -> None:
        """Copy skopeo reference ``src_ref`` to ``NAME:TAG`` here (``--all`` for every
        image of an index, not only the one for this machine)."""
        extra = ["--dest-tls-verify=false"]
        extra += ["--dest-no-creds"] if self.creds is None else [f"--dest-creds={self.creds}"]
        if all_images:
            extra.append("--all")
        skopeo_copy(src_ref, f"docker://{self.image(name_tag)}", *extra)

    def manifest_digest(self, name_tag: str) -> str:
        """The ``Docker-Content-Digest`` of manifest ``NAME:TAG`` (or ``NAME@DIGEST``)."""
        name, reference = _split_reference(name_tag)
        status, headers, _ = self.request(
            "HEAD", f"/v2/{name}/manifests/{reference}", {"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if status != 200 or "docker-content-digest" not in headers:
            raise LookupError(f"HEAD manifest {name_tag} at {self.address}: HTTP {status}")
        return headers["docker-content-digest"]

    def tags(self, name: str) -> list[str]:
        """The tags of repository ``name`` (empty when it does not exist)."""
        status, _, body = self.request("GET", f"/v2/{name}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise LookupError(f"GET tags of {name} at {self.address}: HTTP {status}")
        tags: list[str] = json.loads(body).get("tags") or []
        return tags


def _split_reference(name_tag: str) -> tuple[str, str]:
    """``name:tag`` or ``name@digest`` -> (name, tag or digest); the tag defaults to latest."""
    if "@" in name_tag:
        name, digest = name_tag.split("@", 1)
        return name, digest
    name, sep, tag = name_tag.rpartition(":")
    if not sep or "/" in tag:
        return name_tag, "latest"
    return name, tag


def htpasswd_line(user: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash (cost 4: the registry checks it on every request)."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{hashed}\n"


def walk_view(root: Path, tops: Sequence[str]) -> Iterator[tuple[str, bytes | None]]:
    """Each path under ``root/top`` (tops may also name files) with its content, None for dirs;
    for comparing an unpacked or mounted rootfs with :data:`MULTILAYER_VIEW`."""
    for top in tops:
        start = root / top
        if start.is_file():
            yield top, start.read_bytes()
            continue
        if not start.is_dir():
            continue
        yield top, None
        for dirpath, dirs, files in os.walk(start):
            dirs.sort()
            for name in dirs:
                yield Path(dirpath, name).relative_to(root).as_posix(), None
            for name in sorted(files):
                path = Path(dirpath, name)
                yield path.relative_to(root).as_posix(), path.read_bytes()
