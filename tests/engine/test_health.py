"""Healthchecks run by a group's supervisor inside the containers: a passing probe makes a
container healthy, failing ones unhealthy after their retries, a probe past its timeout is
killed and fails, failures within the start period do not count, and a slow probe holds up
no other."""

from __future__ import annotations

import datetime
import os
import signal
from pathlib import Path

import pytest

from engine.container.health import Health, HealthConfig
from engine.container.runtime import Runtime
from engine.supervisor import ensure_supervisor
from tests.engine.conftest import Make, events, until

pytestmark = pytest.mark.kernel


def probe(command: str, **timing: float) -> HealthConfig:
    return HealthConfig(("/bin/sh", "-c", command), **timing)  # type: ignore[arg-type]


def health_of(runtime: Runtime, container: str) -> Health:
    return runtime.health(container) or Health("")


def changes(runtime: Runtime, group: str, container: str) -> list[dict[str, object]]:
    return [e for e in events(runtime, group) if e["event"] == "health_status" and e["container"] == container]


def test_health_is_starting_from_each_start_and_unhealthy_once_ended(runtime: Runtime, make: Make) -> None:
    config = make("sleep", "60", healthcheck=probe("true"), stop_grace_period=0.0)
    plain = make("sleep", "60", stop_grace_period=0.0)
    for each in (config, plain):
        runtime.create(each)
        assert runtime.get(each.id).state.health == ""
        runtime.start(each.id)
    assert runtime.get(config.id).state.health == "starting"
    assert runtime.get(plain.id).state.health == ""  # no healthcheck, no health
    runtime.stop(config.id)
    assert runtime.get(config.id).state.health == "unhealthy"  # as Docker has it
    runtime.start(config.id)
    assert runtime.get(config.id).state.health == "starting"


def test_a_passing_probe_makes_the_container_healthy(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sleep", "60", group=group, healthcheck=probe("echo fine", interval=0.2))
    runtime.create(config)
    runtime.start(config.id)
    ensure_supervisor(runtime.root, group)
    assert until(lambda: runtime.get(config.id).state.health == "healthy")
    assert until(lambda: [e["status"] for e in changes(runtime, group, config.id)] == ["healthy"])  # the event follows the record
    last = health_of(runtime, config.id).log[-1]
    assert (last.exit_code, last.output) == (0, "fine\n")
    assert last.start <= last.end


def test_failing_probes_make_it_unhealthy_after_their_retries(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sleep", "60", group=group, healthcheck=probe("echo no >&2; exit 1", interval=0.1, retries=3))
    runtime.create(config)
    runtime.start(config.id)
    ensure_supervisor(runtime.root, group)
    assert until(lambda: runtime.get(config.id).state.health == "unhealthy")
    health = health_of(runtime, config.id)
    assert health.failing_streak >= 3 and len(health.log) >= 3
    assert {(p.exit_code, p.output) for p in health.log} == {(1, "no\n")}
    assert until(lambda: [e["status"] for e in changes(runtime, group, config.id)] == ["unhealthy"])  # the event follows the record
    assert until(lambda: len(health_of(runtime, config.id).log) == 5)
    assert not until(lambda: len(health_of(runtime, config.id).log) > 5, timeout=1.0)


def test_a_probe_past_its_timeout_is_killed_and_fails(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sleep", "60", group=group,
                  healthcheck=probe("exec sleep 30", interval=0.2, timeout=0.5, retries=1))  # fmt: skip
    runtime.create(config)
    runtime.start(config.id)
    ensure_supervisor(runtime.root, group)
    assert until(lambda: runtime.get(config.id).state.health == "unhealthy", timeout=20)
    first = health_of(runtime, config.id).log[0]
    assert (first.exit_code, first.output) == (-1, "Health check exceeded timeout (0.5s)")
    ran = datetime.datetime.fromisoformat(first.end) - datetime.datetime.fromisoformat(first.start)
    assert ran.total_seconds() < 10  # killed, not waited for
    # Its process in the container was killed with it: probes do not pile up.
    assert until(lambda: len(health_of(runtime, config.id).log) >= 3, timeout=20)
    assert len(commands(runtime, config.id, "sleep 30")) <= 1  # the one running now, at most


def commands(runtime: Runtime, container: str, command: str) -> list[int]:
    """The processes of the container's cgroup running `command`."""
    found = []
    for pid in runtime.cgroups.pids(runtime.cgroup_of(container)):
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        except FileNotFoundError:
            continue
        if line.decode() == command:
            found.append(pid)
    return found


def test_failures_within_the_start_period_do_not_count(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sleep", "60", group=group, healthcheck=probe(
        "exit 1", interval=0.3, start_period=2.0, start_interval=0.1, retries=1))  # fmt: skip
    runtime.create(config)
    started = datetime.datetime.fromisoformat(runtime.start(config.id).state.started_at)
    ensure_supervisor(runtime.root, group)
    assert until(lambda: runtime.get(config.id).state.health == "unhealthy", timeout=20)
    log = health_of(runtime, config.id).log
    early = [p for p in log if (datetime.datetime.fromisoformat(p.start) - started).total_seconds() < 2.0]
    assert len(early) >= 2  # failed, and yet it stayed starting
    assert until(lambda: len(changes(runtime, group, config.id)) == 1)  # the event follows the record
    [change] = changes(runtime, group, config.id)
    assert change["status"] == "unhealthy"
    turned = datetime.datetime.fromisoformat(str(change["time"]))
    assert (turned - started).total_seconds() >= 2.0


def test_a_slow_probe_holds_up_no_other(runtime: Runtime, make: Make, group: str) -> None:
    slow = make("sleep", "60", group=group, healthcheck=probe("exec sleep 30", interval=0.1, timeout=30))
    quick = make("sleep", "60", group=group, healthcheck=probe("true", interval=0.1))
    for config in (slow, quick):
        runtime.create(config)
        runtime.start(config.id)
    ensure_supervisor(runtime.root, group)
    assert until(lambda: runtime.get(quick.id).state.health == "healthy")
    assert until(lambda: len(health_of(runtime, quick.id).log) == 5)
    assert runtime.get(slow.id).state.health == "starting"  # its probe still runs


def test_a_restarted_container_starts_its_health_over(runtime: Runtime, make: Make, group: str) -> None:
    config = make("sh", "-c", "touch /ready; exec sleep 60", group=group, restart="always",
                  healthcheck=probe("test -e /ready", interval=0.1))  # fmt: skip
    runtime.create(config)
    first = runtime.start(config.id).state.pid
    ensure_supervisor(runtime.root, group)
    assert until(lambda: runtime.get(config.id).state.health == "healthy")
    os.kill(first, signal.SIGKILL)
    assert until(lambda: runtime.get(config.id).state.restart_count == 1)
    assert until(lambda: len(changes(runtime, group, config.id)) == 2)
    # healthy, then starting again at the restart (no event: a start resets it), then healthy
    assert [e["status"] for e in changes(runtime, group, config.id)] == ["healthy", "healthy"]
    assert len(health_of(runtime, config.id).log) >= 2  # the log is kept across the restart
