"""`up` converges a stack to its file and the stack's reconciler heals drift (root, real
kernel; traffic only on the stacks' own bridges)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from composer.converge import UpError
from composer.discovery import ContainerFiles
from composer.planner import PlanOptions
from composer.state import StateStore
from tests.stack.conftest import Stacks
from tests.stack.test_networking import IDLE, WEB

if TYPE_CHECKING:
    from composer.config.loader import Stack
    from engine.images.store import Image

pytestmark = pytest.mark.kernel

CLIENT = f"""
  client:
    image: busybox:test
    command: {IDLE}
"""


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def pid_of(stacks: Stacks, name: str) -> int:
    return stacks.runtime.get(name).state.pid


def heals(stacks: Stacks, project: str) -> list[dict[str, object]]:
    path = stacks.root / "run" / f"{project}.events"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["event"] == "heal"]


def reaches(stacks: Stacks, project: str, target: str = "web") -> bool:
    code, out = stacks.run(f"{project}-client-1", f"timeout 2 wget -q -O- http://{target}/")
    return code == 0 and "hello" in out


# -- convergence -----------------------------------------------------------------------------


def test_up_again_recreates_only_the_changed_service(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB + CLIENT)
    p = stack.project.name
    stacks.up(stack)
    web, client = pid_of(stacks, f"{p}-web-1"), pid_of(stacks, f"{p}-client-1")
    again = stacks.up(stacks.load("services:" + WEB + CLIENT, project=p))
    assert {a.kind for a in again.plan.actions} == {"keep"}
    changed = stacks.load("services:" + WEB + "    environment: {COLOUR: blue}\n" + CLIENT, project=p)
    result = stacks.up(changed)
    assert {a.name: a.kind for a in result.plan.actions} == {f"{p}-web-1": "recreate", f"{p}-client-1": "keep"}
    assert pid_of(stacks, f"{p}-client-1") == client and pid_of(stacks, f"{p}-web-1") != web
    assert stacks.run(f"{p}-web-1", "echo $COLOUR") == (0, "blue\n")
    assert reaches(stacks, p)  # same name, same address: the client's hosts file still holds


def test_force_recreate_and_no_recreate(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB)
    p = stack.project.name
    stacks.up(stack)
    first = pid_of(stacks, f"{p}-web-1")
    stacks.up(stack, PlanOptions(force_recreate=True))
    second = pid_of(stacks, f"{p}-web-1")
    assert second != first
    changed = stacks.load("services:" + WEB + "    environment: {A: 1}\n", project=p)
    stacks.up(changed, PlanOptions(no_recreate=True))
    assert pid_of(stacks, f"{p}-web-1") == second


def test_scale_up_and_down_rewrites_the_peers_hosts_files(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB + CLIENT)
    p = stack.project.name
    stacks.up(stack, PlanOptions(scale={"web": 3}))
    hosts = ContainerFiles(stacks.root / "stacks" / p / "files" / f"{p}-client-1").hosts
    assert all(f"{p}-web-{n}" in hosts.read_text() for n in (1, 2, 3))
    stacks.up(stack, PlanOptions(scale={"web": 1}))
    assert sorted(stacks.runtime.ids()) == [f"{p}-client-1", f"{p}-web-1"]
    text = hosts.read_text()
    assert f"{p}-web-1" in text and f"{p}-web-2" not in text and f"{p}-web-3" not in text
    with StateStore(stacks.root) as store:
        assert {a.container for a in store.addresses()} == {f"{p}-client-1", f"{p}-web-1"}


def test_remove_orphans(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB + CLIENT)
    p = stack.project.name
    stacks.up(stack)
    without_client = stacks.load("services:" + WEB, project=p)
    result = stacks.up(without_client)
    assert [o.name for o in result.plan.orphans] == [f"{p}-client-1"]
    assert f"{p}-client-1" in stacks.runtime.ids()
    stacks.up(without_client, PlanOptions(remove_orphans=True))
    assert stacks.runtime.ids() == [f"{p}-web-1"]


def test_a_container_name_taken_by_another_stack_fails_before_anything_starts(stacks: Stacks) -> None:
    one = stacks.load("services:" + WEB + "    container_name: shared-name-x\n")
    stacks.up(one)
    two = stacks.load("services:" + CLIENT + "  web:\n    image: busybox:test\n    container_name: shared-name-x\n")
    with pytest.raises(Exception, match="container name 'shared-name-x' is taken by a container of stack"):
        stacks.up(two)
    assert not any(n.startswith(two.project.name) for n in stacks.runtime.ids())


def test_a_container_that_cannot_start_fails_its_service_and_its_dependents_only(stacks: Stacks) -> None:
    stack = stacks.load(f"""
services:
  bad:
    image: busybox:test
    command: ["/no/such/program"]
  after-bad:
    image: busybox:test
    command: {IDLE}
    depends_on: [bad]
  fine:
    image: busybox:test
    command: {IDLE}
