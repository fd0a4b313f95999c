"""`composer serve` keeps the stacks of a directory (or of this host) equal to their files,
keeps their supervisors running, and answers on its socket and metrics port (root, real
kernel; each serve is a process of its own on the test's state root, stopped by pid)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from composer.servesocket import ask
from composer.state import StateStore
from engine.supervisor import supervisor_pid
from tests.stack.conftest import Stacks
from tests.stack.test_networking import WEB as HTTPD
from tests.stack.test_reconcile import CLIENT as SLEEPER
from tests.stack.test_reconcile import eventually, pid_of

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
# As pid 1, httpd and sleep ignore SIGTERM: a short grace period spares 10 s waits.
WEB = HTTPD + "    stop_grace_period: 1s\n"
CLIENT = SLEEPER + "    stop_grace_period: 1s\n"
BROKEN = """
services:
  web:
    imagee: busybox:test
"""


@dataclass
class Serving:
    """A `composer serve` process on the test's state root."""

    stacks: Stacks
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    @property
    def socket(self) -> Path:
        return self.stacks.root / "run" / "serve.sock"

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        return ask(self.socket, request)

    def stack(self, project: str) -> dict[str, Any]:
        return next(s for s in self.ask({"get": "stacks"})["stacks"] if s["project"] == project)

    def output(self) -> str:
        return self.log.read_text()

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


