"""The `composer` program hands its command to the state root's fork server, which runs it in a
fork with the program's arguments, environment, directory, streams and cgroups; the program
relays signals and ends as the command did, and a killed program takes its command along.
Without a server (or with COMPOSER_FORKSERVER=0) the program runs the command itself."""

from __future__ import annotations

import contextlib
import marshal
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cgroups.membership import _directory, membership
from engine.daemon import running_pid
from tests.cli.conftest import Cli, until

PROGRAM = str(Path(sys.executable).with_name("composer"))


class Root:
    """A state root for the program, whose fork server (and its commands) end with the test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "run").mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE", "NO_COLOR"))}
        return {**env, "COMPOSER_ROOT": str(self.path)}

    def server(self) -> int | None:
        return running_pid(self.path / "run" / "cli.lock")

    def started(self) -> int:
        """The pid of the root's server, started by a first command if none runs yet."""
        if self.server() is None:
            subprocess.run([PROGRAM, "version"], env=self.env, capture_output=True, check=True)
        assert until(lambda: self.server() is not None and (self.path / "run" / "cli.sock").exists())
        pid = self.server()
        assert pid is not None
        return pid

    def spawn(self, *args: str, **options: object) -> subprocess.Popen[str]:
        options = {"env": self.env, **options}
        return subprocess.Popen([PROGRAM, *args], text=True,  # type: ignore[call-overload]
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)  # fmt: skip

    def commands(self) -> list[int]:
        """The commands the server runs now (its children)."""
        server = self.server()
        if server is None:
            return []
        with contextlib.suppress(FileNotFoundError):
            return [int(p) for p in Path(f"/proc/{server}/task/{server}/children").read_text().split()]
        return []

    def served(self) -> int:
        """The pid of the one command the server runs (waited for)."""
        assert until(lambda: len(self.commands()) == 1)
        return self.commands()[0]

    def end(self) -> None:
        pid = self.server()
        if pid is not None:  # its commands end with it (their parent-death signal)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Root]:
    made = Root(tmp_path / "state")
    yield made
    made.end()


@pytest.fixture
def stack_root(cli: Cli) -> Iterator[Root]:
    """The root of the `cli` fixture's stacks (its teardown ends the server as well)."""
    made = Root(cli.stacks.root)
    yield made
    made.end()


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_the_first_command_runs_itself_and_starts_a_server_for_the_next(root: Root) -> None:
    assert root.server() is None
    done = subprocess.run([PROGRAM, "version"], env=root.env, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "composer version 0.1.0\n")
    assert until(lambda: root.server() is not None)


def test_no_server_is_started_with_forkserver_0(root: Root) -> None:
    env = {**root.env, "COMPOSER_FORKSERVER": "0"}
    done = subprocess.run([PROGRAM, "version"], env=env, capture_output=True, text=True)
    assert done.returncode == 0
    time.sleep(0.5)
    assert root.server() is None and not (root.path / "run" / "cli.starting").exists()


def test_a_served_command_has_the_programs_output_errors_and_exit_code(root: Root, tmp_path: Path) -> None:
    root.started()
    (tmp_path / "bad.yaml").write_text("services:\n  web:\n    image: busybox\n    ports: 80\n")
    results = []
    for mode in ("1", "0"):
        env = {**root.env, "COMPOSER_FORKSERVER": mode}
        done = subprocess.run([PROGRAM, "-f", "bad.yaml", "config"], env=env, cwd=tmp_path,
                              capture_output=True, text=True)  # fmt: skip
        results.append((done.returncode, done.stdout, done.stderr))
    assert results[0] == results[1]
    assert results[0][0] == 1 and "bad.yaml:4:" in results[0][2] and "services.web.ports" in results[0][2]


