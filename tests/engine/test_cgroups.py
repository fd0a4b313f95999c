"""cgroup drivers: v1 on this host's real hierarchies, v2 on a real cgroup2 mount (without
controllers on a v1 host), and both on fixture trees that stand in for the kernel's files
(limits with runc's conversions, stats parsing, refusals)."""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.cgroups import V1, V2, CgroupDriver, CgroupError, CgroupLimits, detect
from engine.cgroups.v1 import DEFAULT_DEVICE_RULES
from engine.cgroups.v2 import shares_to_weight

SYS = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices")
MB = 1 << 20


class Scratch:
    """A test's own cgroup subtree `top` under `root` and the processes it started; `cleanup`
    ends those processes (by pid) and removes the subtree, whatever the test left."""

    def __init__(self, driver: CgroupDriver, root: Path) -> None:
        self.driver = driver
        self.root = root
        self.top = f"composer-test-{secrets.token_hex(4)}"
        self.names = {self.top}
        self.processes: list[subprocess.Popen[bytes]] = []

    def name(self, child: str = "c1") -> str:
        name = f"{self.top}/{child}"
        self.names.add(name)
        return name

    def start(self, *argv: str, stdin: bool = False) -> subprocess.Popen[bytes]:
        stdin_ = subprocess.PIPE if stdin else subprocess.DEVNULL
        # Unbuffered: wait_for_line selects on the pipe, so no line may wait in a buffer.
        process = subprocess.Popen(argv, stdin=stdin_, stdout=subprocess.PIPE, bufsize=0)
        self.processes.append(process)
        return process

    def cleanup(self) -> None:
        for name in sorted(self.names):  # a frozen v1 process dies only once thawed
            if self.driver.exists(name):
                with contextlib.suppress(CgroupError):
                    self.driver.thaw(name)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        self.driver.kill(self.top)  # whatever those processes forked
        self.driver.remove(self.top)
        assert not self.driver.exists(self.top)


def wait_for_line(process: subprocess.Popen[bytes], timeout: float = 10) -> str:
    """The next line the process prints; fails the test when none comes in time."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"process {process.pid} printed nothing in {timeout} s"
    return process.stdout.readline().decode().strip()


def send(process: subprocess.Popen[bytes], data: bytes = b"go\n") -> None:
    assert process.stdin is not None
    process.stdin.write(data)
    process.stdin.flush()


def cpu_ticks(pid: int) -> int:
    """The process's user + system time, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def eventually(condition: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def text(path: Path) -> str:
    return path.read_text().strip()


BUSY = "import sys, time\nprint('ready', flush=True)\nwhile True: pass\n"
SLEEP = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
# Enter the group through its join files (as a container's init does), then run `$0`.
JOIN_THEN = 'for f in "$@"; do echo 0 > "$f"; done; echo joined; eval "$0"'


# -- v1, real ---------------------------------------------------------------------------------


@pytest.fixture
def v1() -> Iterator[Scratch]:
    if (SYS / "cgroup.controllers").exists():
        pytest.skip("this host has the unified (v2) hierarchy, not v1")
    scratch = Scratch(V1(SYS), SYS)
    try:
        yield scratch
    finally:
        scratch.cleanup()
        assert not any((SYS / c / scratch.top).exists() for c in V1_CONTROLLERS)


@pytest.mark.kernel
def test_detect_picks_v1_on_this_host(v1: Scratch) -> None:
    assert isinstance(detect(), V1)
    assert detect().version == 1


