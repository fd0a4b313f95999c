"""Helper processes (composer.helpers): each container's work done by forks of the command,
their progress and failures passed on as if the command had done it, and none left behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
import pytest

from composer.helpers import HelperFailed, Helpers


def _work(log: Path):  # type: ignore[no-untyped-def]
    def work(name: str, report) -> None:  # type: ignore[no-untyped-def]
        report(name, "Working")
        with open(log, "a") as f:
            f.write(f"{name} {os.getpid()}\n")
        if name == "refused":
            raise HelperFailed(f"{name}: not today")
        if name == "buggy":
            raise KeyError("a bug")

    return work


def _gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_each_container_is_worked_on_by_a_helper_and_failures_come_back(tmp_path: Path) -> None:
    log, setups = tmp_path / "log", tmp_path / "setups"

    def setup() -> None:
        with setups.open("a") as f:
            f.write(f"{os.getpid()}\n")

    helpers = Helpers(3, _work(log), setup)
    seen: list[tuple[str, str]] = []
    try:
        failed = helpers.each([f"c{n}" for n in range(10)] + ["refused"], lambda *r: seen.append(r))
    finally:
        helpers.close()
    assert failed == {"refused": "refused: not today"}
    done = dict(line.split() for line in log.read_text().splitlines())
    assert set(done) == {f"c{n}" for n in range(10)} | {"refused"}
    assert os.getpid() not in {int(pid) for pid in done.values()}
    assert sorted(seen) == sorted((name, "Working") for name in done)
    assert sorted(map(int, setups.read_text().split())) == sorted(helpers.pids)  # each, once
    assert all(_gone(pid) for pid in helpers.pids)


def test_from_an_event_loop_a_failure_raises_and_a_bug_is_the_commands(tmp_path: Path) -> None:
    helpers = Helpers(2, _work(tmp_path / "log"), lambda: None)
    seen: list[tuple[str, str]] = []

    async def main() -> None:
        async with anyio.create_task_group() as relaying:
            relaying.start_soon(helpers.relay, lambda *r: seen.append(r))
            await helpers.do("fine")
            with pytest.raises(HelperFailed, match="not today"):
                await helpers.do("refused")
            with pytest.raises(RuntimeError, match="KeyError: 'a bug'"):
                await helpers.do("buggy")
            relaying.cancel_scope.cancel()

    try:
        anyio.run(main)
    finally:
        helpers.close()
    assert ("fine", "Working") in seen


def test_helpers_die_with_the_command(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = os.fork()
    if command == 0:  # the command: starts helpers that would wait for work forever
        try:
            helpers = Helpers(2, _work(tmp_path / "log"), lambda: None)
            pids.write_text(" ".join(map(str, helpers.pids)))
            time.sleep(60)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 10
    while not pids.exists() or not pids.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(command, signal.SIGKILL)
    os.waitpid(command, 0)
    for pid in map(int, pids.read_text().split()):
        while os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid):
            assert time.monotonic() < deadline, f"helper {pid} outlived its command"
            time.sleep(0.01)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
