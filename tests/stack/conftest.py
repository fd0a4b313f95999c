"""Whole stacks brought up for real (root, real kernel): each test gets its own state root
with a busybox image, unique project names, and everything it made removed afterwards —
containers, bridges, veths, the fork server and supervisors it started — whatever happened."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from composer.config.loader import LoadOptions, Stack, load_stack
from composer.converge import UpResult, down, up
from composer.images import ensure_images
from composer.planner import PlanOptions
from composer.settings import Settings
from composer.state import StateStore
from engine.cgroups import detect
from engine.container.runtime import Runtime
from engine.daemon import running_pid
from engine.images.archive import ConfigChanges, import_rootfs
from engine.images.reference import parse_reference
from engine.images.store import ImageStore
from tests.images.conftest import busybox_dir, busybox_tar  # noqa: F401 - shared fixtures


@dataclass
class Stacks:
    """Bring stacks up and down in the test's own state root."""

    root: Path
    directory: Path
    projects: list[str] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings.load({"COMPOSER_ROOT": str(self.root)})

    def configure(self, text: str) -> None:
        """Write the state root's config.yaml (the host settings)."""
        (self.root / "config.yaml").write_text(textwrap.dedent(text).lstrip("\n"))

    def name(self) -> str:
        project = f"t{secrets.token_hex(4)}"
        self.projects.append(project)
        return project

    def load(self, text: str, project: str | None = None) -> Stack:
        project = project or self.name()
        path = self.directory / project / "compose.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"name: {project}\n" + textwrap.dedent(text).lstrip("\n"))
        return load_stack(LoadOptions(files=(path,), working_directory=path.parent))

    def up(self, stack: Stack, options: PlanOptions | None = None) -> UpResult:
        if stack.project.name not in self.projects:
            self.projects.append(stack.project.name)
        images = anyio.run(ensure_images, self.settings, stack)
        return up(stack, self.settings, images, options)

    def down(self, project: str) -> list[str]:
        return down(project, self.settings, timeout=0)

    @property
    def runtime(self) -> Runtime:
        return Runtime(self.root, detect())

    def run(self, container: str, script: str, timeout: float = 20) -> tuple[int, str]:
        """Run `sh -c script` in a running container; its exit code and output."""
        out = self.directory / f"exec-{secrets.token_hex(3)}"
        with open(out, "w") as f:
            code = self.runtime.exec(container, ("sh", "-c", script), stdout=f.fileno(),
                                     stderr=subprocess.STDOUT)  # fmt: skip
        return code, out.read_text()


def _links() -> set[str]:
    from tests.iproute import host_iproute

    with host_iproute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def _own_links(root: Path) -> set[str]:
    """The bridges and host-side veths of the stacks under `root`."""
    names: set[str] = set()
    if (root / "state.db").exists():
        with StateStore(root) as store:
            names |= {n.bridge for n in store.networks()}
    runtime = Runtime(root, detect())
    for container_id in runtime.ids():
        with contextlib.suppress(Exception):
            names |= {a.host_ifname for a in runtime.get(container_id).config.networks}
    return names


@pytest.fixture
def stacks(tmp_path: Path, busybox_tar: Path) -> Iterator[Stacks]:  # noqa: F811
    root = tmp_path / "state"
    store = ImageStore(root / "images")
    import_rootfs(store, busybox_tar, parse_reference("busybox:test"), ConfigChanges())
    made = Stacks(root, tmp_path / "stacks")
    yield made
    failures = []
    ours = _own_links(root)  # before down forgets them; only ours: other runs share the host
    for project in made.projects:
        try:
            made.down(project)
        except Exception as exc:  # go on: everything else must still be cleaned
            failures.append(f"down {project}: {exc}")
    runtime = made.runtime
    for container_id in runtime.ids():
        with contextlib.suppress(Exception):
            runtime.remove(container_id, force=True)
    for lock in (root / "run").glob("*.lock"):
        pid = running_pid(lock)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    from engine.network.bridge import remove_bridge
    from engine.network.firewall import remove_firewall
    from engine.network.nat import remove_masquerade
    from engine.network.veth import detach

    for name in ours & _links():  # whatever a failed down left
        if name.startswith("cb-"):
            with contextlib.suppress(Exception):
                remove_masquerade(name)
        with contextlib.suppress(Exception):
            (remove_bridge if name.startswith("cb-") else detach)(name)
    for name in ours:  # a firewall may outlive its bridge
        if name.startswith("cb-"):
            with contextlib.suppress(Exception):
                remove_firewall(name)
    for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        point = line.split()[4]
        if point.startswith(str(root)):
            subprocess.run(["umount", "-l", point], check=False)
    time.sleep(0)
    assert not failures, failures


Load = Callable[[str], Stack]
