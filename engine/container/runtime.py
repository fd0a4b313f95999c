"""Containers on this host, one directory each under `ROOT/containers`: create, start, stop,
kill, pause, remove, inspect. The kernel is the truth: a container runs when its recorded pid
exists with its recorded start time; how it ended is what its shim wrote.

Directory of a container: config.json, image-id, rootfs/ (upper, work, merged), stdout and
stderr (its raw output, appended by the container), state.json (pid, start time, shim pid,
start date, restarts by policy), exit (written by the shim: code, signal, OOM kills, date),
lock (held while acting on the container; it says `starting` until a start is recorded in
state.json); stopped (it was stopped or killed on purpose: no restart policy applies until it
is started again), restarting (its supervisor will restart it), health.json (its
healthcheck's record, as `docker inspect` shows State.Health).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypedDict, Unpack

from engine.cgroups.base import CgroupDriver, CgroupStats
from engine.clock import utc_now
from engine.container.config import ContainerConfig
from engine.container.health import Health
from engine.container.launch import SHIM, ContainerError, launch, start_time
from engine.container.spec import Mount, Spec
from engine.container.users import resolve_identity
from engine.files import discard_tree, make_spread_directory, write_atomic
from engine.linux import open_tree, pidfd_open, pidfd_send_signal
from engine.rootfs import Rootfs
from engine.userns import host_root

if TYPE_CHECKING:
    import subprocess

__all__ = ["Container", "ContainerError", "ContainerStats", "ExecOptions", "Runtime", "State"]

INIT_TARGET: Final = "/sbin/docker-init"  # where Docker puts its init, so tools find it
_TINI: Final = ("/usr/bin/tini-static", "/usr/bin/tini")
_DEFAULT_PATH: Final = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ID_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class State:
    """What a container is doing now: created, running, paused, exited, or restarting (exited,
    its supervisor about to start it again). `health`: "" without a healthcheck, else
    starting, healthy or unhealthy (always unhealthy once it ended, as Docker has it);
    `restart_count`: restarts by its policy since it was last started on purpose."""

    status: str
    pid: int = 0
    exit_code: int | None = None
    signal: int = 0
    oom_killed: bool = False
    started_at: str = ""
    finished_at: str = ""
    health: str = ""
    restart_count: int = 0


class ExecOptions(TypedDict, total=False):
    """How Runtime.exec runs a process: `env` (more variables), `user` and `working_dir`
    (instead of the container's), `stdin`, `stdout`, `stderr` (descriptors; default: the
    caller's), `tty` (stdin is a terminal, to become the process's controlling terminal)."""

    env: tuple[str, ...]
    user: str | None
    working_dir: str | None
    stdin: int | None
    stdout: int | None
    stderr: int | None
    tty: bool


@dataclass(frozen=True)
class ContainerStats:
    cgroup: CgroupStats
    cpu_percent: float


@dataclass(frozen=True)
class Container:
    id: str
    config: ContainerConfig
    state: State
    directory: Path


class Runtime:
    """The containers kept under `root` (the state root), with `cgroups` as the cgroup driver
    and `cgroup_parent` as the group every container's group is made in."""

    def __init__(self, root: Path, cgroups: CgroupDriver, cgroup_parent: str = "composer") -> None:
        self.root = root
        self.containers = root / "containers"
        make_spread_directory(self.containers)
        self.cgroups = cgroups
        self.cgroup_parent = cgroup_parent

    def _dir(self, container_id: str) -> Path:
        if not container_id or not set(container_id) <= _ID_CHARS or container_id[0] in ".-":
            raise ContainerError(f"invalid container name {container_id!r}")
        return self.containers / container_id

    def cgroup_of(self, container_id: str) -> str:
        """The container's cgroup (relative to the hierarchy's root)."""
        return self._cgroup(container_id)

    def _cgroup(self, container_id: str) -> str:
        """The container's cgroup: the one recorded when it was made (a runtime with another
        parent acts on it all the same)."""
        try:
            return (self._dir(container_id) / "cgroup").read_text().strip()
        except FileNotFoundError:
            return f"{self.cgroup_parent}/{container_id}"

    @contextlib.contextmanager
    def _locked(self, container_id: str) -> Iterator[Path]:
        directory = self._dir(container_id)
        if not (directory / "config.json").exists():
            raise ContainerError(f"no such container: {container_id}")
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield directory
        finally:
            os.close(fd)

    # -- observing ---------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return sorted(p.parent.name for p in self.containers.glob("*/config.json"))

    def get(self, container_id: str) -> Container:
        directory = self._dir(container_id)
        try:
            config = ContainerConfig.from_json((directory / "config.json").read_bytes())
        except FileNotFoundError:
            raise ContainerError(f"no such container: {container_id}") from None
        return Container(container_id, config, self._observe(container_id, directory), directory)

    def _observe(self, container_id: str, directory: Path) -> State:
        try:
            record = json.loads((directory / "state.json").read_bytes())
        except FileNotFoundError:
            return State("created")
        pid = int(record["pid"])
        restarts = int(record.get("restart_count", 0))
        health = self._health(directory)
        # The process first, then the record of its end: the shim writes the record before
        # it reaps the process, so a process found gone has its record (unless the shim died).
        alive = start_time(pid) == record["start_time"]
        ended = self._exit(directory)
        if ended is None and alive:
            status = "running"
            with contextlib.suppress(Exception):
                if self.cgroups.frozen(self._cgroup(container_id)):
                    status = "paused"
            shown = health.status if health else ""
            return State(status, pid, started_at=record["started_at"], health=shown,
                         restart_count=restarts)  # fmt: skip
        status = "restarting" if (directory / "restarting").exists() else "exited"
        code, sig, oom, finished = ended if ended is not None else (None, 0, 0, "")
        # ended is None: gone, and its shim too (killed, or the host rebooted)
        return State(status, 0, code, sig, oom > 0, record["started_at"], finished,
                     "unhealthy" if health else "", restarts)  # fmt: skip

    @staticmethod
    def _health(directory: Path) -> Health | None:
        try:
            return Health.from_json((directory / "health.json").read_bytes())
        except (FileNotFoundError, ValueError, KeyError):
            return None

    @staticmethod
    def _exit(directory: Path) -> tuple[int, int, int, str] | None:
        try:
            code, sig, oom, when = (directory / "exit").read_text().split()
        except (FileNotFoundError, ValueError):
            return None
        finished = datetime.datetime.fromtimestamp(int(when), datetime.UTC).isoformat()
        return int(code), int(sig), int(oom), finished.replace("+00:00", "Z")

    # -- lifecycle ---------------------------------------------------------------------------

    def create(self, config: ContainerConfig) -> Container:
        """Make the container's directory, root filesystem and cgroup; it does not run yet."""
        directory = self._dir(config.id)
        try:
            directory.mkdir()
        except FileExistsError:
            raise ContainerError(f"container {config.id} already exists") from None
        try:
            (directory / "image-id").write_text(config.image_id + "\n")
            parent = config.cgroup_parent.strip("/") or self.cgroup_parent
            (directory / "cgroup").write_text(f"{parent}/{config.id}\n")
            Rootfs(directory / "rootfs").mount(
                [Path(p) for p in config.layers],
                read_only=False,
                files={target: Path(source) for target, source in config.files},
                id_maps=config.id_maps,
            )
            merged = Rootfs(directory / "rootfs").merged
            for mount in config.mounts:
                if mount.seed:
                    if config.id_maps:  # a new volume belongs to the container's root
                        root_ids = (host_root(config.uid_map), host_root(config.gid_map))
                        os.chown(mount.source, *root_ids)
                    seed_volume(str(merged), mount.target, Path(mount.source))
            self.cgroups.create(self._cgroup(config.id), config.limits)
            write_atomic(directory / "config.json", config.to_json())
        except BaseException:
            Rootfs(directory / "rootfs").remove()
            with contextlib.suppress(Exception):
                self.cgroups.remove(self._cgroup(config.id))

            discard_tree(directory)
            raise
        return Container(config.id, config, State("created"), directory)

    def start(
        self,
        container_id: str,
        before_start: Callable[[int], None] | None = None,
        *,
        by_policy: bool = False,
    ) -> Container:
        """Run the container's process (again, after it exited: its writable layer is kept).
        `by_policy`: a restart by its restart policy, counted in its restart_count, and not
        done when it was stopped on purpose meanwhile (any other start clears that mark and
        the count)."""
        with self._locked(container_id) as directory:
            current = self._observe(container_id, directory)
            if current.status in ("running", "paused"):
                return self.get(container_id)
            if current.status == "created" and (directory / "lock").stat().st_size:
                self._end_unrecorded(container_id, directory)
            if by_policy and (directory / "stopped").exists():
                (directory / "restarting").unlink(missing_ok=True)
                return self.get(container_id)
            config = ContainerConfig.from_json((directory / "config.json").read_bytes())
            rootfs = Rootfs(directory / "rootfs")
            merged = rootfs.mount(
                [Path(p) for p in config.layers],
                files={target: Path(source) for target, source in config.files},
                id_maps=config.id_maps,
            )
            joined = self._joined_network(config)
            spec, handles = self._opened_sources(self._spec(config, str(merged), joined))
            # Marked until its start is recorded: the lock file holds the word (a file of its
            # own would be an inode made and freed per start, which a filesystem without a
            # journal makes every later new file search past for a minute).
            (directory / "lock").write_bytes(b"starting\n")
            (directory / "exit").unlink(missing_ok=True)
            (directory / "state.json").unlink(missing_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            if config.log_driver == "none":
                out = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
                err = os.dup(out)
            else:
                out = os.open(directory / "stdout", flags, 0o640)
                err = os.open(directory / "stderr", flags, 0o640)
            stdio = _Stdio(config.tty, config.stdin_open)
            try:
                started = launch(
                    spec,
                    exit_file=directory / "exit",
                    oom_file=self.cgroups.oom_file(self._cgroup(container_id)),
                    stdin=stdio.stdin,
                    stdout=stdio.stdout if config.tty else out,
                    stderr=stdio.stdout if config.tty else err,
                    before_start=before_start,
                    pass_fds=handles,
                    terminal=stdio.master,
                    hold=stdio.hold,
                    terminal_log=out,
                )
            finally:
                stdio.close()
                for fd in (out, err, *handles):
                    os.close(fd)
            record = {
                "pid": started.pid,
                "start_time": started.start_time,
                "shim_pid": started.shim_pid,
                "started_at": utc_now(),
                "restart_count": current.restart_count + 1 if by_policy else 0,
            }
            write_atomic(directory / "state.json", json.dumps(record).encode())
            os.truncate(directory / "lock", 0)
            (directory / "stopped").unlink(missing_ok=True)
            (directory / "restarting").unlink(missing_ok=True)
            if config.healthcheck is not None:
                health = self._health(directory) or Health()
                write_atomic(directory / "health.json", health.restarted().to_json())
            else:
                (directory / "health.json").unlink(missing_ok=True)
            return Container(container_id, config, self._observe(container_id, directory),
                             directory)  # fmt: skip

    def _end_unrecorded(self, container_id: str, directory: Path) -> None:
        """A start interrupted before it was recorded (its caller killed: the lock file still
        says `starting`) may have left the container's processes running: they end before it
        starts again, and their shim's exit record is awaited so that it cannot land on the
        new start."""
        name = self._cgroup(container_id)
        if not self.cgroups.exists(name) or not self.cgroups.pids(name):
            return
        self.cgroups.kill(name)
        deadline = time.monotonic() + 2
        while self.cgroups.pids(name) and time.monotonic() < deadline:
            time.sleep(0.005)
        while not (directory / "exit").exists() and time.monotonic() < deadline:
            time.sleep(0.005)

    def preload(self, config: ContainerConfig) -> None:
        """Load now what a start of `config` loads on its first use in this process (its
        seccomp filter), so that a later start, such as a restart timed from a crash, does
        not pay for it."""
        if config.seccomp:
            from engine.seccomp import default_filter

            default_filter(frozenset(config.capabilities), self.root / "cache")

    def _joined_network(self, config: ContainerConfig) -> str:
        """The network namespace the container joins, if any: a path, or that of the
        container named by "container:ID" as it runs now."""
        if config.network.startswith("/"):
            return config.network
        if not config.network.startswith("container:"):
            return ""
        target = config.network.partition(":")[2]
        state = self.get(target).state
        if state.status not in ("running", "paused"):
            raise ContainerError(f"{config.id} joins the network of {target}, which is not running")
        return f"/proc/{state.pid}/ns/net"

    def _spec(self, config: ContainerConfig, merged: str, joined: str = "") -> Spec:
        identity = resolve_identity(merged, config.user, config.group_add)
        env = list(config.env)
        names = {item.split("=", 1)[0] for item in env}
        if "PATH" not in names:
            env.insert(0, _DEFAULT_PATH)
        if "HOSTNAME" not in names and config.hostname:
            env.append(f"HOSTNAME={config.hostname}")
        if "HOME" not in names:
            env.append(f"HOME={identity.home or '/'}")
        namespaces = ["mnt", "pid", "uts", "ipc", "cgroup", "net"]
        if config.network == "host":
            namespaces.remove("net")
        if config.ipc_host:
            namespaces.remove("ipc")
        if config.pid_host:
            namespaces.remove("pid")
        if config.uts_host:
            namespaces.remove("uts")
        if config.cgroup_host:
            namespaces.remove("cgroup")
        if config.uid_map:
            namespaces.insert(0, "user")
        seccomp = b""
        if config.seccomp:
            from engine.seccomp import default_filter

            seccomp = default_filter(frozenset(config.capabilities), self.root / "cache")
        argv, mounts = config.argv, config.mounts
        if config.init:
            argv = (INIT_TARGET, "--", *argv)
            mounts = (Mount("bind", INIT_TARGET, _tini(), read_only=True, recursive=False), *mounts)
        return Spec(
            id=config.id,
            rootfs=merged,
            argv=argv,
            env=tuple(env),
            cwd=config.working_dir or "/",
            uid=identity.uid,
            gid=identity.gid,
            groups=identity.groups,
            hostname=config.hostname,
            domainname=config.domainname,
            namespaces=tuple(namespaces),
            join_net=joined,
            networks=config.networks if config.network == "none" else (),
            mounts=mounts,
            capabilities=config.capabilities,
            no_new_privileges=config.no_new_privileges,
            seccomp=seccomp,
            rlimits=config.rlimits,
            sysctls=config.sysctls,
            cgroup_files=tuple(str(p) for p in self.cgroups.join_files(self._cgroup(config.id))),
            read_only=config.read_only,
            shm_size=config.shm_size,
            tty=config.tty,
            oom_score_adj=config.oom_score_adj,
            uid_map=config.uid_map,
            gid_map=config.gid_map,
        )

    @staticmethod
    def _opened_sources(spec: Spec) -> tuple[Spec, tuple[int, ...]]:
        """Take a detached copy of every bind source now (open_tree) and hand the init the
        handles: a source replaced by a symlink while the container is set up cannot redirect
        the mount, and the copy can be attached in the container's mount namespace."""
        import dataclasses

        mounts, handles = [], []
        try:
            for mount in spec.mounts:
                if mount.kind != "bind" or mount.source.startswith("fd:"):
                    mounts.append(mount)
                    continue
                try:
                    fd = open_tree(mount.source, mount.recursive)
                except OSError as exc:
                    raise ContainerError(
                        f"bind mount source {mount.source}: {exc.strerror}"
                    ) from exc
                handles.append(fd)
                mounts.append(dataclasses.replace(mount, source=f"fd:{fd}"))
        except BaseException:
            for fd in handles:
                os.close(fd)
            raise
        return dataclasses.replace(spec, mounts=tuple(mounts)), tuple(handles)

    def _pidfd(self, container_id: str, directory: Path) -> int | None:
        """A pidfd on the running container's first process (never on a reused pid)."""
        try:
            record = json.loads((directory / "state.json").read_bytes())
        except FileNotFoundError:
            return None
        try:
            fd = pidfd_open(int(record["pid"]))
        except OSError:
            return None
        if start_time(int(record["pid"])) != record["start_time"]:
            os.close(fd)
            return None
        return fd

    def pidfd(self, container_id: str) -> int | None:
        """A pidfd on the container's first process while it runs (the caller closes it)."""
        return self._pidfd(container_id, self._dir(container_id))

    def kill(self, container_id: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the container's first process. SIGKILL or the container's stop signal
        stop it on purpose, as Docker's kill does: no restart policy applies until it is
        started again (another signal, such as SIGHUP to reload, leaves the policy on)."""
        with self._locked(container_id) as directory:
            config = ContainerConfig.from_json((directory / "config.json").read_bytes())
            if sig in (signal.SIGKILL, _signal_number(config.stop_signal)):
                self._stopped_on_purpose(directory)
            fd = self._pidfd(container_id, directory)
            if fd is None:
                raise ContainerError(f"container {container_id} is not running")
            try:
                pidfd_send_signal(fd, sig)
            except ProcessLookupError:
                pass  # it ended meanwhile
            finally:
                os.close(fd)

    def stop(self, container_id: str, timeout: float | None = None) -> Container:
        """Send the stop signal, then SIGKILL after the grace period; wait until it ended. It
        counts as stopped on purpose: no restart policy applies until it is started again."""
        with self._locked(container_id) as directory:
            self._stopped_on_purpose(directory)
            config = ContainerConfig.from_json((directory / "config.json").read_bytes())
            fd = self._pidfd(container_id, directory)
            if fd is not None:
                try:
                    if self._observe(container_id, directory).status == "paused":
                        self.cgroups.thaw(self._cgroup(container_id))
                    grace = config.stop_grace_period if timeout is None else timeout
                    with contextlib.suppress(ProcessLookupError):
                        pidfd_send_signal(fd, _signal_number(config.stop_signal))
                    if not select.select([fd], [], [], grace)[0]:
                        self._kill_all(container_id, config, fd)
                finally:
                    os.close(fd)
                self._await_exit_record(directory)
        return self.get(container_id)

    def _kill_all(self, container_id: str, config: ContainerConfig, fd: int) -> None:
        """SIGKILL to every process of the container; return once its first process ended.
        With a PID namespace of its own, the kernel ends all in it with its first process:
        the cgroup is frozen and walked only for what is left (a process that joined it from
        outside the namespace, such as an exec's helper for a moment)."""
        cgroup = self._cgroup(container_id)
        if config.pid_host:
            self.cgroups.kill(cgroup)
        with contextlib.suppress(ProcessLookupError):
            pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], 10)
        if not config.pid_host and self.cgroups.pids(cgroup):
            self.cgroups.kill(cgroup)

    @staticmethod
    def _stopped_on_purpose(directory: Path) -> None:
        """Marked before any signal is sent, so that whoever sees the process end knows."""
        (directory / "stopped").touch()
        (directory / "restarting").unlink(missing_ok=True)

    def stopped_on_purpose(self, container_id: str) -> bool:
        """Whether the container was stopped or killed on purpose since it last started."""
        return (self._dir(container_id) / "stopped").exists()

    def mark_restarting(self, container_id: str) -> None:
        """Record that the container's supervisor will restart it (its status: restarting,
        until it starts or is stopped on purpose)."""
        with self._locked(container_id) as directory:
            if not (directory / "stopped").exists():
                (directory / "restarting").touch()

    def health(self, container_id: str) -> Health | None:
        """The record of the container's healthcheck (None: it has none, or never started)."""
        return self._health(self._dir(container_id))

    def record_health(self, container_id: str, health: Health, started_at: str) -> bool:
        """Record `health` for the run of the container that began at `started_at`; False
        (nothing written) when another run began, or the container is being acted on (a
        start, stop or kill holds it: the result would be stale)."""
        directory = self._dir(container_id)
        try:
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            return False  # removed
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            state = self._observe(container_id, directory)
            if state.started_at != started_at or state.status not in ("running", "paused"):
                return False
            write_atomic(directory / "health.json", health.to_json())
            return True
        finally:
            os.close(fd)

    def _await_exit_record(self, directory: Path, timeout: float = 5.0) -> None:
        """The shim writes the exit record just after the process ends, then exits: wait for
        the record, and reap the shim when it is our child."""
        deadline = time.monotonic() + timeout
        while not (directory / "exit").exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        try:
            shim = int(json.loads((directory / "state.json").read_bytes())["shim_pid"])
        except (FileNotFoundError, ValueError, KeyError):
            return
        reap_by = time.monotonic() + 1.0
        while time.monotonic() < reap_by:
            try:
                if os.waitpid(shim, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return  # not ours (another process started it): its parent reaps it
            time.sleep(0.002)

    def wait(self, container_id: str, timeout: float | None = None) -> State:
        """Block until the container's process ends (or `timeout`); its state then."""
        directory = self._dir(container_id)
        fd = self._pidfd(container_id, directory)
        if fd is not None:
            try:
                select.select([fd], [], [], timeout)
            finally:
                os.close(fd)
        if (directory / "state.json").exists() and self._pidfd_gone(container_id, directory):
            self._await_exit_record(directory)
        return self._observe(container_id, directory)

    def restart(self, container_id: str, timeout: float | None = None) -> Container:
        """Stop (stop signal, then SIGKILL after the grace period) and start again, keeping the
        container's writable layer."""
        self.stop(container_id, timeout)
        return self.start(container_id)

    def _pidfd_gone(self, container_id: str, directory: Path) -> bool:
        fd = self._pidfd(container_id, directory)
        if fd is None:
            return True
        try:
            return bool(select.select([fd], [], [], 0)[0])
        finally:
            os.close(fd)

    def exec(self, container_id: str, argv: tuple[str, ...], **options: Unpack[ExecOptions]) -> int:
        """Run `argv` inside the running container (its namespaces, cgroup, user,
        capabilities and seccomp filter) as `options` say; its exit code."""
        return self.exec_process(container_id, argv, **options).wait()

    def exec_process(
        self,
        container_id: str,
        argv: tuple[str, ...],
        *,
        own_group: bool = False,
        **options: Unpack[ExecOptions],
    ) -> subprocess.Popen[bytes]:
        """As exec, but return at once: the process that runs `argv` in the container (its
        exit status is the one of `argv`). `own_group`: in a process group of its own (the
        group's id is its pid), so that killing the group ends `argv` too."""
        import subprocess

        document = self._exec_spec(
            container_id, argv, options.get("env", ()), options.get("user"),
            options.get("working_dir"), options.get("tty", False),
        )  # fmt: skip
        read, write = os.pipe()
        try:
            process = subprocess.Popen(
                [str(SHIM), "--exec", str(read)],
                pass_fds=(read,),
                stdin=options.get("stdin"),
                stdout=options.get("stdout"),
                stderr=options.get("stderr"),
                process_group=0 if own_group else None,
            )
        finally:
            os.close(read)
        with os.fdopen(write, "wb") as f:
            f.write(document)
        return process

    def _exec_spec(
        self,
        container_id: str,
        argv: tuple[str, ...],
        env: tuple[str, ...],
        user: str | None,
        working_dir: str | None,
        tty: bool = False,
    ) -> bytes:
        directory = self._dir(container_id)
        container = self.get(container_id)
        if container.state.status != "running":
            raise ContainerError(f"container {container_id} is not running")
        config = container.config
        merged = str(Rootfs(directory / "rootfs").merged)
        spec = self._spec(config, merged)
        if user is not None:
            identity = resolve_identity(merged, user, config.group_add)
            spec_uid, spec_gid, spec_groups = identity.uid, identity.gid, identity.groups
        else:
            spec_uid, spec_gid, spec_groups = spec.uid, spec.gid, spec.groups
        merged_env = dict(i.partition("=")[::2] for i in spec.env)
        merged_env.update(i.partition("=")[::2] for i in env)
        process = dataclasses.replace(
            spec,
            argv=argv,
            env=tuple(f"{k}={v}" for k, v in merged_env.items()),
            cwd=working_dir or config.working_dir or "/",
            uid=spec_uid,
            gid=spec_gid,
            groups=tuple(spec_groups),
            tty=tty,
        )
        return process.to_init() + f"pid\0{container.state.pid}\0".encode()

    def stats(self, container_id: str, interval: float = 0.1) -> ContainerStats:
        """Resource use now: the cgroup's counters, and CPU use as a percentage of one CPU over
        `interval` seconds (as `docker stats` shows it)."""
        name = self._cgroup(container_id)
        first = self.cgroups.stats(name)
        started = time.monotonic()
        time.sleep(interval)
        second = self.cgroups.stats(name)
        elapsed = time.monotonic() - started
        percent = (second.cpu_usage_ns - first.cpu_usage_ns) / (elapsed * 1e9) * 100
        return ContainerStats(second, round(max(percent, 0.0), 1))

    def pause(self, container_id: str) -> None:
        with self._locked(container_id):
            self.cgroups.freeze(self._cgroup(container_id))

    def unpause(self, container_id: str) -> None:
        with self._locked(container_id):
            self.cgroups.thaw(self._cgroup(container_id))

    def remove(self, container_id: str, force: bool = False) -> None:
        """Delete the container: its writable layer, cgroup and directory."""
        directory = self._dir(container_id)
        if not directory.exists():
            return
        state = self._observe(container_id, directory)
        if state.status in ("running", "paused"):
            if not force:
                raise ContainerError(
                    f"container {container_id} is running: stop it first, or force the removal"
                )
            self.stop(container_id, timeout=0)
        elif (directory / "state.json").exists():
            self._await_exit_record(directory, timeout=0)  # reap its shim if it is ours
        Rootfs(directory / "rootfs").remove()
        self.cgroups.remove(self._cgroup(container_id))

        discard_tree(directory)


class _Stdio:
    """A container's stdin and, for `tty`, its terminal: the master end and the stdin pipe's
    write end go to the shim, which keeps them for the container's life."""

    def __init__(self, tty: bool, stdin_open: bool) -> None:
        self.master = self.hold = -1
        self.stdin: int | None = None
        self.stdout = -1
        if tty:
            import fcntl
            import struct
            import termios

            self.master, slave = os.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            self.stdin = self.stdout = slave
        elif stdin_open:
            read, self.hold = os.pipe()
            self.stdin = read

    def close(self) -> None:
        for fd in {self.master, self.hold, self.stdin if self.stdin is not None else -1}:
            if fd >= 0:
                os.close(fd)


def _tini() -> str:
    """The host's tini (Debian's tini package), the reaper Docker runs for --init."""
    for path in _TINI:
        if os.access(path, os.X_OK):
            return path
    raise ContainerError("init: true needs tini (apt install tini); it is not installed")


def seed_volume(rootfs: str, target: str, volume: Path) -> None:
    """Copy what the image holds at `target` into the new, empty volume directory, as Docker
    does on first use: files, directories and symlinks with their owners, modes and times.
    `target` is resolved inside the root filesystem; nothing outside it is read."""
    import shutil
    import stat as st

    from engine.linux import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = openat2(
            root,
            target.strip("/"),
            os.O_PATH | os.O_DIRECTORY,
            0,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        )
    except OSError:
        return  # nothing there in the image: the volume starts empty
    finally:
        os.close(root)
    try:
        source = f"/proc/self/fd/{fd}"
        info = os.stat(source)
        os.chown(volume, info.st_uid, info.st_gid)
        os.chmod(volume, st.S_IMODE(info.st_mode))
        for dirpath, dirs, files in os.walk(source):  # os.walk does not follow symlinks
            rel = os.path.relpath(dirpath, source)
            for name in [*dirs, *files]:
                src = os.path.join(dirpath, name)
                dst = volume / rel / name
                meta = os.lstat(src)
                if st.S_ISLNK(meta.st_mode):
                    os.symlink(os.readlink(src), dst)
                elif st.S_ISDIR(meta.st_mode):
                    dst.mkdir()
                elif st.S_ISREG(meta.st_mode):
                    shutil.copyfile(src, dst, follow_symlinks=False)
                else:
                    continue  # devices and sockets are not copied
                os.lchown(dst, meta.st_uid, meta.st_gid)
                if not st.S_ISLNK(meta.st_mode):
                    shutil.copystat(src, dst, follow_symlinks=False)
    finally:
        os.close(fd)


def _signal_number(name: str) -> int:
    text = name.upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise ContainerError(f"unknown signal {name!r}") from None
