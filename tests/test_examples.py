"""The stacks of examples/ as a newcomer meets them: every compose file loads as `composer
config` reads it, and each stack runs as its README says — brought up with the CLI in a state
root of its own (the `stacks` fixture: everything removed afterwards, whatever happens), with
the image `examples/busybox-image.sh` makes, checked, and brought down."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.container.logs import read_log
from tests.stack import conftest as stack_fixtures
from tests.stack.conftest import Stacks

# The stack tests' fixture (a state root of the test's own, everything removed afterwards) and
# the ones it needs.
stacks = stack_fixtures.stacks
busybox_dir = stack_fixtures.busybox_dir
busybox_tar = stack_fixtures.busybox_tar

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STACK_FILES = sorted(EXAMPLES.glob("*/compose.yaml"))
BIN = Path(sys.executable).parent
T = TypeVar("T")


def environment(stacks: Stacks) -> dict[str, str]:
    """What a newcomer has: `composer` on the PATH, COMPOSER_ROOT (here the test's root)."""
    path = f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return {**os.environ, "COMPOSER_ROOT": str(stacks.root), "PATH": path}


def composer(stacks: Stacks, *args: str, timeout: float = 120) -> str:
    """Run the composer CLI on the test's state root; its output (it must succeed)."""
    done = subprocess.run([sys.executable, "-m", "composer", *args], env=environment(stacks),
                          text=True, capture_output=True, timeout=timeout, check=False)  # fmt: skip
    assert done.returncode == 0, f"composer {' '.join(args)}: {done.stderr}"
    return done.stdout


def example(stacks: Stacks, name: str, override: str = "") -> tuple[str, list[str]]:
    """The example's image made as its README says; a unique project name and the `-p`/`-f`
    options that run it (with `override` merged, to move a published port out of the way of
    a copy of the example that may run on this machine)."""
    subprocess.run([str(EXAMPLES / "busybox-image.sh")], env=environment(stacks), check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    project = stacks.name()
    stacks.directory.mkdir(parents=True, exist_ok=True)
    options = ["-p", project, "-f", str(EXAMPLES / name / "compose.yaml")]
    if override:
        path = stacks.directory / f"{project}-override.yaml"
        path.write_text(override)
        options += ["-f", str(path)]
    return project, options


def eventually(check: Callable[[], T], what: str, timeout: float = 30) -> T:
    """Poll `check` until it returns something true; that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def output_of(stacks: Stacks, container: str) -> str:
    return "".join(line.text for line in read_log(stacks.runtime.containers / container))


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def published(stacks: Stacks, options: list[str], service: str, port: int) -> str:
    return composer(stacks, *options, "port", service, str(port)).strip()


def containers(stacks: Stacks, options: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(composer(stacks, *options, "ps", "--format", "json"))
    return rows


def test_there_are_at_least_three_examples() -> None:
    assert len(STACK_FILES) >= 3, STACK_FILES


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.parent.name)
def test_example_loads_without_errors_or_warnings(path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "composer", "config", "-q", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.kernel
def test_web_page_is_fetched_by_the_client_by_service_name(stacks: Stacks) -> None:
    project, options = example(
        stacks, "web", "services:\n  web:\n    ports: !override ['127.0.0.1::80']\n"
    )
    composer(stacks, *options, "up", "-d")
    page = (EXAMPLES / "web" / "site" / "index.html").read_text()
    client = f"{project}-client-1"
    eventually(lambda: page in output_of(stacks, client), "the client shows the page")
    address = published(stacks, options, "web", 80)
    assert eventually(lambda: fetch(f"http://{address}/"), "the published port") == page
    composer(stacks, *options, "down", "-t", "0")


@pytest.mark.kernel
def test_three_tier_answers_through_the_proxy_once_every_tier_is_healthy(
    stacks: Stacks,
) -> None:
    project, options = example(
        stacks, "three-tier", "services:\n  proxy:\n    ports: !override ['127.0.0.1::80']\n"
    )
    composer(stacks, *options, "up", "-d")
    address = published(stacks, options, "proxy", 80)
    first = eventually(lambda: fetch(f"http://{address}/"), "an answer through the proxy")
    pattern = (
        rf"Hello from the app \({project}-app-1\): visit number (\d+), counted by the store\.\n"
    )
    found = re.fullmatch(pattern, first)
    assert found, first
    second = fetch(f"http://{address}/")
    assert second == first.replace(f"number {found[1]},", f"number {int(found[1]) + 1},")
    rows = containers(stacks, options)
    assert sorted(row["Service"] for row in rows) == ["app", "proxy", "store"]
    eventually(  # `up -d` waited for store and app; the proxy's health follows
        lambda: all(row.get("Health") == "healthy" for row in containers(stacks, options)),
        "every tier healthy",
    )
    composer(stacks, *options, "down", "-t", "0")


@pytest.mark.kernel
def test_replicas_run_limited_and_their_volume_outlives_down(stacks: Stacks) -> None:
    project, options = example(stacks, "replicas")
    workers = [f"{project}-worker-{n}" for n in (1, 2, 3)]

    def starts() -> list[str]:
        code, out = stacks.run(workers[0], "cat /data/starts")
        return out.splitlines() if code == 0 else []

    composer(stacks, *options, "up", "-d")
    assert [row["Service"] for row in containers(stacks, options)].count("worker") == 3
    eventually(lambda: len(starts()) == 3, "three starts in the volume")
    assert sorted(starts()) == [f"{w} started" for w in workers]
    for worker in workers:
        assert stacks.runtime.stats(worker).cgroup.memory_limit == 32 << 20
    client = f"{project}-client-1"
    eventually(lambda: "started" in output_of(stacks, client), "the client reads the log")

    composer(stacks, *options, "down", "-t", "0")
    composer(stacks, *options, "up", "-d")
    eventually(lambda: len(starts()) == 6, "the old starts and three new ones")
    assert sorted(starts()) == sorted([f"{w} started" for w in workers] * 2)
    composer(stacks, *options, "down", "-t", "0")
