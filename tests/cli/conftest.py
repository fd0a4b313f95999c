"""The verbs end to end (root, real kernel): stacks brought up in the test's own state root by
the `stacks` fixture (which takes everything down afterwards, whatever happened), and the
verbs run through `composer.cli.main.main` with COMPOSER_ROOT set to that root."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from composer.cli.main import main
from composer.config.loader import Stack
from tests.images.conftest import busybox_dir, busybox_tar  # noqa: F401 - shared fixtures
from tests.stack.conftest import Stacks, stacks  # noqa: F401 - the shared fixture

# A service with a healthcheck that passes, and one its restart policy restarts again and again.
CARED_FOR = """
services:
  checked:
    image: busybox:test
    command: ["sleep", "300"]
    healthcheck: {test: ["CMD", "true"], interval: 1s, start_interval: 1s}
  flaky:
    image: busybox:test
    command: ["sh", "-c", "sleep 0.3; exit 2"]
    restart: always
"""


class Run(NamedTuple):
    code: int
    out: str
    err: str


@dataclass
class Cli:
    """Run verbs on stacks of the test's state root."""

    stacks: Stacks
    capsys: pytest.CaptureFixture[str]

    def up(self, text: str) -> Stack:
        """Bring a stack up (its file holds `text` after its `name:`)."""
        stack = self.stacks.load(text)
        self.stacks.up(stack)
        return stack

    def __call__(self, stack: Stack, *args: str) -> Run:
        """`composer -f STACK_FILE ARGS…`: its exit code, stdout and stderr."""
        self.capsys.readouterr()
        code = main(["-f", str(stack.files[0]), *args])
        out, err = self.capsys.readouterr()
        return Run(code, out, err)

    def spawn(self, stack: Stack, *args: str) -> subprocess.Popen[str]:
        """The verb in a process of its own (to interrupt it as Ctrl-C does)."""
        env = dict(os.environ, COMPOSER_ROOT=str(self.stacks.root))
        return subprocess.Popen(
            [sys.executable, "-m", "composer", "-f", str(stack.files[0]), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def status(self, stack: Stack, service: str, number: int = 1) -> str:
        return self.stacks.runtime.get(f"{stack.project.name}-{service}-{number}").state.status


@pytest.fixture
def cli(
    stacks: Stacks,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Cli:
    monkeypatch.setenv("COMPOSER_ROOT", str(stacks.root))
    for name in ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PROFILES", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return Cli(stacks, capsys)


def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether `condition` comes true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
