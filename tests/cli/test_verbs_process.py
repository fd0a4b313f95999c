"""`composer top` and `composer stats`: the processes of each container (from its cgroup) as
`ps -ef` shows them, and what each container uses as `docker stats` shows it."""

from __future__ import annotations

import json
import signal
import time

import pytest

from composer.config.loader import Stack
from tests.cli.conftest import Cli

pytestmark = pytest.mark.kernel

STACK = """
services:
  pair:
    image: busybox:test
    command: ["sh", "-c", "sleep 301 & exec sleep 302"]
  solo:
    image: busybox:test
    command: ["sleep", "303"]
"""


def both_running(cli: Cli) -> Stack:
    stack = cli.up(STACK)
    runtime = cli.stacks.runtime
    name = f"{stack.project.name}-pair-1"
    deadline = time.monotonic() + 10
    while len(runtime.cgroups.pids(runtime.cgroup_of(name))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return stack


def test_top_lists_each_containers_processes_as_ps_ef(cli: Cli) -> None:
    stack = both_running(cli)
    p = stack.project.name
    code, out, _ = cli(stack, "top")
    assert code == 0
    blocks = [block.splitlines() for block in out.strip("\n").split("\n\n")]
    assert [block[0] for block in blocks] == [f"{p}-pair-1", f"{p}-solo-1"]
    assert all(block[1].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"] for block in blocks)
    pair = [row.split(maxsplit=7) for row in blocks[0][2:]]
    leader = cli.stacks.runtime.get(f"{p}-pair-1").state.pid
    assert sorted(row[7] for row in pair) == ["sleep 301", "sleep 302"]
    by_cmd = {row[7]: row for row in pair}
    assert by_cmd["sleep 302"][1] == str(leader)  # host pids
    assert by_cmd["sleep 301"][2] == str(leader)  # forked by the shell that became sleep 302
    assert all(row[0] == "root" and row[5] == "?" and row[6] == "00:00:00" for row in pair)


def test_top_of_a_service_shows_its_containers_only(cli: Cli) -> None:
    stack = both_running(cli)
    out = cli(stack, "top", "solo").out
    assert out.splitlines()[0] == f"{stack.project.name}-solo-1" and "sleep 303" in out and "sleep 302" not in out


def test_stats_no_stream_prints_one_table(cli: Cli) -> None:
    stack = both_running(cli)
    code, out, _ = cli(stack, "stats", "--no-stream")
    header, *rows = out.splitlines()
    assert code == 0
    assert [cell.strip() for cell in header.split("   ") if cell.strip()] == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
    assert [row.split()[0] for row in rows] == [f"{stack.project.name}-pair-1", f"{stack.project.name}-solo-1"]
    assert rows[0].split()[-1] == "2" and rows[1].split()[-1] == "1"


def test_stats_json_is_an_object_a_line(cli: Cli) -> None:
    stack = both_running(cli)
    cli(stack, "stop", "-t", "0", "solo")
    out = cli(stack, "stats", "--no-stream", "--format", "json").out
    [pair] = [json.loads(line) for line in out.splitlines()]
    assert pair["Name"] == f"{stack.project.name}-pair-1" and pair["PIDs"] == "2"
    assert pair["CPUPerc"].endswith("%") and " / " in pair["MemUsage"] and " / " in pair["NetIO"]
    assert pair["MemUsage"].split(" / ")[0].endswith("iB")
    every = cli(stack, "stats", "-a", "--no-stream", "--format", "json").out
    assert len(every.splitlines()) == 2


def test_stats_streams_until_interrupted(cli: Cli) -> None:
    stack = both_running(cli)
    process = cli.spawn(stack, "stats", "--format", "json", "solo")
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=20)
    lines = out.splitlines()
    assert process.returncode == 130 and len(lines) >= 2
    assert {json.loads(line)["Name"] for line in lines} == {f"{stack.project.name}-solo-1"}
