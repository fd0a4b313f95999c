"""`composer logs`: prefixes, streams, colours, times, --tail/--since/--until, following, and
output no supervisor has moved into the log yet."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from composer.config.loader import Stack
from engine.supervisor import supervisor_pid
from tests.cli.conftest import Cli, Run, until

pytestmark = pytest.mark.kernel

TWO = """
services:
  db:
    image: busybox:test
    command: ["sh", "-c", "echo db ready; echo db warns >&2; exec sleep 300"]
  web:
    image: busybox:test
    command: ["sh", "-c", "echo web one; echo web two; exec sleep 300"]
    depends_on: [db]
"""


def two(cli: Cli) -> Stack:
    stack = cli.up(TWO)
    assert until(lambda: cli(stack, "logs").out.count("\n") == 3)
    return stack


def test_each_line_has_its_container_prefix_and_stderr_goes_to_stderr(cli: Cli) -> None:
    stack = two(cli)
    code, out, err = cli(stack, "logs")
    assert code == 0
    assert sorted(out.splitlines()) == ["db-1   | db ready", "web-1  | web one", "web-1  | web two"]
    assert err == "db-1   | db warns\n"


def test_services_named_select_their_containers(cli: Cli) -> None:
    stack = two(cli)
    assert cli(stack, "logs", "web").out == "web-1  | web one\nweb-1  | web two\n"


def test_no_log_prefix_prints_the_lines_alone(cli: Cli) -> None:
    stack = two(cli)
    assert cli(stack, "logs", "--no-log-prefix", "web").out == "web one\nweb two\n"


def test_timestamps_come_after_the_prefix(cli: Cli) -> None:
    stack = two(cli)
    lines = cli(stack, "logs", "-t", "web").out.splitlines()
    assert len(lines) == 2
    for line in lines:
        prefix, _, rest = line.partition(" | ")
        when, _, text = rest.partition(" ")
        assert prefix == "web-1 " and when.endswith("Z") and "T" in when
        assert text in ("web one", "web two")


def test_tail_keeps_the_last_lines_of_each_container(cli: Cli) -> None:
    stack = two(cli)
    assert cli(stack, "logs", "--tail", "1", "web").out == "web-1  | web two\n"
    assert cli(stack, "logs", "-n", "0").out == ""
    assert cli(stack, "logs", "--tail", "lots").code == 2


def test_since_and_until_select_by_time(cli: Cli) -> None:
    stack = two(cli)
    assert cli(stack, "logs", "--since", "1h", "web").out.count("\n") == 2
    assert cli(stack, "logs", "--until", "1h", "web").out == ""
    assert cli(stack, "logs", "--since", "2999-01-01T00:00:00Z", "web").out == ""
    assert cli(stack, "logs", "--since", "yesterday-ish").code == 2


def test_prefixes_are_coloured_per_service_on_a_terminal_unless_no_color(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = two(cli)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    out = cli(stack, "logs").out
    db = next(line for line in out.splitlines() if "db ready" in line)
    web = next(line for line in out.splitlines() if "web one" in line)
    assert db.startswith("\033[") and web.startswith("\033[") and db[:5] != web[:5]
    assert "\033[" not in cli(stack, "logs", "--no-color").out


def test_an_unknown_service_names_those_there_are(cli: Cli) -> None:
    stack = two(cli)
    code, _, err = cli(stack, "logs", "nosuch")
    assert code == 1 and "no such service: nosuch" in err and "db, web" in err


def test_output_no_supervisor_moved_yet_is_shown_once(cli: Cli) -> None:
    stack = cli.up("""
services:
  talk:
    image: busybox:test
    command: ["sh", "-c", "echo before; trap 'echo after; exit 0' USR1; sleep 300 & wait"]
""")
    assert until(lambda: cli(stack, "logs").out == "talk-1  | before\n")
    assert until(lambda: supervisor_pid(cli.stacks.root, stack.project.name) is not None)
    pid = supervisor_pid(cli.stacks.root, stack.project.name)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert until(lambda: supervisor_pid(cli.stacks.root, stack.project.name) is None)
    cli(stack, "kill", "-s", "USR1")
    assert until(lambda: cli.status(stack, "talk") == "exited")
    assert cli(stack, "logs").out == "talk-1  | before\ntalk-1  | after\n"


def test_follow_shows_new_lines_and_ends_when_the_containers_stop(cli: Cli) -> None:
    stack = cli.up("""
services:
  tick:
    image: busybox:test
    command: ["sh", "-c", "echo start; trap 'echo stopping; exit 0' TERM; while :; do sleep 0.1; [ -f /go ] && echo go && rm /go; done"]
""")
    assert until(lambda: "start" in cli(stack, "logs").out)
    result: list[Run] = []
    follower = threading.Thread(target=lambda: result.append(cli(stack, "logs", "-f", "--no-log-prefix")))
    follower.start()
    time.sleep(0.5)
    name = f"{stack.project.name}-tick-1"
    assert cli.stacks.run(name, "touch /go")[0] == 0
    time.sleep(0.5)
    cli.stacks.runtime.stop(name, 5)
    follower.join(15)
    assert not follower.is_alive()
    assert result[0].code == 0 and result[0].out == "start\ngo\nstopping\n"
