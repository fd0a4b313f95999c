"""The supervisor of a group: it logs and notices exits of containers it did not start, and a
new one adopts running containers after the old one was killed."""

from __future__ import annotations

import os
import signal

import pytest

from engine.container.logs import read_log
from engine.container.runtime import Runtime
from engine.supervisor import ensure_supervisor, stop_supervisor, supervisor_pid
from tests.engine.conftest import Make, events, until

pytestmark = pytest.mark.kernel


def test_killed_supervisor_containers_keep_running_and_a_new_one_records_later_exits(runtime: Runtime, make: Make, group: str) -> None:
    configs = [make("sh", "-c", f"echo hello {n}; exec sleep 60", group=group) for n in range(10)]
    for config in configs:
        runtime.create(config)
        runtime.start(config.id)
    first = ensure_supervisor(runtime.root, group)
    assert until(lambda: sum(e["event"] == "watch" for e in events(runtime, group)) == 10)
    os.kill(first, signal.SIGKILL)
    os.waitpid(first, 0)
    assert all(runtime.get(c.id).state.status == "running" for c in configs)
    pids = [runtime.get(c.id).state.pid for c in configs]

    second = ensure_supervisor(runtime.root, group)
    assert second != first
    assert until(lambda: sum(e["event"] == "watch" for e in events(runtime, group)) == 20)
    assert [runtime.get(c.id).state.pid for c in configs] == pids  # adopted, not restarted
    os.kill(pids[3], signal.SIGKILL)
    assert until(lambda: any(e["event"] == "exit" for e in events(runtime, group)))
    [ended] = [e for e in events(runtime, group) if e["event"] == "exit"]
    assert ended["container"] == configs[3].id and ended["exit_code"] == 137
    assert until(lambda: [line.text for line in read_log(runtime.containers / configs[0].id)] == ["hello 0\n"])


def test_only_one_supervisor_runs_per_group(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sleep", "30", group=group)
    runtime.create(config)
    runtime.start(config.id)
    first = ensure_supervisor(runtime.root, group)
    assert ensure_supervisor(runtime.root, group) == first


def test_stopping_a_supervisor_waits_until_it_is_gone_and_leaves_the_containers(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sleep", "30", group=group)
    runtime.create(config)
    runtime.start(config.id)
    pid = ensure_supervisor(runtime.root, group)
    (runtime.root / "run" / f"{group}.ports.json").write_text('{"generation": 1, "bindings": []}')
    stop_supervisor(runtime.root, group)
    assert supervisor_pid(runtime.root, group) is None
    assert os.waitpid(pid, os.WNOHANG)[0] == pid  # it had ended already (our child here)
    assert not (runtime.root / "run" / f"{group}.ports.json").exists()  # its ports withdrawn
    assert runtime.get(config.id).state.status == "running"
    stop_supervisor(runtime.root, group)  # none: nothing to do


def test_a_supervisor_still_starting_is_stopped_too(runtime: Runtime, make: Make, group: str) -> None:
    pid = ensure_supervisor(runtime.root, group, wait=False)  # as `up -d` starts it
    stop_supervisor(runtime.root, group)
    assert os.waitpid(pid, os.WNOHANG)[0] == pid  # ended before it held its lock
    assert supervisor_pid(runtime.root, group) is None


def test_a_container_made_in_the_same_mtime_tick_as_a_listing_is_still_seen(runtime: Runtime, make: Make, group: str) -> None:
    """Directory mtimes come from a coarse clock: a container made in the same tick as the
    supervisor's last look leaves the containers' directory mtime as it was. It was never
    watched (nor probed, nor restarted); a recent mtime is not trusted now."""
    from engine.supervisor import Supervisor

    os.utime(runtime.containers)  # a change just now (not one of the fixture's, maybe older)
    supervisor = Supervisor(runtime.root, group)
    seen = os.stat(runtime.containers)
    assert supervisor._members(set()) == []
    config = make("sleep", "60", group=group)
    runtime.create(config)
    runtime.start(config.id)
    os.utime(runtime.containers, ns=(seen.st_atime_ns, seen.st_mtime_ns))  # the same tick
    try:
        assert [c.id for c in supervisor._members(set())] == [config.id]
    finally:
        supervisor._writes.close()
        runtime.stop(config.id, timeout=0)
