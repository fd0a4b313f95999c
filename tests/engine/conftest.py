"""Containers for the runtime tests: a busybox image in the test's own state root, a runtime
with its own cgroup parent, and every container removed afterwards, whatever happened."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.cgroups import detect
from engine.container.config import ContainerConfig
from engine.container.runtime import Runtime
from engine.container.zygote import ensure_zygote
from engine.images.archive import ConfigChanges, import_rootfs
from engine.images.reference import parse_reference
from engine.images.store import Image, ImageStore
from tests.images.conftest import busybox_dir, busybox_tar  # noqa: F401 - shared fixtures

Make = Callable[..., ContainerConfig]


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def runtime(state_root: Path) -> Iterator[Runtime]:
    parent = f"composer-test-{secrets.token_hex(4)}"
    made = Runtime(state_root, detect(), cgroup_parent=parent)
    yield made
    failures = []
    for container_id in made.ids():
        try:
            made.remove(container_id, force=True)
        except Exception as exc:  # go on: everything else must still be cleaned
            failures.append(f"{container_id}: {exc}")
    # Whatever a failed removal left: processes of the test's own cgroup, mounts under its root.
    made.cgroups.kill(parent)
    for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        point = line.split()[4]
        if point.startswith(str(state_root)):
            subprocess.run(["umount", "-l", point], check=False)
    made.cgroups.remove(parent)
    assert not failures, failures


@pytest.fixture
def busybox(state_root: Path, busybox_tar: Path) -> tuple[ImageStore, Image]:  # noqa: F811
    store = ImageStore(state_root / "images")
    image = import_rootfs(store, busybox_tar, parse_reference("busybox:test"), ConfigChanges())
    return store, image


@pytest.fixture
def make(busybox: tuple[ImageStore, Image]) -> Make:
    """make("sh", "-c", "…", **ContainerConfig fields) → a config with a fresh id."""
    store, image = busybox

    def _make(*argv: str, **fields: Any) -> ContainerConfig:
        return ContainerConfig(
            id=fields.pop("id", f"c-{secrets.token_hex(4)}"),
            image_id=image.id,
            layers=tuple(str(store.layer_link(layer.diff_id)) for layer in image.layers),
            argv=argv,
            **fields,
        )

    return _make


@pytest.fixture
def forked(runtime: Runtime) -> Iterator[Runtime]:
    """The runtime, starting containers through a zygote of its own (ended afterwards)."""
    pid = ensure_zygote(runtime.root)
    runtime.use_zygote = True
    yield runtime
    stop(pid)


def stop(pid: int) -> None:
    """SIGKILL a process this test started, and reap it when it is our child."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(500):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)
