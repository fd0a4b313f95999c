"""Restart policies run by a group's supervisor: a container killed from outside comes back
(with its writable layer), on-failure gives up after its limit and leaves a success alone, a
stop on purpose is final until the next start, and a crash loop backs off."""

from __future__ import annotations

import os
import signal

import pytest

from engine.container.config import ContainerConfig
from engine.container.runtime import Runtime
from engine.supervisor import ensure_supervisor
from tests.engine.conftest import Make, events, until

pytestmark = pytest.mark.kernel


def of(runtime: Runtime, group: str, kind: str, container: str) -> list[dict[str, object]]:
    return [e for e in events(runtime, group) if e["event"] == kind and e["container"] == container]


def watched(runtime: Runtime, group: str, container: str, times: int = 1) -> bool:
    return until(lambda: len(of(runtime, group, "watch", container)) >= times)


def supervised(runtime: Runtime, config: ContainerConfig) -> int:
    """Create and start `config`, and have its group's supervisor watch it; its pid."""
    runtime.create(config)
    pid = runtime.start(config.id).state.pid
    ensure_supervisor(runtime.root, config.group)
    assert watched(runtime, config.group, config.id)
    return pid


def test_a_container_killed_from_outside_is_restarted_with_its_writable_layer(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sh", "-c", "echo run >> /runs; exec sleep 60", group=group, restart="always")
    first = supervised(runtime, config)
    os.kill(first, signal.SIGKILL)
    assert until(lambda: of(runtime, group, "restart", config.id))
    [restart] = of(runtime, group, "restart", config.id)
    assert (restart["attempt"], restart["delay"]) == (1, 0.0)  # the first restart is immediate
    state = runtime.get(config.id).state
    assert state.status == "running" and state.pid != first and state.restart_count == 1
    upper = runtime.containers / config.id / "rootfs" / "upper"
    assert until(lambda: (upper / "runs").read_text() == "run\nrun\n")


def test_on_failure_with_a_limit_gives_up_after_it(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sh", "-c", "exit 3", group=group, restart="on-failure:2")
    runtime.create(config)
    ensure_supervisor(runtime.root, group)
    runtime.start(config.id)
    assert until(lambda: of(runtime, group, "restart-skipped", config.id))
    assert [e["attempt"] for e in of(runtime, group, "restart", config.id)] == [1, 2]
    [skipped] = of(runtime, group, "restart-skipped", config.id)
    assert skipped["reason"] == "on-failure:2: restarted 2 times already"
    state = runtime.get(config.id).state
    assert (state.status, state.exit_code, state.restart_count) == ("exited", 3, 2)


def test_a_success_is_not_restarted_by_on_failure(runtime: Runtime, make: Make, group: str) -> None:
    config = make("true", group=group, restart="on-failure")
    runtime.create(config)
    ensure_supervisor(runtime.root, group)
    runtime.start(config.id)
    assert until(lambda: of(runtime, group, "restart-skipped", config.id))
    assert of(runtime, group, "restart-skipped", config.id)[0]["reason"] == "exited with code 0"
    assert not of(runtime, group, "restart", config.id)
    assert runtime.get(config.id).state.status == "exited"


def test_a_container_stopped_on_purpose_stays_stopped_until_started_again(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sleep", "60", group=group, restart="always", stop_grace_period=0.0)
    supervised(runtime, config)
    runtime.stop(config.id)
    assert until(lambda: of(runtime, group, "exit", config.id))
    # The supervisor decides as it records the exit: a restart would be under way by now.
    assert not until(lambda: of(runtime, group, "restart", config.id), timeout=1.0)
    assert runtime.get(config.id).state.status == "exited"

    started = runtime.start(config.id).state  # on purpose: restarts apply again
    assert watched(runtime, group, config.id, times=2)
    os.kill(started.pid, signal.SIGKILL)
    assert until(lambda: of(runtime, group, "restart", config.id))
    assert runtime.get(config.id).state.restart_count == 1


def test_a_container_killed_by_the_runtime_is_not_restarted(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sleep", "60", group=group, restart="unless-stopped")
    supervised(runtime, config)
    runtime.kill(config.id)
    assert until(lambda: of(runtime, group, "exit", config.id))
    assert not until(lambda: of(runtime, group, "restart", config.id), timeout=1.0)
    assert runtime.stopped_on_purpose(config.id)


def test_a_signal_other_than_a_stop_leaves_the_policy_on(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sh", "-c", "trap 'exit 5' USR1; while true; do sleep 1; done", group=group, restart="always")
    supervised(runtime, config)
    runtime.kill(config.id, signal.SIGUSR1)  # a reload, say: it chose to exit
    assert until(lambda: of(runtime, group, "restart", config.id))
    assert of(runtime, group, "exit", config.id)[0]["exit_code"] == 5


def test_a_crash_loop_backs_off_doubling_from_100_ms(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sh", "-c", "exit 1", group=group, restart="always")
    runtime.create(config)
    ensure_supervisor(runtime.root, group)
    runtime.start(config.id)
    assert until(lambda: len(of(runtime, group, "restart", config.id)) >= 6, timeout=30)
    restarts = of(runtime, group, "restart", config.id)[:6]
    assert [e["delay"] for e in restarts] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6]
    assert [e["attempt"] for e in restarts] == [1, 2, 3, 4, 5, 6]
    # While it waits (3.2 s before the seventh restart), its status says so.
    assert until(lambda: runtime.get(config.id).state.status == "restarting")
    runtime.stop(config.id, 0)  # cancels the pending restart
    assert runtime.get(config.id).state.status == "exited"
    assert not until(lambda: len(of(runtime, group, "restart", config.id)) > 6, timeout=4.0)


def test_a_container_that_ended_before_its_supervisor_came_is_decided_on(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sh", "-c", "exit 2", group=group, restart="on-failure:1")
    runtime.create(config)
    runtime.start(config.id)
    assert runtime.wait(config.id, 10).exit_code == 2
    ensure_supervisor(runtime.root, group)
    assert until(lambda: of(runtime, group, "restart-skipped", config.id))
    assert [e["attempt"] for e in of(runtime, group, "restart", config.id)] == [1]


def test_a_restart_that_cannot_start_is_tried_again_later(runtime: Runtime, make: Make, group: str) -> None:
    target = make("sleep", "60", group=group)
    follower = make("sleep", "60", group=group, restart="always", network=f"container:{target.id}")
    runtime.create(target)
    runtime.create(follower)
    runtime.start(target.id)
    pid = runtime.start(follower.id).state.pid
    ensure_supervisor(runtime.root, group)
    assert watched(runtime, group, follower.id)
    runtime.stop(target.id, 0)
    os.kill(pid, signal.SIGKILL)  # it cannot start again while the network it joins is gone
    assert until(lambda: len(of(runtime, group, "restart-failed", follower.id)) >= 2)
    assert "which is not running" in str(of(runtime, group, "restart-failed", follower.id)[0]["reason"])
    assert runtime.get(follower.id).state.status == "restarting"
    runtime.start(target.id)
    assert until(lambda: runtime.get(follower.id).state.status == "running", timeout=15)
