"""`composer exec` on a service's running container: output, user, directory, exit code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.cli.main import main
from composer.config.loader import LoadOptions, load_stack
from composer.containers import container_config
from composer.settings import Settings
from engine.container.runtime import Runtime
from engine.images.store import Image, ImageStore

pytestmark = pytest.mark.kernel


@pytest.fixture
def web(tmp_path: Path, state_root: Path, runtime: Runtime, busybox: tuple[ImageStore, Image], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    store, image = busybox
    stack_file = tmp_path / "compose.yaml"
    stack_file.write_text("name: demo\nservices:\n  web:\n    image: busybox:test\n    command: sleep 60\n    user: app\n")
    stack = load_stack(LoadOptions(files=(stack_file,), environ={}, working_directory=tmp_path))
    config = container_config(stack.project, "web", 1, image, store, Settings(state_root))
    runtime.create(config)
    runtime.start(config.id)
    monkeypatch.setenv("COMPOSER_ROOT", str(state_root))
    yield stack_file


def test_exec_passes_output_and_exit_code_through(web: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code = main(["-f", str(web), "exec", "-T", "web", "sh", "-c", "id -u; pwd; echo $X; exit 3", "-e", "X=1"])
    out, err = capfd.readouterr()
    assert code == 3, err
    assert out.splitlines() == ["1000", "/", ""]


def test_exec_with_env_user_and_workdir(web: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code = main(["-f", str(web), "exec", "-e", "X=1", "-u", "root", "-w", "/tmp", "web", "sh", "-c", "id -u; pwd; echo $X"])
    out, _ = capfd.readouterr()
    assert code == 0
    assert out.splitlines() == ["0", "/tmp", "1"]


def test_exec_on_a_service_without_a_container_is_a_clear_error(web: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nservices:\n  db:\n    image: busybox\n")
    code = main(["-f", str(other), "exec", "db", "true"])
    _, err = capfd.readouterr()
    assert code == 1 and "service 'db' has no container other-db-1" in err


def test_exec_from_a_terminal_gets_a_terminal(web: Path, state_root: Path) -> None:
    import fcntl
    import os
    import select
    import struct
    import subprocess
    import sys
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    command = [sys.executable, "-m", "composer", "-f", str(web), "exec", "web", "sh", "-c", "test -t 0 && echo TTY; stty size; exit 4"]
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "COMPOSER_ROOT": str(state_root)}, start_new_session=True)
    os.close(slave)
    output = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 20)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=20) == 4
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    text = output.decode().replace("\r", "")
    assert "TTY\n" in text and "33 111\n" in text
