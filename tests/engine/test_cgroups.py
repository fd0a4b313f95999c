"""cgroup drivers: v1 on this host's real hierarchies; v2 on a real cgroup2 mount (without
controllers here) and on a fixture tree with controllers (limits and stats files)."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cgroups import V1, V2, detect
from engine.cgroups.base import CgroupError, CgroupLimits
from engine.cgroups.v2 import shares_to_weight


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"])


def end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


# -- v1, real ----------------------------------------------------------------------------------


@pytest.fixture
def v1() -> Iterator[tuple[V1, str]]:
    driver = detect()
    if not isinstance(driver, V1):
        pytest.skip("this host has cgroup v2")
    name = f"composer-test-{secrets.token_hex(4)}/c1"
    yield driver, name
    driver.kill(name)
    driver.remove(name.split("/")[0])


@pytest.mark.kernel
def test_v1_limits_are_written_to_each_controller(v1: tuple[V1, str]) -> None:
    driver, name = v1
    driver.create(name, CgroupLimits(cpu_quota_us=50_000, cpu_shares=512, memory_limit=64 << 20, memory_reservation=32 << 20, pids_limit=42))
    root = Path("/sys/fs/cgroup")
    assert (root / "cpu" / name / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert (root / "cpu" / name / "cpu.shares").read_text().strip() == "512"
    assert int((root / "memory" / name / "memory.limit_in_bytes").read_text()) == 64 << 20
    assert int((root / "memory" / name / "memory.soft_limit_in_bytes").read_text()) == 32 << 20
    assert (root / "pids" / name / "pids.max").read_text().strip() == "42"


@pytest.mark.kernel
def test_v1_processes_join_freeze_thaw_and_are_killed(v1: tuple[V1, str]) -> None:
    driver, name = v1
    driver.create(name, CgroupLimits())
    process = sleeper()
    try:
        driver.add(name, process.pid)
        assert driver.pids(name) == [process.pid]
        driver.freeze(name)
        assert driver.frozen(name)
        driver.thaw(name)
        assert not driver.frozen(name)
        driver.kill(name)
        assert process.wait(timeout=5) == -signal.SIGKILL
    finally:
        end(process)
    driver.remove(name)
    assert not driver.exists(name)


@pytest.mark.kernel
def test_v1_oom_kills_are_counted(v1: tuple[V1, str]) -> None:
    driver, name = v1
    driver.create(name, CgroupLimits(memory_limit=32 << 20, memory_swap=32 << 20))
    allocate = "import sys; sys.stdin.read(1); x = bytearray(128 << 20); x[::4096] = b'y' * len(x[::4096])"
    process = subprocess.Popen([sys.executable, "-c", allocate], stdin=subprocess.PIPE)
    try:
        driver.add(name, process.pid)  # before it allocates: it waits for a byte
        assert process.stdin is not None
        process.stdin.write(b"g")
        process.stdin.close()
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        end(process)
    assert driver.oom_kills(name) >= 1


@pytest.mark.kernel
def test_v1_stats_report_usage(v1: tuple[V1, str]) -> None:
    driver, name = v1
    driver.create(name, CgroupLimits(memory_limit=256 << 20))
    process = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 0.3\nwhile time.time() < end: pass"])
    try:
        driver.add(name, process.pid)
        process.wait(timeout=10)
    finally:
        end(process)
    stats = driver.stats(name)
    assert stats.cpu_usage_ns > 50_000_000
    assert stats.memory_limit == 256 << 20


def test_invalid_names_are_refused() -> None:
    for bad in ("", "/abs", "a/../b", "a//b"):
        with pytest.raises(CgroupError, match="invalid cgroup name"):
            V2(Path("/nonexistent")).exists(bad)


# -- v2, real mount ----------------------------------------------------------------------------


@pytest.fixture
def cgroup2(tmp_path: Path) -> Iterator[V2]:
    mountpoint = tmp_path / "cgroup2"
    mountpoint.mkdir()
    if subprocess.run(["mount", "-t", "cgroup2", "none", str(mountpoint)], capture_output=True).returncode:
        pytest.skip("cgroup2 cannot be mounted here")
    driver = V2(mountpoint)
    name = f"composer-test-{secrets.token_hex(4)}"
    try:
        yield driver  # tests use names under `name`
    finally:
        for group in sorted(mountpoint.glob("composer-test-*"), reverse=True):
            driver.kill(group.name)
            driver.remove(group.name)
        subprocess.run(["umount", str(mountpoint)], check=True)
    del name


@pytest.mark.kernel
def test_v2_real_join_freeze_kill_remove(cgroup2: V2) -> None:
    name = f"composer-test-{secrets.token_hex(4)}/c1"
    cgroup2.create(name, CgroupLimits())
    process = sleeper()
    try:
        cgroup2.add(name, process.pid)
        assert cgroup2.pids(name) == [process.pid]
        cgroup2.freeze(name)
        assert cgroup2.frozen(name)
        cgroup2.thaw(name)
        cgroup2.kill(name)  # cgroup.kill
        assert process.wait(timeout=5) == -signal.SIGKILL
    finally:
        end(process)
    cgroup2.remove(name)
    assert not cgroup2.exists(name)


@pytest.mark.kernel
def test_v2_a_limit_whose_controller_is_absent_is_an_error(cgroup2: V2) -> None:
    available = (cgroup2.root / "cgroup.controllers").read_text().split()
    if "pids" in available:
        pytest.skip("this cgroup2 hierarchy has the pids controller")
    with pytest.raises(CgroupError, match="the pids controller is not available"):
        cgroup2.create(f"composer-test-{secrets.token_hex(4)}", CgroupLimits(pids_limit=5))


# -- v2, fixture tree --------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> V2:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu cpuset memory pids io\n")
    (root / "cgroup.subtree_control").write_text("")
    return V2(root)



def make_files(path: Path) -> None:
    for file in ("cgroup.subtree_control", "cgroup.procs"):
        (path / file).touch()


def test_v2_limits_use_runcs_conversions(tree: V2, monkeypatch: pytest.MonkeyPatch) -> None:
    original_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        original_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        make_files(self)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    tree.create("composer/c1", CgroupLimits(cpu_quota_us=50_000, cpu_shares=512, cpuset_cpus="0", memory_limit=64 << 20, memory_swap=96 << 20, memory_reservation=16 << 20, pids_limit=-1))
    group = tree.root / "composer/c1"
    assert (group / "cpu.max").read_text() == "50000 100000"
    assert (group / "cpu.weight").read_text() == str(shares_to_weight(512)) == "20"
    assert (group / "cpuset.cpus").read_text() == "0"
    assert (group / "memory.max").read_text() == str(64 << 20)
    assert (group / "memory.swap.max").read_text() == str(32 << 20)
    assert (group / "memory.low").read_text() == str(16 << 20)
    assert (group / "pids.max").read_text() == "max"
    assert (tree.root / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory +pids +io"
    assert (tree.root / "composer/cgroup.subtree_control").read_text() == "+cpu +cpuset +memory +pids +io"


def test_v2_stats_are_read_from_the_groups_files(tree: V2) -> None:
    group = tree.root / "c1"
    group.mkdir()
    (group / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (group / "memory.current").write_text("4096\n")
    (group / "memory.max").write_text("max\n")
    (group / "pids.current").write_text("3\n")
    (group / "io.stat").write_text("8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=1 wbytes=2\n")
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    stats = tree.stats("c1")
    assert (stats.cpu_usage_ns, stats.memory_usage, stats.memory_limit, stats.pids) == (1_500_000, 4096, None, 3)
    assert (stats.io_read_bytes, stats.io_write_bytes, stats.oom_kills) == (101, 202, 1)


def test_detect_picks_v2_for_a_unified_root(tree: V2) -> None:
    assert isinstance(detect(tree.root), V2)


def test_shares_map_onto_weights_as_runc_does() -> None:
    assert [shares_to_weight(s) for s in (2, 1024, 262144)] == [1, 39, 10000]
