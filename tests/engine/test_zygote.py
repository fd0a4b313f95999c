"""Containers forked by the zygote (a preloaded init): the same container, started faster;
its exit is recorded by the shim it becomes, whatever happens to the zygote."""

from __future__ import annotations

import os

import pytest

from engine.container.runtime import Runtime
from engine.container.zygote import zygote_pid
from tests.engine.conftest import Make, stop, until
from tests.engine.test_runtime import run

pytestmark = pytest.mark.kernel


def test_a_forked_container_is_the_same_container(forked: Runtime, make: Make) -> None:
    state, out, _ = run(forked, make("sh", "-c", "echo $$; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; hostname; exit 5", hostname="forked"))
    assert state.exit_code == 5
    assert out.split() == ["1", "CapEff:", "00000000a80425fb", "NoNewPrivs:", "1", "Seccomp:", "2", "forked"]


def test_the_zygote_stays_out_of_the_container(forked: Runtime, make: Make) -> None:
    config = make("sleep", "30")
    forked.create(config)
    pid = forked.start(config.id).state.pid
    from pathlib import Path

    shim = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    # the zygote's fork becomes the shim just after it reports the start (while it executes
    # the shim, its command line reads empty)
    assert until(lambda: Path(f"/proc/{shim}/cmdline").read_text().split("\0")[1:2] == ["--adopt"])
    assert os.readlink(f"/proc/{shim}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    cgroup = f"{forked.cgroup_parent}/{config.id}"
    assert forked.cgroups.pids(cgroup) == [pid]  # the shim is not in the container's group


def test_a_killed_zygote_loses_no_container(forked: Runtime, make: Make) -> None:
    config = make("sh", "-c", "sleep 1; exit 4")
    forked.create(config)
    forked.start(config.id)
    zygote = zygote_pid(forked.root)
    assert zygote is not None
    stop(zygote)
    assert forked.get(config.id).state.status == "running"
    state = forked.wait(config.id, 10)
    assert (state.status, state.exit_code) == ("exited", 4)


def test_without_a_zygote_the_shim_starts_the_init(runtime: Runtime, make: Make) -> None:
    runtime.use_zygote = True  # asked for, but none runs: the usual way
    state, out, _ = run(runtime, make("sh", "-c", "echo ok"))
    assert (state.exit_code, out) == (0, "ok\n")


def test_tty_and_binds_through_the_zygote(forked: Runtime, make: Make, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from engine.container.spec import Mount

    (tmp_path / "data").mkdir()
    (tmp_path / "data/f").write_text("bound\n")
    state, out, _ = run(forked, make("sh", "-c", "cat /data/f; test -t 1 && echo tty", tty=True, mounts=(Mount("bind", "/data", str(tmp_path / "data")),)))
    assert state.exit_code == 0
    assert out.replace("\r", "") == "bound\ntty\n"


def _parent_argv(pid: int) -> list[str]:
    from pathlib import Path

    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return Path(f"/proc/{parent}/cmdline").read_text().split("\0")


def test_a_zygote_of_other_code_is_not_used_and_the_init_starts_the_container(forked: Runtime, make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.container import zygote

    monkeypatch.setattr(zygote, "code_stamp", lambda: "other code")
    config = make("sleep", "30")
    forked.create(config)
    pid = forked.start(config.id).state.pid
    assert "--adopt" not in _parent_argv(pid)  # the shim started the init program itself
    assert "zygote.py" not in " ".join(_parent_argv(pid))


def test_ensure_zygote_replaces_a_zygote_that_loaded_other_code(forked: Runtime, make: Make) -> None:
    from engine.container.zygote import ensure_zygote

    old = zygote_pid(forked.root)
    assert old is not None
    (forked.root / "run/zygote.stamp").write_text("code of yesterday\n")
    new = ensure_zygote(forked.root)
    try:
        assert new != old
        assert until(lambda: os.waitpid(old, os.WNOHANG)[0] == old)  # ended (our child: reaped)
        config = make("sleep", "30")
        forked.create(config)
        pid = forked.start(config.id).state.pid
        assert until(lambda: "--adopt" in _parent_argv(pid))  # forked by the new zygote
    finally:
        stop(new)
