"""What a container is made of, as the runtime hands it to the container's init program: a
plain, JSON-serialisable record with every path and id already resolved."""

from __future__ import annotations

import base64
import json
import resource
from dataclasses import dataclass, fields, is_dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final

from engine.errors import EngineError
from engine.linux import CAPABILITIES
from engine.network.veth import Attachment

__all__ = ["DEFAULT_CAPABILITIES", "Mount", "Rlimit", "Spec", "plain"]

_UNLIMITED: Final = (1 << 64) - 1  # RLIM_INFINITY (-1) as the init reads it

# Docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPABILITIES: Final = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Docker's masked and read-only paths (moby oci/defaults.go).
MASKED_PATHS: Final = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: Final = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def plain(value: Any) -> Any:
    """`dataclasses.asdict` without its deep copies (every field here is immutable): nested
    dataclasses become dicts, tuples stay tuples, addresses strings. A container's start
    serialises its config and spec a few times; asdict's copying was a good part of the
    start's own CPU time."""
    if value is None or isinstance(value, (str, int, float)):  # most values: as they are
        return value
    if isinstance(value, (IPv4Address, IPv6Address)):  # interfaces (with /prefix) included
        return str(value)
    names = _field_names(type(value))
    if names is not None:
        return {name: plain(getattr(value, name)) for name in names}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """The fields of a dataclass, None for any other type (dataclasses.fields costs on every
    call: this is looked up once per type)."""
    if cls not in _FIELDS:
        _FIELDS[cls] = tuple(f.name for f in fields(cls)) if is_dataclass(cls) else None
    return _FIELDS[cls]


@dataclass(frozen=True)
class Mount:
    """A mount inside the container. kind: bind (source is a host path, or `fd:N` for a
    handle the runtime opened), tmpfs, or mqueue. target: a path inside the container."""

    kind: str
    target: str
    source: str = ""
    read_only: bool = False
    options: str = ""  # data for tmpfs (size=…,mode=…)
    propagation: str = ""
    recursive: bool = True
    seed: bool = False  # a new volume: copy the image's content at the target into it first


@dataclass(frozen=True)
class Rlimit:
    name: str  # RLIMIT_NOFILE …
    soft: int
    hard: int


@dataclass(frozen=True)
class Spec:
    """Everything the init program needs, resolved: numbers, not names."""

    id: str
    rootfs: str
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    hostname: str = ""
    domainname: str = ""
    namespaces: tuple[str, ...] = ("mnt", "pid", "uts", "ipc", "net", "cgroup")
    join_net: str = ""  # a network namespace to join (/proc/PID/ns/net), or "" for own / host
    networks: tuple[Attachment, ...] = ()  # plumbed by the init into the container's own one
    mounts: tuple[Mount, ...] = ()
    masked_paths: tuple[str, ...] = MASKED_PATHS
    readonly_paths: tuple[str, ...] = READONLY_PATHS
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    no_new_privileges: bool = True
    seccomp: bytes = b""  # a BPF program; empty: no filter
    rlimits: tuple[Rlimit, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    cgroup_files: tuple[str, ...] = ()  # files the init writes its pid to, to enter its cgroup
    read_only: bool = False
    shm_size: int = 64 << 20
    tty: bool = False
    oom_score_adj: int | None = None
    # With a user namespace ("user" in namespaces): (inside, host, count) ranges.
    uid_map: tuple[tuple[int, int, int], ...] = ()
    gid_map: tuple[tuple[int, int, int], ...] = ()

    def to_init(self) -> bytes:
        """The spec as the container init (init.c, in composer-shim) reads it: pairs of
        NUL-terminated strings, a key and its value; a list repeats its key; a mount or a
        network is its first key followed by keys of its fields."""
        pairs: list[tuple[str, object]] = [
            ("id", self.id), ("rootfs", self.rootfs), ("cwd", self.cwd), ("uid", self.uid),
            ("gid", self.gid), ("hostname", self.hostname), ("domainname", self.domainname),
            ("join_net", self.join_net), ("read_only", int(self.read_only)),
            ("shm_size", self.shm_size), ("tty", int(self.tty)),
            ("no_new_privileges", int(self.no_new_privileges)),
            ("capabilities", sum(1 << CAPABILITIES[name] for name in set(self.capabilities))),
            ("seccomp", self.seccomp.hex()),
        ]  # fmt: skip
        if self.oom_score_adj is not None:
            pairs.append(("oom_score_adj", self.oom_score_adj))
        for key, values in (
            ("argv", self.argv), ("env", self.env), ("group", self.groups),
            ("namespace", self.namespaces), ("masked", self.masked_paths),
            ("readonly", self.readonly_paths), ("cgroup_file", self.cgroup_files),
            ("sysctl", (f"{name}={setting}" for name, setting in self.sysctls)),
            ("uid_map", (" ".join(map(str, entry)) for entry in self.uid_map)),
            ("gid_map", (" ".join(map(str, entry)) for entry in self.gid_map)),
            ("rlimit", (f"{r.name} {getattr(resource, r.name)} {r.soft & _UNLIMITED} "
                        f"{r.hard & _UNLIMITED}" for r in self.rlimits)),
        ):  # fmt: skip
            pairs.extend((key, value) for value in values)
        for m in self.mounts:
            pairs += [("mount", m.kind), ("mount_source", m.source), ("mount_target", m.target),
                      ("mount_options", m.options), ("mount_propagation", m.propagation),
                      ("mount_read_only", int(m.read_only)),
                      ("mount_recursive", int(m.recursive))]  # fmt: skip
        for a in self.networks:
            pairs += [("network", a.bridge), ("network_host_ifname", a.host_ifname),
                      ("network_ifname", a.ifname), ("network_address", a.address),
                      ("network_mtu", a.mtu)]  # fmt: skip
            for key in ("gateway", "mac", "address6", "gateway6"):
                if getattr(a, key) is not None:
                    pairs.append((f"network_{key}", getattr(a, key)))
        text = "".join(f"{key}\0{value}\0" for key, value in pairs)
        if text.count("\0") != 2 * len(pairs):  # no program takes one, nor would the init
            key = next(key for key, value in pairs if "\0" in str(value))
            raise EngineError(f"container {self.id}: its {key} holds a NUL character")
        return text.encode(errors="surrogateescape")

    def to_json(self) -> bytes:
        doc = plain(self)
        doc["seccomp"] = base64.b64encode(self.seccomp).decode()
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Spec:
        doc = json.loads(data)
        doc["seccomp"] = base64.b64decode(doc["seccomp"])
        doc["mounts"] = tuple(Mount(**m) for m in doc["mounts"])
        doc["rlimits"] = tuple(Rlimit(**r) for r in doc["rlimits"])
        doc["sysctls"] = tuple(tuple(pair) for pair in doc["sysctls"])
        for key in ("uid_map", "gid_map"):
            doc[key] = tuple(tuple(entry) for entry in doc.get(key, ()))
        for key in (
            "argv",
            "env",
            "groups",
            "namespaces",
            "masked_paths",
            "readonly_paths",
            "capabilities",
            "cgroup_files",
        ):
            doc[key] = tuple(doc[key])
        return cls(**doc)
