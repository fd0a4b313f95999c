"""Containers for the runtime tests: a busybox image in the test's own state root, a runtime
with its own cgroup parent, and every container removed afterwards, whatever happened; a
group whose supervisor is killed afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
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
from engine.images.archive import ConfigChanges, import_rootfs
from engine.images.reference import parse_reference
from engine.images.store import Image, ImageStore
from engine.linux import pidfd_open, pidfd_send_signal
from engine.supervisor import supervisor_pid
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


def stop(pid: int) -> None:
    """SIGKILL a process this test started, wait until it is gone, and reap it when it is our
    child."""
    try:
        fd = pidfd_open(pid)
    except OSError:
        return
    try:
        with contextlib.suppress(ProcessLookupError):
            pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], 5)
    finally:
        os.close(fd)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@pytest.fixture
def group(runtime: Runtime) -> Iterator[str]:
    """A group name for containers; its supervisor, if one was started, is killed afterwards
    (before the runtime's containers are removed: it would restart them)."""
    name = f"g{os.getpid()}"
    yield name
    pid = supervisor_pid(runtime.root, name)
    if pid is not None:
        stop(pid)


def events(runtime: Runtime, group: str) -> list[dict[str, Any]]:
    """The events the group's supervisor wrote, oldest first."""
    path = runtime.root / "run" / f"{group}.events"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def until(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    """Whether `condition` held within `timeout` seconds (looked at every 10 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False