@pytest.mark.kernel
def test_a_served_command_has_the_programs_arguments_environment_directory_and_streams(
    cli: Cli, stack_root: Root
) -> None:
    stack = cli.up("""
    services:
      shell:
        image: busybox:test
        command: ["sleep", "300"]
        environment: {GREETING: "${GREETING:-unset}"}
        volumes: ["./signal:/signal"]
    """)
    stack_root.started()
    directory = stack.files[0].parent
    (directory / "signal").mkdir(exist_ok=True)
    waits = "until [ -e /signal/go ]; do sleep 0.05; done; echo \"$GREETING\"; exit 5"
    client = stack_root.spawn("-f", "compose.yaml", "run", "--rm", "shell", "sh", "-c", waits,
                              cwd=directory, env={**stack_root.env, "GREETING": "hello"})  # fmt: skip
    command = stack_root.served()
    assert until(lambda: os.readlink(f"/proc/{command}/cwd") == str(directory))  # once it took it
    (directory / "signal" / "go").touch()
    out, err = client.communicate(timeout=30)
    assert (client.returncode, out) == (5, "hello\n"), err
    # Its standard input too.
    reads = "read line; echo \"got $line\"; exit 6"
    client = stack_root.spawn("-f", str(stack.files[0]), "exec", "-T", "shell", "sh", "-c", reads,
                              stdin=subprocess.PIPE)  # fmt: skip
    command = stack_root.served()
    out, err = client.communicate("world\n", timeout=30)
    assert (client.returncode, out) == (6, "got world\n"), err


def following(cli: Cli, root: Root, **options: object) -> tuple[subprocess.Popen[str], int]:
    """`composer logs -f` of a running stack, served: the program and its command's pid."""
    stack = cli.up("services:\n  web:\n    image: busybox:test\n    command: [sleep, '300']\n")
    root.started()
    follow = root.spawn("-f", str(stack.files[0]), "logs", "-f", **options)
    return follow, root.served()


@pytest.mark.kernel
def test_interrupting_the_program_interrupts_its_command(cli: Cli, stack_root: Root) -> None:
    follow, command = following(cli, stack_root)
    follow.send_signal(signal.SIGINT)
    _, err = follow.communicate(timeout=10)
    assert follow.returncode == 130, err  # as when it runs in the program
    assert until(lambda: gone(command))


@pytest.mark.kernel
def test_killing_the_program_kills_its_command(cli: Cli, stack_root: Root) -> None:
    follow, command = following(cli, stack_root)
    follow.kill()
    follow.communicate()
    assert until(lambda: gone(command))
    assert stack_root.server() is not None  # and serves the next
    assert subprocess.run([PROGRAM, "version"], env=stack_root.env, capture_output=True).returncode == 0