""")
    p = stack.project.name
    with pytest.raises(UpError) as failure:
        stacks.up(stack)
    assert set(failure.value.result.failed) == {"bad", "after-bad"}
    assert "/no/such/program" in failure.value.result.failed["bad"]
    assert "depends on bad, which failed" in failure.value.result.failed["after-bad"]
    assert stacks.runtime.get(f"{p}-fine-1").state.status == "running"
    # made at once, as docker compose makes every container first; never started
    assert stacks.runtime.get(f"{p}-after-bad-1").state.status == "created"


def test_many_new_containers_are_made_by_helper_processes_that_report_each_one(stacks: Stacks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio

    from composer import converge
    from composer.images import ensure_images

    makers = tmp_path / "makers"
    make = converge._Executor._make

    def recorded(self: converge._Executor, action: object) -> None:
        with open(makers, "a") as f:
            f.write(f"{os.getpid()}\n")
        make(self, action)  # type: ignore[arg-type]

    monkeypatch.setattr(converge._Executor, "_make", recorded)
    many = "".join(f"  s{n}:\n    image: busybox:test\n    command: {IDLE}\n" for n in range(converge._HELPED))
    bad = f'  bad:\n    image: busybox:test\n    command: {IDLE}\n    extra_hosts: ["db=not-an-address"]\n'
    stack = stacks.load("services:\n" + many + bad)
    p = stack.project.name
    stacks.projects.append(p)
    seen: list[tuple[str, str]] = []
    images = anyio.run(ensure_images, stacks.settings, stack)
    with pytest.raises(UpError) as failure:
        converge.up(stack, stacks.settings, images, progress=lambda name, what: seen.append((name, what)))
    assert set(failure.value.result.failed) == {"bad"}
    assert "'not-an-address' is not an IP address" in failure.value.result.failed["bad"]
    assert (f"{p}-bad-1", "Error") in seen
    for n in range(converge._HELPED):
        assert [what for name, what in seen if name == f"{p}-s{n}-1"] == ["Creating", "Created", "Starting", "Started"]
        assert stacks.runtime.get(f"{p}-s{n}-1").state.status == "running"
    helpers = {int(pid) for pid in makers.read_text().split()}
    assert helpers and os.getpid() not in helpers
    for pid in helpers:  # gone, and reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_depends_on_conditions_and_a_failed_branch(stacks: Stacks) -> None:
    stack = stacks.load(f"""
services:
  setup:
    image: busybox:test
    command: ["sh", "-c", "sleep 0.3; echo prepared > /proc/1/fd/1; exit 0"]
  app:
    image: busybox:test
    command: {IDLE}
    depends_on: {{setup: {{condition: service_completed_successfully}}}}
  broken:
    image: busybox:test
    command: ["sh", "-c", "echo the disk is full; exit 3"]
  needs-broken:
    image: busybox:test
    command: {IDLE}
    depends_on: {{broken: {{condition: service_completed_successfully}}}}
  optional:
    image: busybox:test
    command: {IDLE}
    depends_on: {{missing: {{condition: service_started, required: false}}}}
