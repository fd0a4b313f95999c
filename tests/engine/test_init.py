"""The container init (init.c in composer-shim): the spec reaches the container as the runtime
wrote it, the shim that made the container stays out of it, and a spec the init cannot take
is refused with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.container.launch import ContainerError
from engine.container.runtime import Runtime
from engine.container.spec import Mount
from engine.errors import EngineError
from tests.engine.conftest import Make
from tests.engine.test_runtime import run

pytestmark = pytest.mark.kernel


def test_the_container_is_what_the_spec_says(runtime: Runtime, make: Make) -> None:
    script = "echo $$; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; hostname; exit 5"
    state, out, _ = run(runtime, make("sh", "-c", script, hostname="made"))
    assert state.exit_code == 5
    assert out.split() == ["1", "CapEff:", "00000000a80425fb", "NoNewPrivs:", "1", "Seccomp:", "2", "made"]


def test_arguments_and_environment_arrive_byte_for_byte(runtime: Runtime, make: Make) -> None:
    odd = ("two\nlines", "a=b=c", "", "  spaced  ", "naïve ✓", "\\0 and %s")
    config = make("sh", "-c", 'for a in "$@"; do printf "[%s]" "$a"; done; printf "{%s}" "$V" "$W"', "sh", *odd,
                  env=("V=x=y\nz", "W="))  # fmt: skip
    state, out, err = run(runtime, config)
    assert state.exit_code == 0, err
    assert out == "".join(f"[{a}]" for a in odd) + "{x=y\nz}{}"


def test_the_shim_stays_out_of_the_container(runtime: Runtime, make: Make) -> None:
    config = make("sleep", "30")
    runtime.create(config)
    pid = runtime.start(config.id).state.pid
    try:
        shim = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert "--init" in Path(f"/proc/{shim}/cmdline").read_text().split("\0")
        for namespace in ("mnt", "pid", "net"):
            assert os.readlink(f"/proc/{shim}/ns/{namespace}") == os.readlink(f"/proc/self/ns/{namespace}")
            assert os.readlink(f"/proc/{pid}/ns/{namespace}") != os.readlink(f"/proc/self/ns/{namespace}")
        assert runtime.cgroups.pids(f"{runtime.cgroup_parent}/{config.id}") == [pid]
        assert len(os.listdir(f"/proc/{pid}/fd")) == 3  # nothing of the shim's or the host's
    finally:
        runtime.kill(config.id)
        runtime.wait(config.id, 10)


def test_a_terminal_and_binds(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data/f").write_text("bound\n")
    binds = (Mount("bind", "/data", str(tmp_path / "data")),)
    state, out, _ = run(runtime, make("sh", "-c", "cat /data/f; test -t 1 && echo tty", tty=True, mounts=binds))
    assert state.exit_code == 0
    assert out.replace("\r", "") == "bound\ntty\n"


def test_a_spec_beyond_what_the_init_takes_is_refused_with_the_reason(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    mounts = tuple(Mount("tmpfs", f"/t{n}") for n in range(257))
    config = make("true", mounts=mounts)
    runtime.create(config)
    with pytest.raises(ContainerError, match="256 mounts"):
        runtime.start(config.id)


def test_a_nul_character_in_the_environment_is_refused_before_anything_runs(runtime: Runtime, make: Make) -> None:
    config = make("true", env=("A=one\0two",))
    runtime.create(config)
    with pytest.raises(EngineError, match="its env holds a NUL character"):
        runtime.start(config.id)
    assert runtime.get(config.id).state.status == "created"
