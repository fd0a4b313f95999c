"""A container as its process sees it, and as the host sees it (real kernel, root)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.cgroups.base import CgroupLimits
from engine.container.config import ContainerConfig
from engine.container.runtime import ContainerError, Runtime, State
from engine.container.spec import DEFAULT_CAPABILITIES, Mount
from tests.engine.conftest import Make, until

pytestmark = pytest.mark.kernel


def run(runtime: Runtime, config: ContainerConfig, timeout: float = 30) -> tuple[State, str, str]:
    """Create and start `config`, wait for it to end; its state, stdout and stderr."""
    created = runtime.create(config)
    runtime.start(config.id)
    state = runtime.wait(config.id, timeout)
    assert state.status == "exited", f"{config.id} still {state.status} after {timeout} s"
    return state, (created.directory / "stdout").read_text(), (created.directory / "stderr").read_text()


def sh(runtime: Runtime, make: Make, script: str, **fields: object) -> tuple[State, str, str]:
    return run(runtime, make("sh", "-c", script, **fields))


def test_the_service_is_pid_1_and_sees_no_host_process(runtime: Runtime, make: Make) -> None:
    state, out, _ = sh(runtime, make, "echo $$; ls /proc | grep -c '^[0-9]'")
    assert state.exit_code == 0
    pid, count = out.split()
    assert pid == "1"
    assert int(count) <= 3  # sh, ls, grep


def test_the_container_has_its_own_hostname_and_ipc(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "hostname; sleep 30", hostname="box")
    runtime.create(config)
    started = runtime.start(config.id)
    try:
        pid = started.state.pid
        for ns in ("ipc", "uts", "pid", "mnt", "net", "cgroup"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        deadline = time.monotonic() + 10
        while not (started.directory / "stdout").read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        runtime.stop(config.id, timeout=0)
    assert (started.directory / "stdout").read_text() == "box\n"


def test_dev_holds_only_the_default_devices(runtime: Runtime, make: Make) -> None:
    _, out, _ = sh(runtime, make, "ls /dev")
    assert out.split() == sorted(
        ["fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    )


def test_proc_sys_is_read_only_and_sensitive_proc_files_are_masked(runtime: Runtime, make: Make) -> None:
    _, out, err = sh(runtime, make, "echo 1 > /proc/sys/kernel/domainname; cat /proc/keys /proc/timer_list | wc -c; echo done")
    assert "Read-only file system" in err
    assert out.split() == ["0", "done"]


def test_without_cap_sys_admin_mount_fails(runtime: Runtime, make: Make) -> None:
    state, _, err = sh(runtime, make, "mkdir -p /mnt; mount -t tmpfs none /mnt")
    assert state.exit_code != 0
    assert "denied" in err or "not permitted" in err


def test_cap_add_gives_the_capability(runtime: Runtime, make: Make) -> None:
    caps = (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN")
    state, _, err = sh(runtime, make, "mkdir -p /mnt && mount -t tmpfs none /mnt && echo ok > /mnt/x", capabilities=caps)
    assert state.exit_code == 0, err


def test_default_capabilities_are_dockers_and_no_new_privs_is_on(runtime: Runtime, make: Make) -> None:
    _, out, _ = sh(runtime, make, "grep -E '^(CapEff|CapBnd|CapInh|NoNewPrivs)' /proc/self/status")
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert fields["CapEff"] == fields["CapBnd"] == "00000000a80425fb"
    assert fields["CapInh"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1"


def test_no_new_privileges_false_turns_it_off(runtime: Runtime, make: Make) -> None:
    _, out, _ = sh(runtime, make, "grep NoNewPrivs /proc/self/status", no_new_privileges=False)
    assert out.split() == ["NoNewPrivs:", "0"]


def test_no_host_file_descriptor_reaches_the_service(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    leak = os.open(tmp_path, os.O_RDONLY)  # an fd this process holds without CLOEXEC would leak
    os.set_inheritable(leak, True)
    try:
        _, out, _ = sh(runtime, make, "ls /proc/self/fd")
    finally:
        os.close(leak)
    assert out.split() == ["0", "1", "2", "3"]  # 3 is ls's own directory handle


def test_user_and_groups_are_resolved_in_the_containers_files(runtime: Runtime, make: Make) -> None:
    _, out, _ = sh(runtime, make, "id", user="app", group_add=("root",))
    assert out.strip() == "uid=1000(app) gid=1000(app) groups=0(root),1000(app),2000(extra)"


def test_an_unknown_user_is_a_clear_error(runtime: Runtime, make: Make) -> None:
    config = make("true", user="nobody-here")
    runtime.create(config)
    with pytest.raises(Exception, match="unable to find user nobody-here"):
        runtime.start(config.id)


def test_a_missing_command_is_reported_by_name(runtime: Runtime, make: Make) -> None:
    config = make("/no/such/binary")
    runtime.create(config)
    with pytest.raises(ContainerError, match="exec /no/such/binary: No such file or directory"):
        runtime.start(config.id)


def test_environment_and_working_directory(runtime: Runtime, make: Make) -> None:
    _, out, _ = sh(runtime, make, 'echo "$GREETING $HOME $HOSTNAME"; pwd', env=("GREETING=hi",), working_dir="/srv/app", hostname="h1")
    assert out.splitlines() == ["hi /root h1", "/srv/app"]


def test_read_only_root(runtime: Runtime, make: Make) -> None:
    state, _, err = sh(runtime, make, "touch /etc/x", read_only=True)
    assert state.exit_code != 0 and "Read-only file system" in err


def test_bind_tmpfs_and_read_only_mounts(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data/in").write_text("from host\n")
    mounts = (
        Mount("bind", "/data", str(tmp_path / "data")),
        Mount("bind", "/ro", str(tmp_path / "data"), read_only=True),
        Mount("tmpfs", "/scratch", options="size=1m,mode=1777"),
    )
    _, out, err = sh(runtime, make, "cat /data/in; echo out > /data/out; touch /ro/x; df -k /scratch | tail -1", mounts=mounts)
    assert out.splitlines()[0] == "from host"
    assert (tmp_path / "data/out").read_text() == "out\n"
    assert "Read-only file system" in err
    assert out.splitlines()[1].split()[1] == "1024"


def test_a_mount_target_with_dotdot_stays_inside_the_container(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    outside = tmp_path / "escape-target"
    mounts = (Mount("bind", f"/../../../../{outside}", str(tmp_path / "src")),)
    state, _, err = sh(runtime, make, f"test -d {outside}", mounts=mounts)
    assert state.exit_code == 0, err  # made inside the container's tree
    assert not outside.exists()


def test_exit_status_and_signal_are_recorded(runtime: Runtime, make: Make) -> None:
    state, _, _ = sh(runtime, make, "exit 7")
    assert (state.exit_code, state.signal) == (7, 0)
    config = make("sleep", "60")
    runtime.create(config)
    runtime.start(config.id)
    runtime.kill(config.id, 9)  # from outside: PID 1 ignores signals it has no handler for
    state = runtime.wait(config.id, 10)
    assert (state.exit_code, state.signal) == (137, 9)


def test_an_ended_container_is_never_seen_without_its_exit_code(runtime: Runtime, make: Make) -> None:
    # Its shim records how it ended before it reaps it: until then, it still runs.
    for _ in range(10):
        config = make("sh", "-c", "exit 7")
        runtime.create(config)
        runtime.start(config.id)
        deadline = time.monotonic() + 10
        while (state := runtime.get(config.id).state).status == "running":
            assert time.monotonic() < deadline
        assert (state.status, state.exit_code) == ("exited", 7)
        runtime.remove(config.id)


def test_stop_sends_the_stop_signal_then_kills_after_the_grace_period(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "trap 'echo got USR1' USR1; while true; do sleep 0.1; done", stop_signal="SIGUSR1", stop_grace_period=0.5)
    runtime.create(config)
    runtime.start(config.id)
    time.sleep(0.3)
    started = time.monotonic()
    stopped = runtime.stop(config.id)
    assert 0.4 < time.monotonic() - started < 5
    assert stopped.state.exit_code == 137
    assert "got USR1" in (stopped.directory / "stdout").read_text()


def test_stop_ends_every_process_of_the_container_in_its_namespace_or_only_its_cgroup(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "sleep 301 & exec sleep 302")
    runtime.create(config)
    runtime.start(config.id)
    cgroup = runtime.cgroup_of(config.id)
    assert until(lambda: len(runtime.cgroups.pids(cgroup)) == 2)
    # A process that joined its cgroup from outside its PID namespace (an exec's helper does
    # for a moment) ends too.
    outsider = subprocess.Popen(["sleep", "303"])
    try:
        runtime.cgroups.add(cgroup, outsider.pid)
        stopped = runtime.stop(config.id, timeout=0)
        assert stopped.state.exit_code == 137
        assert outsider.wait(timeout=5) == -signal.SIGKILL
        assert runtime.cgroups.pids(cgroup) == []
    finally:
        outsider.kill()
        outsider.wait()


def test_a_stopped_container_starts_again_with_its_writable_layer(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "cat /state 2>/dev/null; date > /state")
    run(runtime, config)
    runtime.start(config.id)
    runtime.wait(config.id, 30)
    lines = (runtime.get(config.id).directory / "stdout").read_text().splitlines()
    assert len(lines) == 1  # the second run read what the first wrote


def test_pause_freezes_and_unpause_thaws(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/t; sleep 0.05; done")
    runtime.create(config)
    runtime.start(config.id)
    merged = runtime.get(config.id).directory / "rootfs/merged/tmp/t"
    time.sleep(0.3)
    runtime.pause(config.id)
    assert runtime.get(config.id).state.status == "paused"
    frozen = merged.read_text()
    time.sleep(0.3)
    assert merged.read_text() == frozen
    runtime.unpause(config.id)
    time.sleep(0.3)
    assert merged.read_text() != frozen
    assert runtime.get(config.id).state.status == "running"


def test_exec_runs_inside_the_container_with_exit_code_passthrough(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    config = make("sleep", "60", hostname="inside", user="app")
    runtime.create(config)
    runtime.start(config.id)
    out = tmp_path / "out"
    with open(out, "wb") as f:
        code = runtime.exec(config.id, ("sh", "-c", "hostname; id -u; pwd; echo $EXTRA; exit 5"), env=("EXTRA=x",), working_dir="/tmp", stdout=f.fileno())
    assert code == 5
    assert out.read_text().splitlines() == ["inside", "1000", "/tmp", "x"]
    with open(out, "wb") as f:
        assert runtime.exec(config.id, ("id", "-u"), user="root", stdout=f.fileno()) == 0
    assert out.read_text() == "0\n"
    assert runtime.exec(config.id, ("/no/such",), stderr=os.open(os.devnull, os.O_WRONLY)) == 127


def test_the_container_outlives_whoever_started_it(runtime: Runtime, make: Make) -> None:
    config = make("sleep", "60")
    runtime.create(config)
    pid = runtime.start(config.id).state.pid
    other = Runtime(runtime.root, runtime.cgroups, runtime.cgroup_parent)  # a later process
    assert other.get(config.id).state.status == "running"
    os.kill(pid, 9)
    state = other.wait(config.id, 10)
    assert (state.status, state.exit_code) == ("exited", 137)


def test_a_start_interrupted_before_it_was_recorded_is_ended_before_the_next(runtime: Runtime, make: Make) -> None:
    config = make("sleep", "60")
    directory = runtime.create(config).directory
    lost = runtime.start(config.id).state.pid
    assert (directory / "lock").read_bytes() == b""  # recorded: the mark is gone
    # As if its starter was killed between the launch and the record: the mark, no state.
    (directory / "state.json").unlink()
    (directory / "lock").write_bytes(b"starting\n")
    assert runtime.get(config.id).state.status == "created"
    pid = runtime.start(config.id).state.pid
    assert pid != lost
    assert not os.path.exists(f"/proc/{lost}")  # ended, and reaped by its shim
    assert runtime.cgroups.pids(runtime.cgroup_of(config.id)) == [pid]


def test_memory_limit_oom_kill_is_reported(runtime: Runtime, make: Make) -> None:
    limits = CgroupLimits(memory_limit=32 << 20, memory_swap=32 << 20)
    state, _, _ = sh(runtime, make, "x=$(head -c 100000000 /dev/zero | tr '\\0' x); echo survived", limits=limits)
    assert state.oom_killed
    assert state.exit_code in (137, 1, 2)


def test_pids_limit_stops_a_fork_bomb(runtime: Runtime, make: Make) -> None:
    bomb = "i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done"
    script = f"sh -c '{bomb}' 2>/dev/null; echo tried; exec sleep 30"
    config = make("sh", "-c", script, limits=CgroupLimits(pids_limit=20))
    runtime.create(config)
    runtime.start(config.id)
    directory = runtime.get(config.id).directory
    deadline = time.monotonic() + 10
    while "tried" not in (directory / "stdout").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    name = f"{runtime.cgroup_parent}/{config.id}"
    assert 15 <= len(runtime.cgroups.pids(name)) <= 20
    assert runtime.cgroups.stats(name).pids <= 20
    runtime.stop(config.id, timeout=0)


def test_removal_leaves_nothing(runtime: Runtime, make: Make) -> None:
    config = make("sleep", "60")
    created = runtime.create(config)
    runtime.start(config.id)
    runtime.remove(config.id, force=True)
    assert not created.directory.exists()
    assert str(created.directory) not in Path("/proc/self/mountinfo").read_text()
    assert not runtime.cgroups.exists(f"{runtime.cgroup_parent}/{config.id}")


def test_init_true_puts_a_reaper_at_pid_1_that_forwards_signals(runtime: Runtime, make: Make) -> None:
    script = "trap 'echo got TERM; exit 0' TERM; (sleep 0.1 &) ; cat /proc/1/cmdline | tr '\\0' ' '; echo; while true; do sleep 0.1; done"
    config = make("sh", "-c", script, init=True, stop_grace_period=5)
    runtime.create(config)
    runtime.start(config.id)
    directory = runtime.get(config.id).directory
    deadline = time.monotonic() + 10
    while not (directory / "stdout").read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    stopped = runtime.stop(config.id)
    out = (directory / "stdout").read_text()
    assert out.startswith("/sbin/docker-init -- sh -c")
    assert "got TERM" in out
    assert stopped.state.exit_code == 0


def test_restart_runs_a_new_process_in_the_same_container(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "echo start >> /runs; exec sleep 60", stop_grace_period=0.2)
    runtime.create(config)
    first = runtime.start(config.id).state.pid
    second = runtime.restart(config.id).state.pid
    assert first != second
    assert runtime.get(config.id).state.status == "running"
    merged = runtime.get(config.id).directory / "rootfs/merged/runs"
    deadline = time.monotonic() + 5
    while merged.read_text().count("start") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert merged.read_text() == "start\nstart\n"


def test_tty_gives_the_service_a_terminal_whose_output_is_logged(runtime: Runtime, make: Make) -> None:
    state, out, _ = run(runtime, make("sh", "-c", "test -t 0 && test -t 1 && echo on a tty; stty size", tty=True))
    assert state.exit_code == 0
    assert out.replace("\r", "") == "on a tty\n24 80\n"


def test_stdin_open_keeps_stdin_open(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "read line; echo read: $line", stdin_open=True)
    runtime.create(config)
    runtime.start(config.id)
    time.sleep(0.5)
    assert runtime.get(config.id).state.status == "running"  # stdin is not /dev/null
    runtime.stop(config.id, timeout=1)
    closed = make("sh", "-c", "read line; echo read: $line")
    _, out, _ = run(runtime, closed)
    assert out == "read:\n"  # without stdin_open, stdin is at its end at once


def test_tty_and_stdin_open_keep_an_interactive_shell_running(runtime: Runtime, make: Make) -> None:
    config = make("sh", tty=True, stdin_open=True)
    runtime.create(config)
    runtime.start(config.id)
    time.sleep(0.5)
    assert runtime.get(config.id).state.status == "running"
    runtime.stop(config.id, timeout=1)


def test_log_driver_none_drops_the_output(runtime: Runtime, make: Make) -> None:
    config = make("sh", "-c", "echo hidden; echo also >&2; exit 3", log_driver="none")
    directory = runtime.create(config).directory
    runtime.start(config.id)
    assert runtime.wait(config.id, 10).exit_code == 3
    assert not (directory / "stdout").exists() and not (directory / "stderr").exists()


def test_the_service_starts_with_default_signal_handling(runtime: Runtime, make: Make) -> None:
    """SIGHUP is not ignored (the shim ignores it for itself only): a trap can catch it."""
    config = make("sh", "-c", "trap 'echo got hup; exit 0' HUP; echo ready; while :; do sleep 0.05; done")
    runtime.create(config)
    started = runtime.start(config.id)
    try:
        deadline = time.monotonic() + 10
        while "ready" not in (started.directory / "stdout").read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        runtime.kill(config.id, signal.SIGHUP)
        state = runtime.wait(config.id, 10)
    finally:
        runtime.stop(config.id, timeout=0)
    assert (state.exit_code, (started.directory / "stdout").read_text()) == (0, "ready\ngot hup\n")