""")
    p = stack.project.name
    with pytest.raises(UpError) as failure:
        stacks.up(stack)
    assert set(failure.value.result.failed) == {"needs-broken"}
    message = str(failure.value)
    assert "broken did not complete successfully" in message and "exited (3)" in message
    assert "the disk is full" in message  # the end of its output
    runtime = stacks.runtime
    assert runtime.get(f"{p}-setup-1").state.exit_code == 0
    assert runtime.get(f"{p}-app-1").state.status == "running"
    assert runtime.get(f"{p}-optional-1").state.status == "running"
    assert f"{p}-needs-broken-1" not in runtime.ids() or runtime.get(f"{p}-needs-broken-1").state.status == "created"


def test_a_second_command_waits_for_the_first(stacks: Stacks) -> None:
    from composer.converge import up
    from composer.locks import stack_lock

    stack = stacks.load("services:" + WEB)
    images = _images(stacks, stack)
    told = threading.Event()
    with stack_lock(stacks.root, stack.project.name):
        worker = threading.Thread(target=up, args=(stack, stacks.settings, images),
                                  kwargs={"waiting": told.set})  # fmt: skip
        worker.start()
        assert told.wait(10)
        time.sleep(0.2)
        assert stacks.runtime.ids() == []  # the second one waits: nothing made
    worker.join(30)
    assert stacks.runtime.ids() == [f"{stack.project.name}-web-1"]


def _images(stacks: Stacks, stack: Stack) -> dict[str, Image]:
    import anyio

    from composer.images import ensure_images

    stacks.projects.append(stack.project.name)
    return anyio.run(ensure_images, stacks.settings, stack)


# -- healing ---------------------------------------------------------------------------------


def test_a_deleted_bridge_is_recreated_and_peers_reach_each_other_again(stacks: Stacks) -> None:
    from engine.network.bridge import bridge_exists
    from tests.iproute import host_iproute, link_index

    stack = stacks.load("services:" + WEB + CLIENT)
    p = stack.project.name
    stacks.up(stack)
    with StateStore(stacks.root) as store:
        [network] = store.networks(p)
    with host_iproute() as ipr:
        ipr.link("del", index=link_index(ipr, network.bridge))
    eventually(lambda: bridge_exists(network.bridge) and reaches(stacks, p), what="bridge healed")
    assert any(e.get("what") == "bridge re-created" for e in heals(stacks, p))


def test_a_deleted_veth_is_plumbed_again(stacks: Stacks) -> None:
    from tests.iproute import host_iproute, link_index

    stack = stacks.load("services:" + WEB + CLIENT)
    p = stack.project.name
    stacks.up(stack)
    [attachment] = stacks.runtime.get(f"{p}-web-1").config.networks
    with host_iproute() as ipr:
        ipr.link("del", index=link_index(ipr, attachment.host_ifname))
    eventually(lambda: reaches(stacks, p), what="veth re-plumbed")
    assert any(e["container"] == f"{p}-web-1" and e.get("what") == "re-attached" for e in heals(stacks, p))


def test_an_edited_hosts_file_is_rewritten_in_place(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB + CLIENT)
    p = stack.project.name
    stacks.up(stack)
    hosts = ContainerFiles(stacks.root / "stacks" / p / "files" / f"{p}-client-1").hosts
    good, inode = hosts.read_text(), hosts.stat().st_ino
    stacks.run(f"{p}-client-1", "echo '10.9.9.9 web' > /etc/hosts")
    eventually(lambda: hosts.read_text() == good, what="hosts rewritten")
    assert hosts.stat().st_ino == inode
    assert reaches(stacks, p)


def test_a_container_removed_behind_our_back_is_recreated(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB + CLIENT)
    p = stack.project.name
    stacks.up(stack)
    runtime = stacks.runtime
    web = runtime.get(f"{p}-web-1")
    shim = int(Path(f"/proc/{web.state.pid}/stat").read_text().rpartition(")")[2].split()[1])
    assert shim > 1
    os.kill(shim, signal.SIGKILL)  # its shim (the parent of its first process), then it
    os.kill(web.state.pid, signal.SIGKILL)
    eventually(lambda: runtime.get(f"{p}-web-1").state.status != "running" or pid_of(stacks, f"{p}-web-1") != web.state.pid)
    from engine.rootfs import Rootfs

    Rootfs(web.directory / "rootfs").remove()
    shutil.rmtree(web.directory, ignore_errors=True)
    runtime.cgroups.remove(runtime.cgroup_of(f"{p}-web-1"))
    eventually(lambda: f"{p}-web-1" in runtime.ids() and runtime.get(f"{p}-web-1").state.status == "running",
               what="container re-created")
    eventually(lambda: reaches(stacks, p), what="reachable again")


def test_network_mode_service_follows_its_target_when_it_is_recreated(stacks: Stacks) -> None:
    stack = stacks.load("services:" + WEB + f"""
  sidecar:
    image: busybox:test
    command: {IDLE}
    network_mode: service:web
""")
    p = stack.project.name
    stacks.up(stack)
    stacks.up(stack, PlanOptions(force_recreate=True, services=("web",), no_deps=True))

    def same_namespace() -> bool:
        web, side = pid_of(stacks, f"{p}-web-1"), pid_of(stacks, f"{p}-sidecar-1")
        try:
            return os.stat(f"/proc/{web}/ns/net").st_ino == os.stat(f"/proc/{side}/ns/net").st_ino
        except OSError:
            return False

    eventually(same_namespace, what="sidecar in web's new namespace")
    assert "hello" in stacks.run(f"{p}-sidecar-1", "timeout 2 wget -q -O- http://127.0.0.1/")[1]


def _destroy_listener(address: str, port: int) -> None:
    """Close a TCP listener from outside, as `ss -K` does (a SOCK_DESTROY netlink request)."""
    import socket
    import struct

    sock_diag, sock_destroy = 4, 21  # NETLINK_SOCK_DIAG, SOCK_DESTROY
    request = struct.pack("=BBBxI", socket.AF_INET, socket.IPPROTO_TCP, 0, 1 << 10)  # TCP_LISTEN
    request += struct.pack(">HH", port, 0) + socket.inet_aton(address) + bytes(12) + bytes(16)
    request += struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
    header = struct.pack("=IHHII", 16 + len(request), sock_destroy, 1 | 4, 1, 0)  # REQUEST|ACK
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, sock_diag) as nl:
        nl.send(header + request)
        answer = nl.recv(4096)
    error = struct.unpack("=i", answer[16:20])[0]
    assert error == 0, f"SOCK_DESTROY: {os.strerror(-error)}"


def test_a_published_port_listener_closed_from_outside_is_restored(stacks: Stacks) -> None:
    import urllib.request

    stack = stacks.load("services:" + WEB + '    ports: ["127.0.0.1::80"]\n')
    p = stack.project.name
    stacks.up(stack)
    with StateStore(stacks.root) as store:
        [port] = store.ports(p)

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port.host_port}/", timeout=2) as reply:
                return reply.read().startswith(b"hello")
        except OSError:
            return False

    assert answers()
    _destroy_listener("127.0.0.1", port.host_port)
    eventually(answers, what="listener restored")
    eventually(lambda: any(e.get("what") == "port listener restored" for e in heals(stacks, p)),
               what="heal event")  # fmt: skip
