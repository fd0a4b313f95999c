"""User namespaces: a container whose root is an unprivileged uid of the host; its other
namespaces belong to that user namespace (real kernel, root)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.container.runtime import Runtime
from engine.container.spec import Mount
from tests.engine.conftest import Make
from tests.engine.test_runtime import run

pytestmark = pytest.mark.kernel

HOST_ROOT = 200000
RANGE = ((0, HOST_ROOT, 65536),)  # the container's ids 0-65535 are the host's 200000-265535


def mapped(make: Make, script: str, **fields: object):  # type: ignore[no-untyped-def]
    return make("sh", "-c", script, uid_map=RANGE, gid_map=RANGE, **fields)


def test_the_containers_root_is_an_unprivileged_uid_of_the_host(runtime: Runtime, make: Make) -> None:
    config = mapped(make, "id -u; cat /proc/self/uid_map; sleep 30")
    runtime.create(config)
    started = runtime.start(config.id)
    out = started.directory / "stdout"
    try:
        for _ in range(500):  # its output first: then it only sleeps
            if len(out.read_text().split()) == 4:
                break
            time.sleep(0.01)
        status = Path(f"/proc/{started.state.pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert uids == [str(HOST_ROOT)] * 4
        assert os.readlink(f"/proc/{started.state.pid}/ns/user") != os.readlink("/proc/self/ns/user")
    finally:
        runtime.kill(config.id)
        runtime.wait(config.id, 10)
    assert out.read_text().split() == ["0", "0", str(HOST_ROOT), "65536"]


def test_the_image_belongs_to_the_containers_root_and_its_writes_are_stored_as_the_hosts_mapped_ids(runtime: Runtime, make: Make) -> None:
    config = mapped(make, "stat -c %u:%g /bin/busybox /etc /; echo hi > /new; stat -c %u /new")
    state, out, err = run(runtime, config)
    assert state.exit_code == 0, err
    assert out.split() == ["0:0", "0:0", "0:0", "0"]
    upper = runtime.get(config.id).directory / "rootfs" / "upper"
    assert os.stat(upper / "new").st_uid == HOST_ROOT


def test_the_containers_root_cannot_read_a_host_roots_private_file(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    (shared / "secret").write_text("host secret\n")
    (shared / "secret").chmod(0o600)
    mounts = (Mount("bind", "/shared", str(shared)),)
    _, out, err = run(runtime, mapped(make, "cat /shared/secret; touch /shared/made", mounts=mounts))
    assert "Permission denied" in err and "host secret" not in out
    assert os.stat(shared / "made").st_uid == HOST_ROOT  # what it makes is the host's 200000
    _, out, _ = run(runtime, make("cat", "/shared/secret", mounts=mounts))  # without: it can
    assert out == "host secret\n"


def test_devices_work_and_the_namespaces_belong_to_the_containers_root(runtime: Runtime, make: Make) -> None:
    # Binding port 80 needs CAP_NET_BIND_SERVICE over the network namespace: the container's
    # root has it only when its user namespace owns that namespace.
    script = ("head -c 4 /dev/zero | wc -c; echo x > /dev/null; ls /dev | tr '\\n' ' '; echo;"
              "nc -l -p 80 & sleep 0.3; netstat -ltn | grep -c ':80 '; kill %1; hostname")
    state, out, err = run(runtime, mapped(make, script, hostname="mapped"))
    assert state.exit_code == 0, err
    lines = out.splitlines()
    assert lines[0].strip() == "4"
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= set(lines[1].split())
    assert lines[2:] == ["1", "mapped"]


def test_a_new_volume_belongs_to_the_containers_root(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    mounts = (Mount("bind", "/data", str(volume), seed=True),)
    state, out, err = run(runtime, mapped(make, "stat -c %u /data; echo kept > /data/f", mounts=mounts))
    assert state.exit_code == 0, err
    assert out == "0\n"
    assert (volume / "f").read_text() == "kept\n"


def test_exec_enters_the_user_namespace_and_a_restart_keeps_the_writable_layer(runtime: Runtime, make: Make, tmp_path: Path) -> None:
    config = mapped(make, "echo once >> /log; sleep 30")
    runtime.create(config)
    runtime.start(config.id)
    out = tmp_path / "out"
    with open(out, "w") as f:
        assert runtime.exec(config.id, ("sh", "-c", "id -u; cat /proc/self/uid_map"), stdout=f.fileno()) == 0
    assert out.read_text().split() == ["0", "0", str(HOST_ROOT), "65536"]
    runtime.restart(config.id, timeout=0)
    with open(out, "w") as f:
        assert runtime.exec(config.id, ("cat", "/log"), stdout=f.fileno()) == 0
    assert out.read_text() == "once\nonce\n"
    runtime.kill(config.id)
    runtime.wait(config.id, 10)
