"""`composer start`, `stop`, `restart`, `kill`, `pause`, `unpause` and `rm`: what they do to
the containers, in which order, their messages and exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from composer.config.loader import Stack
from composer.stackview import container_files
from composer.state import StateStore
from tests.cli.conftest import Cli

pytestmark = pytest.mark.kernel

# Ends at once on SIGTERM (as PID 1, sh ignores signals it has no trap for).
POLITE = """["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]"""
STUBBORN = '["sleep", "300"]'  # ignores SIGTERM: only SIGKILL ends it

CHAIN = f"""
services:
  db:
    image: busybox:test
    command: {POLITE}
  api:
    image: busybox:test
    command: {POLITE}
    depends_on: [db]
  web:
    image: busybox:test
    command: {POLITE}
    depends_on: [api]
"""


def actions(cli: Cli, stack: Stack, action: str) -> list[str]:
    """The services `action` was done to, in the order of the stack's events."""
    out = cli(stack, "events", "--json", "--since", "1h", "--until", "0s").out
    return [e["service"] for e in map(json.loads, out.splitlines()) if e["action"] == action]


def test_stop_stops_dependents_first(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    code, _, err = cli(stack, "stop")
    assert code == 0
    assert [cli.status(stack, s) for s in ("db", "api", "web")] == ["exited"] * 3
    assert actions(cli, stack, "stop") == ["web", "api", "db"]
    assert f"Container {stack.project.name}-web-1  Stopped" in err


def test_stop_of_a_service_leaves_the_others_running(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    assert cli(stack, "stop", "api").code == 0
    assert [cli.status(stack, s) for s in ("db", "api", "web")] == ["running", "exited", "running"]


def test_stop_timeout_kills_what_does_not_stop_in_time(cli: Cli) -> None:
    stack = cli.up(f"services:\n  idle:\n    image: busybox:test\n    command: {STUBBORN}\n")
    assert cli(stack, "stop", "-t", "0").code == 0
    state = cli.stacks.runtime.get(f"{stack.project.name}-idle-1").state
    assert state.status == "exited" and state.exit_code == 137


def test_start_starts_what_is_needed_first(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    cli(stack, "stop")
    code, _, err = cli(stack, "start")
    assert code == 0
    assert [cli.status(stack, s) for s in ("db", "api", "web")] == ["running"] * 3
    assert actions(cli, stack, "start") == ["db", "api", "web"]
    assert f"Container {stack.project.name}-db-1  Started" in err


def test_start_of_a_running_container_says_it_runs(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    code, _, err = cli(stack, "start", "db")
    assert code == 0 and f"Container {stack.project.name}-db-1  Running" in err


def test_start_of_a_service_without_container_is_an_error(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    cli(stack, "rm", "-f", "-s", "web")
    code, _, err = cli(stack, "start", "web")
    assert code == 1 and "service 'web' has no container to start" in err


def test_restart_restarts_running_and_stopped_containers(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    runtime = cli.stacks.runtime
    before = runtime.get(f"{stack.project.name}-db-1").state.pid
    cli(stack, "stop", "web")
    assert cli(stack, "restart", "-t", "1", "db", "web").code == 0
    assert runtime.get(f"{stack.project.name}-db-1").state.pid not in (0, before)
    assert [cli.status(stack, s) for s in ("db", "web")] == ["running", "running"]
    assert actions(cli, stack, "restart") == ["db", "web"]


def test_kill_sends_sigkill_by_default(cli: Cli) -> None:
    stack = cli.up(f"services:\n  idle:\n    image: busybox:test\n    command: {STUBBORN}\n")
    assert cli(stack, "kill").code == 0
    state = cli.stacks.runtime.wait(f"{stack.project.name}-idle-1", 5)
    assert state.status == "exited" and state.exit_code == 137


def test_kill_sends_the_signal_given(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    assert cli(stack, "kill", "-s", "SIGTERM", "web").code == 0
    assert cli(stack, "kill", "--signal", "TERM", "api").code == 0
    runtime = cli.stacks.runtime
    for service in ("web", "api"):
        state = runtime.wait(f"{stack.project.name}-{service}-1", 5)
        assert (state.status, state.exit_code) == ("exited", 0)  # its trap ran
    assert cli.status(stack, "db") == "running"


def test_kill_refuses_an_unknown_signal_and_says_when_nothing_runs(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    assert cli(stack, "kill", "-s", "SIGNOPE").code == 2
    cli(stack, "stop")
    code, _, err = cli(stack, "kill")
    assert code == 0 and "no container to kill" in err


def test_pause_freezes_and_unpause_thaws(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    code, _, err = cli(stack, "pause", "api")
    assert code == 0 and f"Container {stack.project.name}-api-1  Paused" in err
    assert [cli.status(stack, s) for s in ("db", "api")] == ["running", "paused"]
    assert cli(stack, "unpause").code == 0
    assert cli.status(stack, "api") == "running"


def test_rm_removes_stopped_containers_only(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    cli(stack, "stop", "web")
    code, _, err = cli(stack, "rm", "-f")
    assert code == 0 and f"Container {stack.project.name}-web-1  Removed" in err
    assert sorted(cli.stacks.runtime.ids()) == [f"{stack.project.name}-{s}-1" for s in ("api", "db")]
    code, _, err = cli(stack, "rm", "-f")
    assert code == 0 and "No stopped containers" in err


def test_rm_forgets_the_container_and_its_files_and_rewrites_its_peers_hosts(cli: Cli) -> None:
    stack = cli.up(CHAIN)
    p = stack.project.name
    peer_hosts = container_files(cli.stacks.settings, p, f"{p}-db-1").hosts
    assert "web" in peer_hosts.read_text().split()
    assert cli(stack, "rm", "-f", "-s", "web").code == 0
    with StateStore(cli.stacks.root) as store:
        assert [r.id for r in store.containers(p)] == [f"{p}-api-1", f"{p}-db-1"]
        assert not store.addresses(container=f"{p}-web-1")
    assert not container_files(cli.stacks.settings, p, f"{p}-web-1").directory.exists()
    assert "web" not in peer_hosts.read_text().split()


def test_rm_asks_first_without_force(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = cli.up(CHAIN)
    cli(stack, "stop", "web")
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, err = cli(stack, "rm", "web")
    assert code == 0 and f"Going to remove {stack.project.name}-web-1" in err
    assert cli.status(stack, "web") == "exited"
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert cli(stack, "rm", "web").code == 0
    assert f"{stack.project.name}-web-1" not in cli.stacks.runtime.ids()


def test_rm_v_removes_anonymous_volumes_and_keeps_named_ones(cli: Cli) -> None:
    stack = cli.up(f"""
services:
  data:
    image: busybox:test
    command: {POLITE}
    volumes: ["/scratch", "kept:/kept"]
volumes:
  kept: {{}}
""")
    volumes = cli.stacks.root / "volumes"
    before = sorted(p.name for p in volumes.iterdir())
    assert len(before) == 2 and f"{stack.project.name}_kept" in before
    assert cli(stack, "rm", "-f", "-s", "-v").code == 0
    assert sorted(p.name for p in volumes.iterdir()) == [f"{stack.project.name}_kept"]


def test_verbs_act_by_project_name_without_the_stack_file(cli: Cli, tmp_path: Path) -> None:
    stack = cli.up(CHAIN)
    from composer.cli.main import main

    cli.capsys.readouterr()
    assert main(["-p", stack.project.name, "stop", "web"]) == 0
    assert cli.status(stack, "web") == "exited"
    assert main(["-p", stack.project.name, "stop", "nosuch"]) == 1
    assert "no such service: nosuch" in cli.capsys.readouterr().err