@pytest.mark.kernel
def test_a_program_in_other_namespaces_runs_its_command_itself(cli: Cli, stack_root: Root) -> None:
    stack = cli.up("services:\n  web:\n    image: busybox:test\n    command: [sleep, '300']\n")
    stack_root.started()
    # `ip netns exec`, a container, a unit with fewer privileges: not the server's
    follow = subprocess.Popen(["unshare", "--net", PROGRAM, "-f", str(stack.files[0]), "logs", "-f"],
                              env=stack_root.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(1.5)
        assert follow.poll() is None and stack_root.commands() == []
    finally:
        follow.kill()
        follow.communicate()


@pytest.mark.kernel
def test_a_command_ends_with_its_server(cli: Cli, stack_root: Root) -> None:
    follow, command = following(cli, stack_root)
    server = stack_root.server()
    assert server is not None
    os.kill(server, signal.SIGKILL)
    _, err = follow.communicate(timeout=10)
    assert follow.returncode == 1 and "fork server ended" in err
    assert until(lambda: gone(command))


@pytest.mark.kernel
def test_a_served_command_is_in_the_programs_cgroups(cli: Cli, stack_root: Root) -> None:
    name = f"composer-test-{secrets.token_hex(4)}"
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        group, key = Path(f"/sys/fs/cgroup/{name}"), ""
    else:
        group, key = Path(f"/sys/fs/cgroup/pids/{name}"), "pids"
    group.mkdir()
    follow = None
    try:
        def enter() -> None:  # in the program's process, before it runs
            (group / "cgroup.procs").write_text("0")

        follow, command = following(cli, stack_root, preexec_fn=enter)
        assert membership(follow.pid)[key] == f"/{group.name}"
        # The command joins before it runs the CLI (a moment after the fork).
        assert until(lambda: membership(command)[key] == f"/{group.name}")
    finally:
        if follow is not None:
            follow.kill()
            follow.communicate()
        until(lambda: not (group / "cgroup.procs").read_text().strip())
        group.rmdir()


@pytest.mark.kernel
def test_a_served_up_has_its_stacks_supervisor_forked_by_the_server(cli: Cli, stack_root: Root) -> None:
    stack = cli.stacks.load("services:\n  web:\n    image: busybox:test\n    command: [sleep, '300']\n"
                            "    restart: always\n")  # fmt: skip
    server = stack_root.started()
    done = subprocess.run([PROGRAM, "-f", str(stack.files[0]), "up", "-d", "--progress", "quiet"],
                          env=stack_root.env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lock = stack_root.path / "run" / f"{stack.project.name}.lock"
    assert until(lambda: running_pid(lock) is not None)  # `up -d` does not wait for it
    supervisor = running_pid(lock)
    assert supervisor is not None
    # A fork of the server (its program, not a new interpreter's), in a session of its own
    # and not its child: it outlives the server.
    assert Path(f"/proc/{supervisor}/cmdline").read_bytes() == Path(f"/proc/{server}/cmdline").read_bytes()
    assert supervisor not in stack_root.commands()
    assert os.getsid(supervisor) not in (os.getsid(server), os.getsid(0))
    # and it supervises: a killed container is restarted
    name = f"{stack.project.name}-web-1"
    first = cli.stacks.runtime.get(name).state.pid
    os.kill(first, signal.SIGKILL)
    assert until(lambda: cli.stacks.runtime.get(name).state.pid not in (0, first))


def test_a_server_leaves_when_other_code_asks_it(root: Root) -> None:
    root.started()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    connection.connect(str(root.path / "run" / "cli.sock"))
    request = {"protocol": 1, "code": "other code", "argv": ["version"], "environ": {},
               "umask": 0o022, "streams": [None, None, None]}  # fmt: skip
    socket.send_fds(connection, [marshal.dumps(request)], [0, 1, 2, 0])
    assert connection.recv(64) == b"stale"
    connection.close()
    assert until(lambda: root.server() is None)
    # The next command runs itself and starts a server of its own code.
    done = subprocess.run([PROGRAM, "version"], env=root.env, capture_output=True, text=True)
    assert done.returncode == 0
    assert until(lambda: root.server() is not None)


def test_a_server_asked_for_a_daemon_by_other_code_stays(root: Root) -> None:
    server = root.started()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    connection.connect(str(root.path / "run" / "cli.sock"))
    request = {"protocol": 1, "code": "an older server's", "daemon": ["-m", "x"], "environ": {}}
    socket.send_fds(connection, [marshal.dumps(request)], [2])
    assert connection.recv(64) == b"stale"  # the asker starts its daemon itself
    connection.close()
    time.sleep(0.2)
    assert root.server() == server


def test_cgroup_paths_follow_what_is_mounted_where() -> None:
    mounts = [(frozenset({"rw", "cpu", "cpuacct"}), "/sys/fs/cgroup/cpu,cpuacct", "/"),
              (frozenset({"rw", "name=systemd"}), "/sys/fs/cgroup/systemd", "/user.slice"),
              (frozenset({""}), "/sys/fs/cgroup/unified", "/")]  # fmt: skip
    assert _directory(mounts, "cpu,cpuacct", "/a/b") == "/sys/fs/cgroup/cpu,cpuacct/a/b"
    assert _directory(mounts, "cpu", "/a") == "/sys/fs/cgroup/cpu,cpuacct/a"
    assert _directory(mounts, "name=systemd", "/user.slice/u1") == "/sys/fs/cgroup/systemd/u1"
    assert _directory(mounts, "name=systemd", "/system.slice") is None  # not visible here
    assert _directory(mounts, "", "/x") == "/sys/fs/cgroup/unified/x"
    assert _directory(mounts, "memory", "/x") is None


def test_the_server_loads_every_module_a_command_could_need_before_it_forks() -> None:
    script = (
        "import sys; from composer.cli.forkserver import preload; preload();"
        "print('\\n'.join(sys.modules))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True,
            cwd=Path(__file__).parents[2],
        ).stdout.split()
    )  # fmt: skip
    repo = Path(__file__).parents[2]
    expected = {
        ".".join(path.relative_to(repo).with_suffix("").parts).removesuffix(".__init__")
        for package in ("composer", "engine")
        for path in (repo / package).rglob("*.py")
        if path.name not in ("__main__.py", "forkserver.py")
    }
    assert expected - loaded == set()
    assert "anyio._backends._asyncio" in loaded  # imported by anyio when a loop first runs
