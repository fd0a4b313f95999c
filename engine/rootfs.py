"""A container's root filesystem: an overlay of its image's layers (read-only, shared) under a
writable layer of its own, with the files generated for it bind-mounted over their paths.

Layout of a container directory: `upper/` and `work/` (survive stop and start), `merged/` (the
mount point). Paths inside the merged tree are resolved with openat2(RESOLVE_IN_ROOT) and used
through that handle, so a symlink in the image (`/etc/hosts -> /etc/shadow`, `/etc -> /`)
cannot send a mount or a write outside the container's tree.
"""

from __future__ import annotations

import errno
import os
import resource
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from engine.errors import MountError
from engine.files import discard_tree, remove_tree
from engine.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_RDONLY,
    MS_REMOUNT,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    attach_tree,
    idmap_tree,
    mount,
    mount_fs,
    open_tree,
    openat2,
    umount,
)
from engine.userns import IdMap, host_root, user_namespace

__all__ = ["Rootfs"]

_RESOLVE: Final = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_UNSAFE_IN_OPTIONS: Final = frozenset(",:=\\")


class Rootfs:
    """The root filesystem of one container, kept in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.upper = directory / "upper"
        self.work = directory / "work"
        self.merged = directory / "merged"

    def is_mounted(self) -> bool:
        """Whether the overlay is mounted: `merged` is on another device than its directory
        (a stat, not a read of every mount of the host: that grows with the containers)."""
        try:
            return os.stat(self.merged).st_dev != os.stat(self.directory).st_dev
        except FileNotFoundError:
            return False

    def mount(
        self,
        layers: Sequence[Path],
        *,
        read_only: bool = False,
        files: Mapping[str, Path] | None = None,
        id_maps: tuple[IdMap, IdMap] | None = None,
    ) -> Path:
        """Mount the overlay of `layers` (lowest first) and bind each of `files` (path in the
        container → file on the host) over its path; idempotent. Returns the merged tree.
        `id_maps` (uid map, gid map): the container runs in a user namespace with them, so
        the layers are seen through idmapped mounts: a file of uid 0 in a layer belongs to
        the container's root, and what that root writes is stored as uid 0."""
        if self.is_mounted():
            return self.merged
        if not layers:
            raise MountError(f"{self.directory}: an image needs at least one layer")
        for directory in (self.upper, self.work, self.merged):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            if id_maps is None:
                self._mount_overlay([str(p) for p in reversed(layers)])  # the top layer first
            else:
                self._mount_idmapped([str(p) for p in reversed(layers)], id_maps)
        except OSError as exc:
            raise MountError(
                f"cannot mount the root filesystem at {self.merged}: {exc.strerror}"
            ) from exc
        try:
            for target, source in (files or {}).items():
                self.bind_file(source, target)
            if read_only:
                mount("none", str(self.merged), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NODEV)
        except BaseException:
            self.unmount()
            raise
        return self.merged

    def _mount_idmapped(self, lowers: list[str], id_maps: tuple[IdMap, IdMap]) -> None:
        """Overlay idmapped copies of the layers, each attached under maps/ for the overlay
        mount to name it and detached right after (the overlay holds its own references).
        The writable layer is not idmapped (the overlay writes its work files as the host's
        root, which such a mount cannot represent): what the container writes is stored with
        host ids, as with Docker's userns-remap, and upper/ belongs to the container's root."""
        maps = self.directory / "maps"
        maps.mkdir(exist_ok=True)
        try:
            uid, gid = host_root(id_maps[0]), host_root(id_maps[1])
        except ValueError as exc:
            raise MountError(f"{self.directory}: {exc}") from None
        os.chown(self.upper, uid, gid)
        userns = user_namespace(*id_maps)
        points: list[Path] = []
        try:
            for index, source in enumerate(lowers):
                point = maps / str(index)
                point.mkdir(exist_ok=True)
                tree = open_tree(source, recursive=False)
                try:
                    idmap_tree(tree, userns)
                    target = os.open(point, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        attach_tree(tree, target)
                    finally:
                        os.close(target)
                finally:
                    os.close(tree)
                points.append(point)
            self._mount_overlay([str(p) for p in points])
        finally:
            os.close(userns)
            for point in points:
                umount(str(point), MNT_DETACH)

    def _mount_overlay(self, lowers: list[str]) -> None:
        """Mount with one `lowerdir+` option per layer (Linux 6.8+: no limit on their total
        length); older kernels get the classic single option, limited to a page."""
        upper, work = str(self.upper), str(self.work)
        try:
            mount_fs(
                "overlay",
                str(self.merged),
                [*(("lowerdir+", p) for p in lowers), ("upperdir", upper), ("workdir", work)],
                MS_NODEV,  # device nodes an image ships are inert: only the container's /dev
            )
            return
        except OSError as exc:
            old_kernel = exc.errno == errno.ENOSYS or (
                exc.errno == errno.EINVAL and "Unknown parameter" in str(exc)
            )
            if not old_kernel:
                raise
        self._mount_classic(lowers, upper, work)

    def _mount_classic(self, lowers: list[str], upper: str, work: str) -> None:
        for path in (*lowers, upper, work):
            if _UNSAFE_IN_OPTIONS & set(path):
                raise MountError(f"{path}: the state root's path may not contain , : = or \\")
        options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
        if len(options) >= resource.getpagesize():
            raise MountError(
                f"{self.directory}: {len(lowers)} layers are too many for one overlay mount on "
                f"this kernel (the options take {len(options)} bytes, its limit is "
                f"{resource.getpagesize() - 1}; Linux 6.8 lifts it)"
            )
        mount("overlay", str(self.merged), "overlay", MS_NODEV, options)

    def bind_file(self, source: Path, target: str) -> None:
        """Bind the host file `source` over `target` inside the merged tree. Whatever is at
        `target` in the image (a symlink, a directory) is replaced by an empty file first, so
        the mount lands on the container's own path and nowhere else."""
        parent_path, _, name = target.strip("/").rpartition("/")
        if not name or name in (".", ".."):
            raise MountError(f"cannot bind a file over {target!r}")
        root = os.open(self.merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        parent = -1
        try:
            parent = self._directory(root, parent_path, target)
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    if stat.S_ISDIR(st.st_mode):
                        remove_tree(Path(f"/proc/self/fd/{parent}") / name)
                    else:
                        os.unlink(name, dir_fd=parent)
                    raise FileNotFoundError
            except FileNotFoundError:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(name, flags, 0o644, dir_fd=parent))
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                mount(str(source), f"/proc/self/fd/{fd}", None, MS_BIND)
            finally:
                os.close(fd)
        except OSError as exc:
            raise MountError(f"cannot bind {source} over {target} in {self.merged}: {exc}") from exc
        finally:
            if parent >= 0:
                os.close(parent)
            os.close(root)

    @classmethod
    def _directory(cls, root: int, path: str, target: str) -> int:
        """An O_PATH handle on `path` resolved inside the tree at `root` (symlinks included),
        made (mode 0755) where absent."""
        path = path.strip("/")
        if not path:
            return os.dup(root)
        try:
            return openat2(root, path, os.O_PATH | os.O_DIRECTORY, 0, _RESOLVE)
        except FileNotFoundError:
            pass
        except NotADirectoryError as exc:
            raise MountError(f"cannot bind over {target}: {path} is not a directory") from exc
        head, _, tail = path.rpartition("/")
        parent = cls._directory(root, head, target)
        try:
            os.mkdir(tail, 0o755, dir_fd=parent)
        except FileExistsError:
            pass
        finally:
            os.close(parent)
        return openat2(root, path, os.O_PATH | os.O_DIRECTORY, 0, _RESOLVE)

    def unmount(self) -> None:
        """Unmount the overlay and every mount under it (the bound files); idempotent. One
        lazy detach of the whole tree: the kernel waits for one RCU grace period per call
        that frees mounts, so one call for the tree rather than one per mount (a container's
        down took ~4 of them); with the container's processes gone nothing holds the tree,
        and it is freed at once."""
        if self.is_mounted():
            umount(str(self.merged), MNT_DETACH)

    def remove(self) -> None:
        """Unmount and delete the container's writable layer."""
        self.unmount()
        discard_tree(self.directory)
