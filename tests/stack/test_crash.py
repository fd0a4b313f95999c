"""Crash safety: `composer up` and the stack's supervisor killed with SIGKILL at random points,
twenty times over; then `up` converges with no duplicate, and `down` leaves the host's links,
mounts, cgroups and processes as they were (root, real kernel)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composer.state import StateStore
from engine.daemon import running_pid
from tests.stack.conftest import Stacks
from tests.stack.test_networking import IDLE, WEB

pytestmark = pytest.mark.kernel

ROUNDS = 20
STACK = "services:" + WEB + f"""
    ports: ["127.0.0.1::80"]
  client:
    image: busybox:test
    command: {IDLE}
    depends_on: [web]
    deploy: {{replicas: 8}}  # ten new containers in all: made by helper processes
  other:
    image: busybox:test
    command: {IDLE}
"""


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _mounts(root: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(root))]  # fmt: skip


def _cgroups(names: list[str]) -> list[str]:
    found = []
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(base, d) for d in dirs if d in names]
    return found


def _processes(root: Path, spared: set[int]) -> list[int]:
    """Processes started for `root` (their command line names it): the supervisor, shims,
    the fork server — but those in `spared`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spared or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if str(root).encode() in cmdline:
            found.append(int(entry))
    return found


def test_kill_9_of_up_and_the_supervisor_at_random_points(stacks: Stacks) -> None:
    stack = stacks.load(STACK)
    p = stack.project.name
    path = stacks.directory / p / "compose.yaml"
    expected = {f"{p}-web-1", f"{p}-other-1", *(f"{p}-client-{n}" for n in range(1, 9))}
    composer = str(Path(sys.executable).with_name("composer"))
    env = {**os.environ, "COMPOSER_ROOT": str(stacks.root)}
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        up = subprocess.Popen([composer, "-f", str(path), "up", "-d", "--progress", "quiet"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.0, 1.5))
        up.kill()
        up.wait()
        if rng.random() < 0.5:
            supervisor = running_pid(stacks.root / "run" / f"{p}.lock")
            if supervisor:
                os.kill(supervisor, signal.SIGKILL)
    final = subprocess.run([composer, "-f", str(path), "up", "-d", "--progress", "quiet"], env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert final.returncode == 0, (seed, final.stderr)
    runtime = stacks.runtime
    assert set(runtime.ids()) == expected, seed
    for name in expected:
        state = runtime.get(name).state
        assert state.status == "running", (seed, name)
        # exactly one process in its cgroup: its own (no duplicate left by an interrupted start)
        assert runtime.cgroups.pids(runtime.cgroup_of(name)) == [state.pid], (seed, name)
    with StateStore(stacks.root) as store:
        assert {c.id for c in store.containers(p)} == expected, seed
        addresses = [a.address for a in store.addresses()]
        assert len(addresses) == len(set(addresses)) == len(expected), seed
        [port] = store.ports(p)
    assert stacks.run(f"{p}-client-1", "timeout 2 wget -q -O- http://web/")[1].startswith("hello")
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port.host_port}/", timeout=5) as answer:
        assert answer.read().startswith(b"hello")

    from engine.network.veth import veth_name

    with StateStore(stacks.root) as store:
        ours = {n.bridge for n in store.networks(p)}
    ours |= {veth_name(name, index) for name in expected for index in range(4)}
    # The fork server is the state root's, not the stack's: it stays for the next commands
    # (and leaves when idle).
    helpers = {running_pid(stacks.root / "run" / "cli.lock")}
    down = subprocess.run([composer, "-f", str(path), "down", "-t", "0", "--progress", "quiet"],
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert down.returncode == 0, (seed, down.stderr)
    time.sleep(0.2)  # the supervisor leaves on SIGTERM
    assert _links() & ours == set(), seed  # (other runs may make links meanwhile: only ours)
    assert _mounts(stacks.root) == [], seed
    assert _cgroups(sorted(expected)) == [], seed
    assert _processes(stacks.root, {pid for pid in helpers if pid}) == [], seed
