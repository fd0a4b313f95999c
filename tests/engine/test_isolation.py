"""Escape attempts that must fail, and limits that must hold (real kernel, root)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.cgroups.base import CgroupLimits
from engine.container.config import ContainerConfig
from engine.container.runtime import Runtime
from engine.container.spec import Mount, Rlimit
from engine.images.store import Image, ImageStore
from tests.engine.conftest import Make
from tests.engine.test_runtime import run, sh
from tests.images.conftest import image_with

pytestmark = pytest.mark.kernel


def test_writing_through_proc_self_exe_does_not_reach_the_host(runtime: Runtime, make: Make) -> None:
    before = Path("/proc/self/exe").resolve().read_bytes()[:64]
    _state, _, err = sh(runtime, make, "echo x > /proc/self/exe; echo x > /proc/1/exe; ls /proc/1/root/ >/dev/null; echo done")
    assert "Text file busy" in err or "Permission denied" in err or "Read-only" in err
    assert Path("/proc/self/exe").resolve().read_bytes()[:64] == before


def test_the_root_of_pid_1_is_the_containers_own(runtime: Runtime, make: Make) -> None:
    _, out, _ = sh(runtime, make, "ls /proc/1/root/ | sort | tr '\\n' ' '")
    assert "bin" in out.split() and "home" in out.split()
    assert "work" not in out.split()  # the host's /work is not in sight


def test_a_symlink_in_the_image_at_a_mount_target_cannot_send_the_mount_outside(runtime: Runtime, make: Make, busybox: tuple[ImageStore, Image], tmp_path: Path) -> None:
    store, _base = busybox
    outside = tmp_path / "outside"
    outside.mkdir()
    links = image_with(store, tmp_path, [{"etc": None, "data": None}], symlinks={"mnt-here": str(outside), "escape": "../../../../../../" + str(outside)})
    source = tmp_path / "src"
    source.mkdir()
    (source / "marker").write_text("from the volume\n")
    config = make("sh", "-c", "cat /mnt-here/marker /escape/marker")
    config = ContainerConfig(**{**config.__dict__, "layers": (*config.layers, str(store.layer_link(links.layers[0].diff_id))),
                                "mounts": (Mount("bind", "/mnt-here", str(source)), Mount("bind", "/escape", str(source)))})
    state, out, _ = run(runtime, config)
    assert state.exit_code == 0
    assert out == "from the volume\n" * 2
    assert list(outside.iterdir()) == []  # nothing mounted or made on the host's directory
    assert str(outside) not in Path("/proc/self/mountinfo").read_text()


def test_a_bind_source_swapped_for_a_symlink_during_setup_is_not_followed(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    source, secret = tmp_path / "source", tmp_path / "secret"
    source.mkdir()
    secret.mkdir()
    (source / "f").write_text("the volume\n")
    (secret / "f").write_text("host secret\n")
    config = make("cat", "/data/f", mounts=(Mount("bind", "/data", str(source)),))
    runtime.create(config)

    def swap(_pid: int) -> None:  # runs after the sources were taken, before the service runs
        source.rename(tmp_path / "moved")
        source.symlink_to(secret)

    runtime.start(config.id, before_start=swap)
    runtime.wait(config.id, 10)
    assert (runtime.get(config.id).directory / "stdout").read_text() == "the volume\n"


def test_a_new_volume_is_seeded_from_the_image(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    _state, out, _ = run(runtime, make("sh", "-c", "ls /etc | sort | tr '\\n' ' '", mounts=(Mount("bind", "/etc", str(volume), seed=True),)))
    assert sorted(p.name for p in volume.iterdir()) == ["group", "hostname", "hosts", "passwd"]
    assert (volume / "passwd").read_text().startswith("root:x:0:0")
    assert out.split() == ["group", "hostname", "hosts", "passwd"]


def test_a_file_can_be_bound_read_only(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    _state, out, err = run(runtime, make("sh", "-c", "cat /run/secrets/token; echo x >> /run/secrets/token", mounts=(Mount("bind", "/run/secrets/token", str(secret), read_only=True, recursive=False),)))
    assert out == "s3cret\n" and "Read-only" in err
    assert secret.read_text() == "s3cret\n"


def test_sysctls_and_ulimits_apply_inside(runtime: Runtime, make: Make) -> None:
    _, out, _ = sh(runtime, make, "cat /proc/sys/kernel/shmmni; ulimit -n", sysctls=(("kernel.shmmni", "1234"),), rlimits=(Rlimit("RLIMIT_NOFILE", 321, 321),))
    assert out.split() == ["1234", "321"]
    assert Path("/proc/sys/kernel/shmmni").read_text().strip() != "1234"


def busy_seconds(runtime: Runtime, make: Make, limits: CgroupLimits) -> float:
    """Wall time of a fixed amount of shell arithmetic (no forks) under `limits`."""
    config = make("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done", limits=limits)
    runtime.create(config)
    started = time.monotonic()
    runtime.start(config.id)
    runtime.wait(config.id, 60)
    return time.monotonic() - started


def test_cpus_limit_throughput(runtime: Runtime, make: Make) -> None:
    free = busy_seconds(runtime, make, CgroupLimits())
    limited = busy_seconds(runtime, make, CgroupLimits(cpu_quota_us=20_000, cpu_period_us=100_000))
    print(f"the same work: unlimited {free:.2f} s, cpus=0.2 {limited:.2f} s ({free / limited:.2f})")
    assert free / limited < 0.5


def test_stats_report_cpu_and_memory(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 30")
    runtime.create(config)
    runtime.start(config.id)
    time.sleep(1.0)
    stats = runtime.cgroups.stats(f"{runtime.cgroup_parent}/{config.id}")
    assert stats.cpu_usage_ns > 10_000_000 and stats.memory_usage > 0 and stats.pids >= 1
    runtime.stop(config.id, timeout=0)


def test_cpu_percentage_of_a_busy_container(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "while true; do :; done")
    runtime.create(config)
    runtime.start(config.id)
    time.sleep(0.2)
    busy = runtime.stats(config.id, interval=0.5)
    runtime.stop(config.id, timeout=0)
    assert 50 < busy.cpu_percent <= 110  # one shell loop keeps about one CPU busy
    assert busy.cgroup.pids >= 1


def test_setup_leaves_no_fd_of_the_runtime_in_the_container(runtime: Runtime, make: Make) -> None:
    # ls is the container's PID 1 itself: what it lists is all the service was given.
    _, out, _ = run(runtime, make("ls", "/proc/self/fd"))
    assert set(out.split()) <= {"0", "1", "2", "3"}  # 3 is ls's own directory handle


def test_the_host_filesystem_is_out_of_reach(runtime: Runtime, make: Make) -> None:
    marker = Path("/tmp") / f"composer-escape-{os.getpid()}"
    sh(runtime, make, f"cd / && cd .. && cd .. && touch {marker}; touch /..{marker}")
    assert not marker.exists()


def test_the_default_seccomp_filter_is_on(runtime: Runtime, make: Make) -> None:
    _, out, _ = sh(runtime, make, "grep -E '^Seccomp(_filters)?:' /proc/self/status")
    assert out.split() == ["Seccomp:", "2", "Seccomp_filters:", "1"]


def test_seccomp_denies_namespaces_even_with_the_capability_docker_grants_them_for(runtime: Runtime, make: Make) -> None:
    from engine.container.spec import DEFAULT_CAPABILITIES

    with_admin = (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN")
    # CAP_SYS_ADMIN given: the filter (built for these capabilities) lets unshare through
    state, _, err = sh(runtime, make, "unshare -n true", capabilities=with_admin)
    assert state.exit_code == 0, err
    # no CAP_SYS_ADMIN: unshare, and syslog without CAP_SYSLOG, are refused
    state, _, err = sh(runtime, make, "unshare -n true")
    assert state.exit_code != 0 and "Operation not permitted" in err
    state, _, err = sh(runtime, make, "linux32 true && echo personality ok")
    assert state.exit_code == 0, err


def test_seccomp_unconfined_turns_the_filter_off(runtime: Runtime, make: Make) -> None:
    _, out, _ = sh(runtime, make, "grep -E '^Seccomp:' /proc/self/status", seccomp=False)
    assert out.split() == ["Seccomp:", "0"]


def test_uts_host_oom_score_adj_and_cgroup_options(runtime: Runtime, make: Make) -> None:
    import socket

    _, out, _ = sh(runtime, make, "hostname; cat /proc/self/oom_score_adj; grep -c composer-test /proc/self/cgroup || true",
                   uts_host=True, oom_score_adj=500, cgroup_host=True)
    hostname, score, in_paths = out.split()
    assert hostname == socket.gethostname()
    assert score == "500"  # raising needs no privilege (this sandbox lacks CAP_SYS_RESOURCE)
    assert int(in_paths) >= 1  # without a cgroup namespace the host's path shows
    _, out, _ = sh(runtime, make, "grep -c composer-test /proc/self/cgroup || true")
    assert out.strip() == "0"  # a namespace of its own: its group is its root


def test_devices_beyond_dockers_defaults_cannot_be_used(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    script = (
        "mknod /tmp/disk b 7 0; head -c 1 /tmp/disk; "  # a block device (loop0) on the root
        "mknod /dev/disk b 7 0; "  # /dev is read-only
        "mknod /vol/disk c 1 3; head -c 1 /vol/disk; "  # a volume is nodev
        "head -c 4 /dev/urandom | wc -c"  # the default devices work
    )
    _state, out, err = sh(runtime, make, script, mounts=(Mount("bind", "/vol", str(volume)),))
    assert out.strip() == "4"
    assert err.count("Operation not permitted") + err.count("Permission denied") >= 2
    assert "Read-only file system" in err


def test_cgroup_parent_places_the_group(runtime: Runtime, make: Make) -> None:
    parent = f"{runtime.cgroup_parent}/custom"
    config = make("sleep", "30", cgroup_parent=parent)
    runtime.create(config)
    runtime.start(config.id)
    assert runtime.get(config.id).state.pid in runtime.cgroups.pids(f"{parent}/{config.id}")
    runtime.remove(config.id, force=True)
    runtime.cgroups.remove(parent)