Serve = Callable[..., Serving]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(stacks: Stacks, tmp_path: Path) -> Iterator[Serve]:
    """Start `composer serve ARGS…`; every one started is stopped (by its pid) afterwards,
    before the stacks fixture brings the stacks down."""
    started: list[Serving] = []

    def start(*args: str, metrics: bool = False, ready: bool = True) -> Serving:
        port = free_port() if metrics else 0
        log = tmp_path / f"serve-{len(started)}.log"
        env = {**os.environ, "COMPOSER_ROOT": str(stacks.root)}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "composer", "serve", *args, "--metrics-port", str(port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        serving = Serving(stacks, process, log, port)
        started.append(serving)
        if ready:
            eventually(lambda: _answers(serving), 30, "serve listens on its socket")
        return serving

    yield start
    for serving in started:
        with contextlib.suppress(ProcessLookupError):
            serving.stop()


def _answers(serving: Serving) -> bool:
    assert serving.process.poll() is None, serving.output()
    try:
        return "version" in serving.ask({"get": "serve"})
    except OSError:
        return False


def stack_file(path: Path, project: str | None, services: str) -> Path:
    """Write a stack file (atomically, as editors save: a temporary file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text((f"name: {project}\n" if project else "") + "services:" + services)
    temporary.rename(path)
    return path


def running(stacks: Stacks, name: str) -> bool:
    try:
        return stacks.runtime.get(name).state.status == "running"
    except Exception:
        return False


def recreated(stacks: Stacks, name: str, old_pid: int) -> bool:
    """Whether `name` runs, with another process than `old_pid`: one look (two could see the
    old container running, then the new one made but not started yet)."""
    try:
        state = stacks.runtime.get(name).state
    except Exception:
        return False
    return state.status == "running" and state.pid not in (0, old_pid)


def served_dir(stacks: Stacks) -> Path:
    directory = stacks.directory / "served"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def up_from_serve(stacks: Stacks, serve: Serve, *args: str, metrics: bool = False) -> tuple[Serving, str, Path]:
    """A served directory with one stack (web and client) that is up."""
    p = stacks.name()
    path = stack_file(served_dir(stacks) / "app.yaml", p, WEB + CLIENT)
    serving = serve(str(path.parent), *args, metrics=metrics)
    eventually(lambda: running(stacks, f"{p}-web-1") and running(stacks, f"{p}-client-1"), 60, "the stack is up")
    # up starts the supervisor without waiting for it: it may still be starting
    eventually(lambda: supervisor_pid(stacks.root, p) is not None, what="its supervisor runs")
    return serving, p, path


def is_up(stacks: Stacks, project: str) -> bool:
    with StateStore(stacks.root) as store:
        return store.stack(project) is not None


# -- applying files --------------------------------------------------------------------------


def test_a_served_file_comes_up_and_an_edit_recreates_only_the_changed_service(stacks: Stacks, serve: Serve) -> None:
    serving, p, path = up_from_serve(stacks, serve)
    web, client = pid_of(stacks, f"{p}-web-1"), pid_of(stacks, f"{p}-client-1")
    stack_file(path, p, WEB + "    environment: {COLOUR: blue}\n" + CLIENT)
    eventually(lambda: recreated(stacks, f"{p}-web-1", web), 60, "web recreated")
    assert pid_of(stacks, f"{p}-client-1") == client
    assert stacks.run(f"{p}-web-1", "echo $COLOUR") == (0, "blue\n")
    eventually(lambda: serving.stack(p)["last_apply"]["actions"].get(f"{p}-web-1") == "recreate", what="reported")
    assert f"{p}-web-1 recreated" in serving.output()


def test_a_broken_file_is_reported_and_its_running_stack_left_as_it_is(stacks: Stacks, serve: Serve) -> None:
    serving, p, path = up_from_serve(stacks, serve)
    web = pid_of(stacks, f"{p}-web-1")
    path.write_text(f"name: {p}\n" + BROKEN.lstrip("\n"))
    eventually(lambda: "imagee" in serving.output(), what="the problem is in serve's log")
    assert f"{path}:4:5: services.web.imagee: unknown key" in serving.output()
    last = serving.stack(p)["last_apply"]
    assert last["result"] == "failed" and any("imagee" in problem for problem in last["problems"])
    time.sleep(0.5)
    assert pid_of(stacks, f"{p}-web-1") == web and running(stacks, f"{p}-client-1") and is_up(stacks, p)
    assert serving.process.poll() is None  # and it goes on serving


def test_a_removed_file_brings_its_stack_down(stacks: Stacks, serve: Serve) -> None:
    serving, p, path = up_from_serve(stacks, serve)
    supervisor = supervisor_pid(stacks.root, p)
    assert supervisor is not None
    path.unlink()
    eventually(lambda: not is_up(stacks, p) and not stacks.runtime.ids(), 60, "the stack is down")
    eventually(lambda: supervisor_pid(stacks.root, p) is None, what="its supervisor ended")
    eventually(lambda: f"{p}: its file {path} is gone: brought down" in serving.output(), what="reported")


def test_with_keep_removed_a_removed_file_leaves_its_stack_running(stacks: Stacks, serve: Serve) -> None:
    serving, p, path = up_from_serve(stacks, serve, "--keep-removed")
    path.unlink()
    eventually(lambda: "keeps running (--keep-removed)" in serving.output(), what="reported as kept")
    assert is_up(stacks, p) and running(stacks, f"{p}-web-1") and running(stacks, f"{p}-client-1")


def test_projects_are_named_by_name_else_by_file_else_by_subdirectory(stacks: Stacks, serve: Serve) -> None:
    named, by_file, by_directory = stacks.name(), stacks.name(), stacks.name()
    directory = served_dir(stacks)
    stack_file(directory / "a.yml", named, CLIENT)
    stack_file(directory / f"{by_file}.yaml", None, CLIENT)
    stack_file(directory / by_directory / "compose.yaml", None, CLIENT)
    (directory / "notes.txt").write_text("not a stack file")
    serve(str(directory))
    for project in (named, by_file, by_directory):
        eventually(lambda project=project: running(stacks, f"{project}-client-1"), 60, project)


def test_without_a_directory_it_applies_changes_to_the_stacks_up_on_this_host(stacks: Stacks, serve: Serve) -> None:
    stack = stacks.load("services:" + WEB + CLIENT)
    p = stack.project.name
    stacks.up(stack)
    web, client = pid_of(stacks, f"{p}-web-1"), pid_of(stacks, f"{p}-client-1")
    serving = serve()
    time.sleep(1)
    assert pid_of(stacks, f"{p}-web-1") == web  # unchanged since `up`: nothing applied
    eventually(lambda: serving.stack(p)["up"], what="the stack is served")
    stacks.load("services:" + WEB + "    environment: {COLOUR: red}\n" + CLIENT, project=p)
    eventually(lambda: recreated(stacks, f"{p}-web-1", web), 60, "web recreated")
    assert pid_of(stacks, f"{p}-client-1") == client
    assert stacks.run(f"{p}-web-1", "echo $COLOUR") == (0, "red\n")


# -- supervisors -----------------------------------------------------------------------------


def test_a_killed_supervisor_is_started_again(stacks: Stacks, serve: Serve) -> None:
    serving, p, _ = up_from_serve(stacks, serve)
    first = supervisor_pid(stacks.root, p)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    eventually(lambda: supervisor_pid(stacks.root, p) not in (None, first), 30, "a new supervisor")
    message = f"{p}: its supervisor was not running: started it"
    eventually(lambda: message in serving.output(), what="reported")  # once it has started
    eventually(lambda: serving.stack(p)["supervisor_starts"] >= 1, what="counted")


# -- the service itself ----------------------------------------------------------------------


def test_the_socket_answers_with_each_stacks_containers_and_last_apply(stacks: Stacks, serve: Serve) -> None:
    serving, p, path = up_from_serve(stacks, serve)
    assert stat.S_IMODE(serving.socket.stat().st_mode) == 0o600
    eventually(lambda: serving.stack(p)["last_apply"] is not None, what="applied")
    answer = serving.stack(p)
    assert answer["up"] and answer["source"] == str(path) and answer["supervisor"] == supervisor_pid(stacks.root, p)
    assert answer["services"]["web"] == {"desired": 1, "running": 1, "healthy": 0, "unhealthy": 0}
    assert {c["name"]: c["status"] for c in answer["containers"]} == {f"{p}-web-1": "running", f"{p}-client-1": "running"}
    assert answer["last_apply"]["result"] == "ok" and answer["applies"] == {"ok": 1, "failed": 0}
    about = serving.ask({"get": "serve"})
    assert about["directory"] == str(path.parent) and about["pid"] == serving.process.pid
    assert "error" in serving.ask({"get": "everything"})
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(serving.socket))
        raw.sendall(b"not json\n")
        assert b"not JSON" in raw.recv(4096)


def test_metrics_count_containers_applies_and_heals_on_loopback(stacks: Stacks, serve: Serve) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.iproute import host_iproute, link_index

    serving, p, path = up_from_serve(stacks, serve, metrics=True)

    def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(serving.metrics()) for s in family.samples}  # fmt: skip

    def value(name: str, **labels: str) -> float | None:
        return samples().get((name, frozenset({"project": p, **labels}.items())))

    eventually(lambda: value("composer_applies_total", result="ok") == 1, what="the apply counted")
    from composer import __version__

    assert samples()[("composer_info", frozenset({("version", __version__)}))] == 1
    assert value("composer_stack_up") == 1 and value("composer_stack_last_apply_ok") == 1
    for service in ("web", "client"):
        assert value("composer_service_desired_replicas", service=service) == 1
        assert value("composer_service_running_containers", service=service) == 1
        assert value("composer_service_unhealthy_containers", service=service) == 0
    assert value("composer_applies_total", result="failed") == 0
    assert value("composer_supervisor_starts_total") is not None
    with StateStore(stacks.root) as store:
        [network] = store.networks(p)
    with host_iproute() as ipr:
        ipr.link("del", index=link_index(ipr, network.bridge))
    eventually(lambda: value("composer_heals_total", kind="bridge") == 1, 30, "the heal counted")
    path.write_text(f"name: {p}\n" + BROKEN.lstrip("\n"))
    eventually(lambda: value("composer_applies_total", result="failed") == 1, what="the failure counted")
    assert value("composer_stack_last_apply_ok") == 0


def test_sigterm_stops_serve_and_the_stacks_keep_running(stacks: Stacks, serve: Serve) -> None:
    serving, p, _ = up_from_serve(stacks, serve)
    assert serving.stop() == 0
    assert not serving.socket.exists()
    assert "SIGTERM: stopping (the stacks keep running)" in serving.output()
    assert running(stacks, f"{p}-web-1") and running(stacks, f"{p}-client-1")
    assert supervisor_pid(stacks.root, p) is not None


def test_a_second_serve_of_the_same_state_root_refuses_to_start(stacks: Stacks, serve: Serve) -> None:
    first = serve(str(served_dir(stacks)))
    second = serve(str(served_dir(stacks)), ready=False)
    assert second.process.wait(30) == 1
    assert f"composer serve already runs for {stacks.root} (pid {first.process.pid})" in second.output()