@pytest.mark.kernel
def test_v1_limits_are_written_to_each_controllers_files(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(
        name,
        CgroupLimits(
            cpu_quota_us=50_000,
            cpu_shares=512,
            cpuset_cpus="0",
            cpuset_mems="0",
            memory_limit=64 * MB,
            memory_swap=64 * MB,
            memory_reservation=32 * MB,
            pids_limit=42,
        ),
    )
    assert text(SYS / "cpu" / name / "cpu.cfs_period_us") == "100000"
    assert text(SYS / "cpu" / name / "cpu.cfs_quota_us") == "50000"
    assert text(SYS / "cpu" / name / "cpu.shares") == "512"
    assert text(SYS / "cpuset" / name / "cpuset.cpus") == "0"
    assert text(SYS / "cpuset" / name / "cpuset.mems") == "0"
    assert int(text(SYS / "memory" / name / "memory.limit_in_bytes")) == 64 * MB
    assert int(text(SYS / "memory" / name / "memory.memsw.limit_in_bytes")) == 64 * MB
    assert int(text(SYS / "memory" / name / "memory.soft_limit_in_bytes")) == 32 * MB
    assert text(SYS / "pids" / name / "pids.max") == "42"


@pytest.mark.kernel
def test_v1_memory_and_swap_limits_can_be_raised_and_lowered(v1: Scratch) -> None:
    # memory may never exceed memory+swap: each change needs its own order of writes
    name, memory = v1.name(), SYS / "memory" / v1.name()
    for limit, swap in ((64 * MB, 64 * MB), (128 * MB, 256 * MB), (32 * MB, 32 * MB)):
        v1.driver.create(name, CgroupLimits(memory_limit=limit, memory_swap=swap))
        assert int(text(memory / "memory.limit_in_bytes")) == limit
        assert int(text(memory / "memory.memsw.limit_in_bytes")) == swap


@pytest.mark.kernel
def test_v1_unlimited_values_lift_the_limits(v1: Scratch) -> None:
    name = v1.name()
    limited = CgroupLimits(
        cpu_quota_us=20_000, memory_limit=64 * MB, memory_swap=64 * MB, pids_limit=5
    )
    v1.driver.create(name, limited)
    v1.driver.create(name, CgroupLimits(cpu_quota_us=-1, memory_limit=-1, pids_limit=0))
    assert text(SYS / "cpu" / name / "cpu.cfs_quota_us") == "-1"
    assert int(text(SYS / "memory" / name / "memory.limit_in_bytes")) > 1 << 62
    assert (
        int(text(SYS / "memory" / name / "memory.memsw.limit_in_bytes")) > 1 << 62
    )  # as runc does
    assert text(SYS / "pids" / name / "pids.max") == "max"


@pytest.mark.kernel
def test_v1_new_cpusets_get_their_parents_cpus_and_mems(v1: Scratch) -> None:
    v1.driver.create(v1.name(), CgroupLimits())
    for level in (v1.top, v1.name()):
        assert text(SYS / "cpuset" / level / "cpuset.cpus") == text(SYS / "cpuset/cpuset.cpus")
        assert text(SYS / "cpuset" / level / "cpuset.mems") == text(SYS / "cpuset/cpuset.mems")


@pytest.mark.kernel
def test_v1_a_new_group_allows_only_the_default_devices(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits())
    assert text(SYS / "devices" / name / "devices.list").splitlines() == list(DEFAULT_DEVICE_RULES)
    for level in (v1.top, name):  # made in every hierarchy, parents first
        assert all((SYS / c / level).is_dir() for c in V1_CONTROLLERS)


@pytest.mark.kernel
def test_v1_an_added_process_is_in_the_group_in_every_hierarchy(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits())
    process = v1.start("sleep", "60")
    v1.driver.add(name, process.pid)
    assert v1.driver.pids(name) == [process.pid]
    assert v1.driver.pids(v1.top) == [process.pid]  # a group's processes include its children's
    memberships = dict(
        (line.split(":")[1], line.split(":")[2])
        for line in Path(f"/proc/{process.pid}/cgroup").read_text().splitlines()
    )
    for controller in V1_CONTROLLERS:
        assert memberships[controller] == f"/{name}", controller


@pytest.mark.kernel
def test_v1_a_process_joins_by_writing_zero_to_the_join_files(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits())
    files = [str(f) for f in v1.driver.join_files(name)]
    assert sorted(Path(f).parent.parent.parent.name for f in files) == sorted(V1_CONTROLLERS)
    process = v1.start("sh", "-c", JOIN_THEN, "exec sleep 60", *files)
    assert wait_for_line(process) == "joined"
    assert v1.driver.pids(name) == [process.pid]


@pytest.mark.kernel
def test_v1_the_memory_limit_kills_a_process_beyond_it_and_counts_the_kill(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits(memory_limit=32 * MB, memory_swap=32 * MB))
    hog = "import sys\nsys.stdin.readline()\nchunks = [b'x' * (1 << 20) for _ in range(256)]\n"
    process = v1.start(sys.executable, "-c", hog, stdin=True)
    v1.driver.add(name, process.pid)  # before it allocates: it waits for a line
    assert v1.driver.oom_kills(name) == 0
    send(process)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert v1.driver.oom_kills(name) == 1
    assert v1.driver.stats(name).oom_kills == 1


@pytest.mark.kernel
def test_v1_the_pids_limit_stops_forks(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits(pids_limit=5))
    bomb = "i=0; while [ $i -lt 30 ]; do sleep 60 & i=$((i+1)); done"
    process = v1.start(
        "sh", "-c", 'read _; sh -c "$0" 2>/dev/null; echo tried; exec sleep 60', bomb, stdin=True
    )
    v1.driver.add(name, process.pid)
    send(process)
    assert wait_for_line(process) == "tried"
    assert 2 <= len(v1.driver.pids(name)) <= 5
    assert v1.driver.stats(name).pids <= 5
    refused = dict(
        line.split() for line in (SYS / "pids" / name / "pids.events").read_text().splitlines()
    )
    assert int(refused["max"]) > 0


@pytest.mark.kernel
def test_v1_freeze_stops_the_processes_and_thaw_resumes_them(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits())
    process = v1.start(sys.executable, "-c", BUSY)
    v1.driver.add(name, process.pid)
    assert wait_for_line(process) == "ready"

    v1.driver.freeze(name)
    assert text(SYS / "freezer" / name / "freezer.state") == "FROZEN"
    assert v1.driver.frozen(name)
    assert Path(f"/proc/{process.pid}/status").read_text().count("State:\tD") == 1
    before = cpu_ticks(process.pid)
    time.sleep(0.3)
    assert cpu_ticks(process.pid) == before

    v1.driver.thaw(name)
    assert text(SYS / "freezer" / name / "freezer.state") == "THAWED"
    assert not v1.driver.frozen(name)
    assert eventually(lambda: cpu_ticks(process.pid) > before + 5)


@pytest.mark.kernel
def test_v1_kill_ends_every_process_of_the_subtree_and_remove_follows_at_once(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits())
    files = [str(f) for f in v1.driver.join_files(name)]
    forks = "sleep 60 & sleep 60 & sleep 60 & echo forked; wait"
    process = v1.start("sh", "-c", JOIN_THEN, forks, *files)
    assert wait_for_line(process) == "joined"
    assert wait_for_line(process) == "forked"
    assert len(v1.driver.pids(name)) == 4

    v1.driver.kill(v1.top)
    assert process.wait(timeout=5) == -signal.SIGKILL
    assert eventually(lambda: v1.driver.pids(v1.top) == [])
    assert not v1.driver.frozen(name)  # frozen only while the signals went out
    v1.driver.remove(v1.top)
    assert not any((SYS / c / v1.top).exists() for c in V1_CONTROLLERS)


@pytest.mark.kernel
def test_v1_kill_sends_the_signal_asked_for(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits())
    process = v1.start("sleep", "60")
    v1.driver.add(name, process.pid)
    v1.driver.kill(name, signal.SIGTERM)
    assert process.wait(timeout=5) == -signal.SIGTERM


@pytest.mark.kernel
def test_v1_a_paused_group_stays_paused_through_other_signals_but_not_sigkill(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits())
    process = v1.start("sleep", "60")
    v1.driver.add(name, process.pid)
    v1.driver.freeze(name)
    v1.driver.kill(name, signal.SIGTERM)
    time.sleep(0.1)
    assert v1.driver.frozen(name) and process.poll() is None
    v1.driver.kill(name)
    # Thawed for SIGKILL, the process ends; which of the two pending signals the kernel
    # acts on first is its choice.
    assert process.wait(timeout=5) in (-signal.SIGKILL, -signal.SIGTERM)
    assert not v1.driver.frozen(name)


@pytest.mark.kernel
def test_v1_stats_report_cpu_memory_pids_and_io(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits(memory_limit=256 * MB))
    work = (
        "import sys, time\nsys.stdin.readline()\nheld = b'x' * (8 << 20)\n"
        "end = time.monotonic() + 0.3\nwhile time.monotonic() < end: pass\n"
        "print('done', flush=True)\ntime.sleep(60)\n"
    )
    process = v1.start(sys.executable, "-c", work, stdin=True)
    v1.driver.add(name, process.pid)
    send(process)
    assert wait_for_line(process) == "done"
    stats = v1.driver.stats(name)
    assert stats.cpu_usage_ns > 100_000_000
    assert stats.memory_usage >= 8 * MB
    assert stats.memory_limit == 256 * MB
    assert stats.pids == 1
    assert isinstance(stats.io_read_bytes, int) and isinstance(stats.io_write_bytes, int)
    assert stats.oom_kills == 0


@pytest.mark.kernel
def test_v1_remove_deletes_the_group_in_every_hierarchy_and_may_be_repeated(v1: Scratch) -> None:
    v1.driver.create(v1.name("a/b"), CgroupLimits())
    assert all((SYS / c / v1.name("a/b")).is_dir() for c in V1_CONTROLLERS)
    v1.driver.remove(v1.name("a"))
    assert not any((SYS / c / v1.name("a")).exists() for c in V1_CONTROLLERS)
    assert not v1.driver.exists(v1.name("a"))
    v1.driver.remove(v1.name("a"))


@pytest.mark.kernel
def test_v1_remove_refuses_a_group_whose_processes_live_on(v1: Scratch) -> None:
    name = v1.name()
    v1.driver.create(name, CgroupLimits())
    process = v1.start("sleep", "60")
    v1.driver.add(name, process.pid)
    started = time.monotonic()
    with pytest.raises(CgroupError, match=f"processes still in it: {process.pid}"):
        V1(SYS, busy_timeout=0.2).remove(name)  # one wait for all the hierarchies
    assert time.monotonic() - started < 2
    assert process.poll() is None


def _memory_groups() -> int:
    """The memory cgroups the kernel counts, dying ones (removed, still charged) included."""
    line = next(x for x in Path("/proc/cgroups").read_text().splitlines() if x.startswith("memory"))
    return int(line.split()[2])


@pytest.mark.kernel
def test_v1_a_removed_group_does_not_linger_charged_with_the_page_cache_it_filled(v1: Scratch, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(os.urandom(8 << 20))
    with data.open("rb") as f:  # out of the page cache: the group's read brings it in
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    name = v1.name()
    v1.driver.create(name, CgroupLimits())
    process = v1.start("sh", "-c", f"read go; cat {data} > /dev/null; echo done", stdin=True)
    v1.driver.add(name, process.pid)
    send(process)
    assert wait_for_line(process) == "done"
    process.wait(timeout=10)
    with_it = _memory_groups()
    v1.driver.remove(name)
    # the 8 MB stay cached; had they stayed charged to the group, it would stay too (dying)
    assert eventually(lambda: _memory_groups() < with_it, timeout=3), (_memory_groups(), with_it)


# -- v2, real: a cgroup2 mount (on a v1 host it has no cpu, memory or pids controllers) -------


@pytest.fixture
def v2(tmp_path: Path) -> Iterator[Scratch]:
    mountpoint = tmp_path / "cgroup2"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "cgroup2", "none", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount cgroup2: {done.stderr.strip()}")
    scratch = Scratch(V2(mountpoint), mountpoint)
    try:
        yield scratch
    finally:
        try:
            scratch.cleanup()  # the mount shares the host's hierarchy: nothing may stay in it
        finally:
            subprocess.run(["umount", str(mountpoint)], check=True)
            assert f" {mountpoint} " not in Path("/proc/self/mountinfo").read_text()


@pytest.mark.kernel
def test_v2_create_makes_the_nested_group_and_an_added_process_is_listed(v2: Scratch) -> None:
    name = v2.name("stack/c1")
    v2.driver.create(name, CgroupLimits())
    process = v2.start("sleep", "60")
    v2.driver.add(name, process.pid)
    assert v2.driver.pids(name) == [process.pid]
    assert v2.driver.pids(v2.top) == [process.pid]
    assert f"0::/{name}\n" in Path(f"/proc/{process.pid}/cgroup").read_text()


@pytest.mark.kernel
def test_v2_a_process_joins_by_writing_zero_to_the_join_file(v2: Scratch) -> None:
    name = v2.name()
    v2.driver.create(name, CgroupLimits())
    files = v2.driver.join_files(name)
    assert files == [v2.root / name / "cgroup.procs"]
    process = v2.start("sh", "-c", JOIN_THEN, "exec sleep 60", str(files[0]))
    assert wait_for_line(process) == "joined"
    assert v2.driver.pids(name) == [process.pid]


@pytest.mark.kernel
def test_v2_freeze_stops_the_processes_and_thaw_resumes_them(v2: Scratch) -> None:
    name = v2.name()
    v2.driver.create(name, CgroupLimits())
    process = v2.start(sys.executable, "-c", BUSY)
    v2.driver.add(name, process.pid)
    assert wait_for_line(process) == "ready"
    events = v2.root / name / "cgroup.events"

    v2.driver.freeze(name)
    assert "frozen 1" in events.read_text().splitlines()
    assert v2.driver.frozen(name)
    before = cpu_ticks(process.pid)
    time.sleep(0.3)
    assert cpu_ticks(process.pid) == before

    v2.driver.thaw(name)
    assert "frozen 0" in events.read_text().splitlines()
    assert not v2.driver.frozen(name)
    assert eventually(lambda: cpu_ticks(process.pid) > before + 5)


@pytest.mark.kernel
def test_v2_kill_ends_every_process_of_the_subtree_and_remove_follows_at_once(v2: Scratch) -> None:
    name = v2.name()
    v2.driver.create(name, CgroupLimits())
    forks = "sleep 60 & sleep 60 & sleep 60 & echo forked; wait"
    process = v2.start("sh", "-c", JOIN_THEN, forks, str(v2.driver.join_files(name)[0]))
    assert wait_for_line(process) == "joined"
    assert wait_for_line(process) == "forked"
    assert len(v2.driver.pids(name)) == 4

    v2.driver.kill(v2.top)  # through cgroup.kill
    assert process.wait(timeout=5) == -signal.SIGKILL
    assert eventually(lambda: v2.driver.pids(v2.top) == [])
    v2.driver.remove(v2.top)
    assert not v2.driver.exists(v2.top)


@pytest.mark.kernel
def test_v2_kill_sends_another_signal_to_each_process(v2: Scratch) -> None:
    name = v2.name()
    v2.driver.create(name, CgroupLimits())
    process = v2.start("sleep", "60")
    v2.driver.add(name, process.pid)
    v2.driver.kill(name, signal.SIGTERM)
    assert process.wait(timeout=5) == -signal.SIGTERM


@pytest.mark.kernel
def test_v2_a_limit_whose_controller_is_absent_is_refused_by_name(v2: Scratch) -> None:
    available = (v2.root / "cgroup.controllers").read_text().split()
    if "memory" in available:
        pytest.skip("this cgroup2 hierarchy has the memory controller")
    with pytest.raises(CgroupError, match="the memory controller is not available"):
        v2.driver.create(v2.name(), CgroupLimits(memory_limit=64 * MB))
    assert not v2.driver.exists(v2.top)


@pytest.mark.kernel
def test_v2_stats_without_controllers_still_count_cpu_and_processes(v2: Scratch) -> None:
    name = v2.name()
    v2.driver.create(name, CgroupLimits())
    process = v2.start(sys.executable, "-c", BUSY)
    v2.driver.add(name, process.pid)
    time.sleep(0.3)
    stats = v2.driver.stats(name)
    assert stats.cpu_usage_ns > 50_000_000  # cpu.stat is kept by every v2 group
    assert stats.pids == 1
    assert (stats.memory_limit, stats.io_read_bytes, stats.oom_kills) == (None, None, 0)


@pytest.mark.kernel
def test_v2_remove_deletes_nested_groups_and_may_be_repeated(v2: Scratch) -> None:
    v2.driver.create(v2.name("a/b"), CgroupLimits())
    v2.driver.remove(v2.name("a"))
    assert not v2.driver.exists(v2.name("a"))
    assert v2.driver.exists(v2.top)
    v2.driver.remove(v2.name("a"))


@pytest.mark.kernel
def test_v2_remove_refuses_a_group_whose_processes_live_on(v2: Scratch) -> None:
    name = v2.name()
    v2.driver.create(name, CgroupLimits())
    process = v2.start("sleep", "60")
    v2.driver.add(name, process.pid)
    with pytest.raises(CgroupError, match=f"processes still in it: {process.pid}"):
        V2(v2.root, busy_timeout=0.2).remove(name)
    assert v2.driver.exists(name)


# -- fixture trees: the kernel's files, without the kernel ------------------------------------

V2_GROUP_FILES = {
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "cgroup.freeze": "0",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cpu.max": "max 100000",
    "cpu.weight": "100",
    "cpuset.cpus": "",
    "cpuset.mems": "",
    "memory.max": "max",
    "memory.swap.max": "max",
    "memory.low": "0",
    "pids.max": "max",
}


def v2_tree(root: Path, *groups: str, controllers: str = "cpu memory pids cpuset io") -> V2:
    """A v2 root offering `controllers`, with `groups` (and their parents) already made as the
    kernel would make them: each with its interface files."""
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    for group in groups:
        path = root
        for part in group.split("/"):
            path = path / part
            path.mkdir(exist_ok=True)
            for file, content in V2_GROUP_FILES.items():
                (path / file).write_text(content)
    return V2(root)


V1_GROUP_FILES = {
    "cpu": {
        "cgroup.procs": "",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.shares": "1024",
    },
    "memory": {
        "cgroup.procs": "",
        "memory.limit_in_bytes": "9223372036854771712",
        "memory.memsw.limit_in_bytes": "9223372036854771712",
        "memory.soft_limit_in_bytes": "9223372036854771712",
    },
    "pids": {"cgroup.procs": "", "pids.max": "max"},
    "freezer": {"cgroup.procs": "", "freezer.state": "THAWED"},
}


def v1_tree(
    root: Path, *groups: str, controllers: tuple[str, ...] = ("cpu", "memory", "pids", "freezer")
) -> V1:
    """A v1 root with a hierarchy per controller, `groups` made in each with their files."""
    for controller in controllers:
        (root / controller).mkdir(parents=True)
        for group in groups:
            (root / controller / group).mkdir(parents=True)
            for file, content in V1_GROUP_FILES.get(controller, {}).items():
                (root / controller / group / file).write_text(content)
    return V1(root)


def test_v2_limits_are_written_with_runcs_conversions(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "cg", "composer/stack/web")
    tree.create(
        "composer/stack/web",
        CgroupLimits(
            cpu_quota_us=50_000,
            cpu_shares=512,
            cpuset_cpus="0-1",
            cpuset_mems="0",
            memory_limit=64 * MB,
            memory_swap=96 * MB,
            memory_reservation=16 * MB,
            pids_limit=42,
        ),
    )
    group = tree.root / "composer/stack/web"
    assert (group / "cpu.max").read_text() == "50000 100000"
    assert (group / "cpu.weight").read_text() == "20"  # 1 + (512-2)*9999/262142
    assert (group / "cpuset.cpus").read_text() == "0-1"
    assert (group / "cpuset.mems").read_text() == "0"
    assert (group / "memory.max").read_text() == str(64 * MB)
    assert (group / "memory.swap.max").read_text() == str(32 * MB)  # swap alone: 96 - 64
    assert (group / "memory.low").read_text() == str(16 * MB)
    assert (group / "pids.max").read_text() == "42"


def test_v2_unlimited_values_are_written_as_max(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "cg", "c1")
    tree.create(
        "c1",
        CgroupLimits(
            cpu_quota_us=-1, cpu_period_us=50_000, memory_limit=-1, memory_swap=-1, pids_limit=0
        ),
    )
    group = tree.root / "c1"
    assert (group / "cpu.max").read_text() == "max 50000"
    assert (group / "memory.max").read_text() == "max"
    assert (group / "memory.swap.max").read_text() == "max"
    assert (group / "pids.max").read_text() == "max"


def test_v2_memswap_equal_to_memory_means_no_swap(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "cg", "c1")
    tree.create("c1", CgroupLimits(memory_limit=32 * MB, memory_swap=32 * MB))
    assert (tree.root / "c1/memory.swap.max").read_text() == "0"


def test_v2_controllers_are_enabled_in_every_parent_along_the_path(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "cg", "composer/stack/web")
    tree.create("composer/stack/web", CgroupLimits(pids_limit=10))
    for parent in (tree.root, tree.root / "composer", tree.root / "composer/stack"):
        assert (parent / "cgroup.subtree_control").read_text() == "+cpu +cpuset +io +memory +pids"
    assert (tree.root / "composer/stack/web/cgroup.subtree_control").read_text() == ""


def test_v2_only_the_controllers_the_root_offers_are_enabled(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "cg", "c1", controllers="memory pids hugetlb")
    tree.create("c1", CgroupLimits(memory_limit=64 * MB))
    assert (tree.root / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_v2_controllers_already_enabled_are_left_alone(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "cg", "c1", controllers="memory pids")
    (tree.root / "cgroup.subtree_control").write_text("memory pids\n")  # as the kernel shows it
    tree.create("c1", CgroupLimits())
    assert (tree.root / "cgroup.subtree_control").read_text() == "memory pids\n"


def test_v2_a_limit_whose_controller_is_absent_is_refused_before_anything_is_made(
    tmp_path: Path,
) -> None:
    tree = v2_tree(tmp_path / "cg", controllers="memory pids")
    with pytest.raises(CgroupError, match="the cpu, cpuset controllers are not available"):
        tree.create("c1", CgroupLimits(cpu_shares=512, cpuset_cpus="0"))
    assert not (tree.root / "c1").exists()
    assert (tree.root / "cgroup.subtree_control").read_text() == ""


def test_v2_finite_swap_without_swap_accounting_is_refused(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "cg", "c1")
    (tree.root / "c1/memory.swap.max").unlink()
    tree.create("c1", CgroupLimits(memory_limit=32 * MB, memory_swap=-1))  # nothing to lift
    assert (tree.root / "c1/memory.max").read_text() == str(32 * MB)
    with pytest.raises(CgroupError, match="swap accounting"):
        tree.create("c1", CgroupLimits(memory_limit=32 * MB, memory_swap=64 * MB))


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (CgroupLimits(memory_limit=64 * MB, memory_swap=32 * MB), "is below mem_limit"),
        (CgroupLimits(memory_swap=64 * MB), "needs a finite memory limit"),
        (CgroupLimits(memory_limit=-1, memory_swap=64 * MB), "needs a finite memory limit"),
    ],
)
def test_inconsistent_memory_limits_are_refused_by_both_drivers(
    tmp_path: Path, limits: CgroupLimits, message: str
) -> None:
    for driver in (v2_tree(tmp_path / "v2", "c1"), v1_tree(tmp_path / "v1", "c1")):
        with pytest.raises(CgroupError, match=message):
            driver.create("c1", limits)


def test_v2_stats_are_read_from_the_groups_files(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "cg", "c1")
    group = tree.root / "c1"
    (group / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (group / "memory.current").write_text("4096\n")
    (group / "memory.max").write_text(f"{64 * MB}\n")
    (group / "pids.current").write_text("3\n")
    (group / "io.stat").write_text(
        "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n"
    )
    (group / "memory.events").write_text(
        "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n"
    )
    stats = tree.stats("c1")
    assert (stats.cpu_usage_ns, stats.memory_usage, stats.memory_limit, stats.pids) == (
        1_500_000,
        4096,
        64 * MB,
        3,
    )
    assert (stats.io_read_bytes, stats.io_write_bytes, stats.oom_kills) == (101, 202, 1)
    assert tree.oom_kills("c1") == 1


def test_v2_missing_stats_files_read_as_none_or_zero(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "cg")
    (tree.root / "bare").mkdir()
    stats = tree.stats("bare")
    assert (stats.cpu_usage_ns, stats.memory_usage, stats.memory_limit, stats.pids) == (
        0,
        0,
        None,
        0,
    )
    assert (stats.io_read_bytes, stats.io_write_bytes, stats.oom_kills) == (None, None, 0)


def test_stats_of_a_missing_group_are_an_error(tmp_path: Path) -> None:
    for driver in (v2_tree(tmp_path / "v2"), v1_tree(tmp_path / "v1")):
        with pytest.raises(CgroupError, match="no cgroup gone"):
            driver.stats("gone")


def test_v1_finite_swap_without_swap_accounting_is_refused(tmp_path: Path) -> None:
    tree = v1_tree(tmp_path / "cg", "c1")
    (tree.root / "memory/c1/memory.memsw.limit_in_bytes").unlink()
    tree.create("c1", CgroupLimits(memory_limit=32 * MB, memory_swap=-1))  # nothing to lift
    assert (tree.root / "memory/c1/memory.limit_in_bytes").read_text() == str(32 * MB)
    with pytest.raises(CgroupError, match="swap accounting"):
        tree.create("c1", CgroupLimits(memory_limit=32 * MB, memory_swap=32 * MB))


def test_v1_a_limit_whose_controller_is_not_mounted_is_refused_before_anything_is_made(
    tmp_path: Path,
) -> None:
    tree = v1_tree(tmp_path / "cg", controllers=("cpu", "memory", "freezer"))
    with pytest.raises(CgroupError, match="the pids cgroup controller is not mounted"):
        tree.create("c1", CgroupLimits(pids_limit=10))
    assert not any((tree.root / c / "c1").exists() for c in ("cpu", "memory", "freezer"))


def test_v1_without_any_hierarchy_mounted_create_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no cgroup hierarchy is mounted"):
        V1(tmp_path).create("c1", CgroupLimits())


def test_v1_stats_are_read_from_each_controllers_files(tmp_path: Path) -> None:
    tree = v1_tree(tmp_path / "cg", "c1", controllers=("cpuacct", "memory", "pids", "blkio"))
    (tree.root / "cpuacct/c1/cpuacct.usage").write_text("1500000\n")
    (tree.root / "memory/c1/memory.usage_in_bytes").write_text("4096\n")
    (tree.root / "memory/c1/memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    )
    (tree.root / "pids/c1/pids.current").write_text("3\n")
    io = "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Total 300\n8:16 Read 1\n8:16 Write 2\nTotal 303\n"
    (tree.root / "blkio/c1/blkio.throttle.io_service_bytes_recursive").write_text(io)
    stats = tree.stats("c1")
    assert (stats.cpu_usage_ns, stats.memory_usage, stats.memory_limit, stats.pids) == (
        1_500_000,
        4096,
        None,
        3,
    )
    assert (stats.io_read_bytes, stats.io_write_bytes, stats.oom_kills) == (101, 202, 2)


def test_v1_missing_stats_files_read_as_none_or_zero(tmp_path: Path) -> None:
    tree = v1_tree(tmp_path / "cg", controllers=("cpuacct", "memory", "pids", "blkio"))
    for controller in ("cpuacct", "memory", "pids", "blkio"):
        (tree.root / controller / "bare").mkdir()
    stats = tree.stats("bare")
    assert (stats.cpu_usage_ns, stats.memory_usage, stats.memory_limit, stats.pids) == (
        0,
        0,
        None,
        0,
    )
    assert (stats.io_read_bytes, stats.io_write_bytes, stats.oom_kills) == (None, None, 0)


def test_v1_join_files_are_one_per_hierarchy_with_co_mounted_ones_once(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "cpu,cpuacct").mkdir(parents=True)
    (root / "cpu").symlink_to("cpu,cpuacct")
    (root / "cpuacct").symlink_to("cpu,cpuacct")
    (root / "memory").mkdir()
    files = V1(root).join_files("a/b")
    assert sorted(str(f.relative_to(root)) for f in files) == [
        "cpu/a/b/tasks",
        "memory/a/b/tasks",
    ]


@pytest.mark.parametrize("bad", ["", "/abs", "..", "a/../b", "a//b", "a/./b", "a/", "a\nb"])
def test_names_that_are_not_plain_relative_paths_are_refused(tmp_path: Path, bad: str) -> None:
    for driver in (v2_tree(tmp_path / "v2"), v1_tree(tmp_path / "v1")):
        with pytest.raises(CgroupError, match="invalid cgroup name"):
            driver.create(bad, CgroupLimits())
        with pytest.raises(CgroupError, match="invalid cgroup name"):
            driver.remove(bad)


def test_detect_picks_v2_for_a_unified_root_and_v1_otherwise(tmp_path: Path) -> None:
    assert isinstance(detect(v2_tree(tmp_path / "v2").root), V2)
    assert isinstance(detect(v1_tree(tmp_path / "v1").root), V1)


def test_shares_map_onto_weights_as_runc_does() -> None:
    assert [shares_to_weight(s) for s in (2, 512, 1024, 262_144)] == [1, 20, 39, 10_000]
    assert shares_to_weight(0) == 1 and shares_to_weight(1 << 20) == 10_000  # clamped
