"""A stack's reconciler: it runs inside the stack's supervisor (`python -m composer.reconciler
STATE_ROOT PROJECT`, started by `up`) and keeps what runs equal to what `up` made — the last
applied stack, as the state store records it — healing drift:

- a bridge deleted → made again with the same subnet, every container re-attached with its
  address;
- a container's veth deleted → plumbed again;
- a hosts file edited → rewritten (in place: the container's bind mount keeps its inode);
- a container whose directory, cgroup or root filesystem vanished → made again from its
  recorded configuration and started;
- a container that joins another's network (network_mode service:X) whose X got a new
  network namespace (X restarted or was recreated) → restarted into the new one.

Level-triggered, as a Kubernetes controller: events (netlink link changes, inotify on the
hosts files, containers' exits) only say "look now"; every look compares the whole stack with
the kernel, and a slow periodic look is the backstop for a missed event. Restart policies and
healthchecks are the supervisor's (engine/supervisor.py); each heal is an event in the state
store and the supervisor's events file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from composer.state import StateStore

if TYPE_CHECKING:
    from engine.container.runtime import Runtime
    from engine.supervisor import Supervisor

__all__ = ["Reconciler", "main"]

_BACKSTOP: Final = 30.0  # seconds between looks when nothing happens
_HOSTS_BACKSTOP: Final = 300.0  # seconds between comparisons of every hosts file, unprompted
_RTMGRP_LINK: Final = 1
_RTM_DELLINK: Final = 17


class Reconciler:
    """The supervisor's watcher for one stack (see engine.supervisor.Watcher)."""

    def __init__(self, root: Path, project: str, runtime: Runtime) -> None:
        from inotify_simple import INotify  # type: ignore[import-untyped]

        self.root = root
        self.project = project
        self.runtime = runtime
        self.supervisor: Supervisor | None = None
        self._links = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                    socket.NETLINK_ROUTE)  # fmt: skip
        self._links.bind((0, _RTMGRP_LINK))
        self._inotify = INotify(nonblocking=True)
        self._watched: dict[str, int] = {}  # hosts file → watch descriptor
        self._ours: frozenset[bytes] = frozenset()  # our links' names, as netlink spells them
        self._hosts_dirty = True  # a hosts file changed (inotify), or containers did
        self._hosts_seen = 0.0  # when the hosts files were last compared
        self._dirty = True
        self._last = 0.0
        self._up = (True, 0.0)  # whether the stack is up, and when that was read

    # -- Watcher -----------------------------------------------------------------------------

    def fds(self) -> list[int]:
        return [self._links.fileno(), self._inotify.fileno()]

    def ready(self, fd: int) -> None:
        if fd != self._links.fileno():
            self._inotify.read(timeout=0)
            self._dirty = self._hosts_dirty = True
            return
        try:
            while data := self._links.recv(65536):
                if any(self._concerns(m) for m in _messages(data)):
                    self._dirty = True
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self._dirty = True  # the kernel dropped messages (a burst of link changes): look

    def _concerns(self, message: bytes) -> bool:
        """Whether a netlink message is the loss of one of our links: a deleted link (a link
        changing — carrier, IPv6 router solicitations for seconds after it is made — is not
        drift; another stack's or the host's links are none of our business)."""
        kind = int.from_bytes(message[4:6], sys.byteorder)
        return kind == _RTM_DELLINK and (not self._ours or any(n in message for n in self._ours))

    def turn(self, ended: list[str]) -> None:
        if ended:
            self._dirty = self._hosts_dirty = True
        if not self._dirty and time.monotonic() - self._last < _BACKSTOP:
            return
        if self.look():
            self._dirty = False
            self._last = time.monotonic()

    def busy(self) -> bool:
        """The supervisor stays as long as the stack is up (until `down`)."""
        if time.monotonic() - self._up[1] > _BACKSTOP:
            with StateStore(self.root) as store:
                self._up = (store.stack(self.project) is not None, time.monotonic())
        return self._up[0]

    # -- the look ----------------------------------------------------------------------------

    def look(self) -> bool:
        """Compare the stack with the kernel and heal what differs; False when a composer
        command holds the stack (it is changing it: look again later)."""
        from composer.locks import stack_lock

        with stack_lock(self.root, self.project, wait=False) as held:
            if not held:
                return False
            with StateStore(self.root) as store:
                if store.stack(self.project) is None:
                    return True  # brought down
                self._heal(store)
            return True

    def _heal(self, store: StateStore) -> None:
        from engine.errors import EngineError

        healed_bridges = self._heal_bridges(store)
        records = store.containers(self.project)
        ours = {n.bridge for n in store.networks(self.project)}
        for record in records:
            try:
                ours |= self._heal_container(store, record.id, healed_bridges)
            except (EngineError, OSError) as exc:
                self._event(store, "heal-failed", record.id, reason=str(exc))
        self._ours = frozenset(name.encode() + b"\0" for name in ours)
        if self._hosts_dirty or time.monotonic() - self._hosts_seen > _HOSTS_BACKSTOP:
            self._hosts_dirty = False
            self._hosts_seen = time.monotonic()
            self._heal_hosts(store, [r.id for r in records])

    def _event(self, store: StateStore, kind: str, subject: str, **detail: object) -> None:
        store.add_event(self.project, kind, subject, **detail)
        if self.supervisor is not None:
            self.supervisor.event(kind, subject, **detail)

    def _heal_bridges(self, store: StateStore) -> set[str]:
        from composer.networks import bridge_spec
        from composer.settings import Settings
        from engine.network.bridge import bridge_exists, ensure_bridge
        from engine.network.firewall import ensure_firewall
        from engine.network.nat import ensure_masquerade

        nat = Settings.load({"COMPOSER_ROOT": str(self.root)}).outbound_nat
        healed = set()
        for record in store.networks(self.project):
            if record.project != self.project:
                continue  # external: another stack's to heal
            # level-triggered too: Docker restarting flushes its FORWARD chain, and our accepts
            ensure_firewall(record.bridge, internal=record.internal)
            if not bridge_exists(record.bridge):
                ensure_bridge(bridge_spec(record))
                healed.add(record.bridge)
                self._event(store, "heal", record.name, what="bridge re-created",
                            bridge=record.bridge)  # fmt: skip
            if nat and not record.internal:  # level-triggered: nothing happens when it is there
                ensure_masquerade(record.bridge, [s for s in (record.subnet, record.subnet6) if s])
        return healed

    def _heal_container(
        self, store: StateStore, name: str, healed_bridges: set[str]
    ) -> set[str]:
        """Heal one container; the names of its host-side links."""
        from engine.container.config import ContainerConfig
        from engine.errors import EngineError

        try:
            container = self.runtime.get(name)
        except EngineError:
            container = None
        if container is None or self._gone(name, container.state.status):
            recorded = store.config(name)
            if recorded is None:
                return set()
            with contextlib.suppress(EngineError):
                self.runtime.remove(name, force=True)
            config = ContainerConfig.from_json(recorded)
            self.runtime.create(config)
            self.runtime.start(name)
            self._event(store, "heal", name, what="container re-created")
            return {a.host_ifname for a in config.networks}
        config = container.config
        links = {a.host_ifname for a in config.networks}
        state = container.state
        if state.status not in ("running", "paused"):
            return links
        if config.network.startswith("container:"):
            self._follow(store, name, config.network.partition(":")[2], state.pid)
            return links
        missing = [
            a
            for a in config.networks
            if a.bridge in healed_bridges or _master(a.host_ifname) != a.bridge
        ]
        if missing:
            from engine.network.netns import open_netns
            from engine.network.veth import attach

            fd = open_netns(state.pid)
            try:
                for attachment in missing:
                    attach(fd, attachment)
            finally:
                os.close(fd)
            self._event(store, "heal", name, what="re-attached",
                        interfaces=[a.ifname for a in missing])  # fmt: skip
        return links

    def _gone(self, name: str, status: str) -> bool:
        """Whether a container that does not run lost its cgroup or root filesystem (removed
        behind our back, not stopped)."""
        if status in ("running", "paused", "restarting"):
            return False
        from engine.rootfs import Rootfs

        directory = self.runtime.containers / name
        if (directory / "stopped").exists():
            return False  # stopped on purpose: stays as it is
        cgroup_gone = not self.runtime.cgroups.exists(self.runtime.cgroup_of(name))
        rootfs_gone = not Rootfs(directory / "rootfs").upper.exists()
        return cgroup_gone or rootfs_gone

    def _follow(self, store: StateStore, name: str, target: str, pid: int) -> None:
        """Restart `name` into the network namespace of `target` when that changed."""
        from engine.errors import EngineError

        try:
            state = self.runtime.get(target).state
        except EngineError:
            return
        if state.status != "running":
            return
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/proc/{state.pid}/ns/net").st_ino:
                return
        self.runtime.stop(name, 0)
        self.runtime.start(name)
        self._event(store, "heal", name, what="joined the new network namespace of " + target)

    def _heal_hosts(self, store: StateStore, names: list[str]) -> None:
        from inotify_simple import flags

        from composer.discovery import ContainerFiles, refresh_hosts

        files = {
            n: ContainerFiles(self.root / "stacks" / self.project / "files" / n) for n in names
        }
        for name in refresh_hosts(store, files):
            self._event(store, "heal", name, what="hosts file rewritten")
        for f in files.values():
            path = str(f.hosts)
            if path not in self._watched and f.hosts.exists():
                mask = flags.MODIFY | flags.ATTRIB | flags.DELETE_SELF
                with contextlib.suppress(OSError):
                    self._watched[path] = self._inotify.add_watch(path, mask)


def _messages(data: bytes) -> list[bytes]:
    """The netlink messages in one datagram (each: length, type, flags, seq, pid, payload)."""
    found, offset = [], 0
    while offset + 16 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], sys.byteorder)
        if length < 16:
            break
        found.append(data[offset : offset + length])
        offset += (length + 3) & ~3
    return found


def _master(link: str) -> str:
    """The bridge `link` is a port of ("" when none, or no such link): sysfs, not a netlink
    dump of every link of the host (which costs more the more links the host has)."""
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{link}/master"))
    except OSError:
        return ""


def main(root: Path, project: str) -> None:
    from engine.supervisor import Supervisor

    supervisor = Supervisor(root, project)
    reconciler = Reconciler(root, project, supervisor.runtime)
    reconciler.supervisor = supervisor
    supervisor.watchers = (reconciler,)
    supervisor.run()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
