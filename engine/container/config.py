"""What a caller asks a container to be (decided by policy, e.g. composer from a service):
the runtime turns it into the init program's Spec once the rootfs and identity are known."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from engine.cgroups.base import CgroupLimits
from engine.container.health import HealthConfig
from engine.container.restart import RestartPolicy
from engine.container.spec import DEFAULT_CAPABILITIES, Mount, Rlimit, plain
from engine.network.veth import Attachment
from engine.userns import IdMap

__all__ = ["ContainerConfig"]


@dataclass(frozen=True)
class ContainerConfig:
    """A container to create. `layers`: the image's layer directories, lowest first.
    `network`: "none" (own namespace: loopback, plus a veth per entry of `networks`), "host",
    "container:ID" (join the network namespace of container ID as it runs at each start), or
    a path to a network namespace to join. `files`: generated files, container path → host
    path. `restart`: the restart policy (no, always, on-failure[:N], unless-stopped) and
    `healthcheck`: the probe, both run by the group's supervisor."""

    id: str
    image_id: str
    layers: tuple[str, ...]
    argv: tuple[str, ...]
    group: str = ""  # the supervisor that watches it (one per stack)
    env: tuple[str, ...] = ()
    working_dir: str = "/"
    user: str = ""
    group_add: tuple[str, ...] = ()
    hostname: str = ""
    domainname: str = ""
    mounts: tuple[Mount, ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    no_new_privileges: bool = True
    seccomp: bool = True
    read_only: bool = False
    shm_size: int = 64 << 20
    rlimits: tuple[Rlimit, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    limits: CgroupLimits = field(default_factory=CgroupLimits)
    network: str = "none"
    networks: tuple[Attachment, ...] = ()  # plumbed at every start, before the process runs
    ipc_host: bool = False
    pid_host: bool = False
    uts_host: bool = False
    cgroup_host: bool = False  # no cgroup namespace: the container sees the host's hierarchy
    cgroup_parent: str = ""  # the group this container's group is made in (runtime's default)
    oom_score_adj: int | None = None
    tty: bool = False  # a terminal as stdin, stdout and stderr (its output goes to the log)
    stdin_open: bool = False  # stdin stays open (a pipe no one writes to) instead of /dev/null
    init: bool = False  # a reaper as PID 1 that forwards signals (Docker's --init: tini)
    log_driver: str = "json-file"  # or "none": the output is dropped
    log_max_size: int = 10 << 20  # the log rotates at this size
    log_max_files: int = 3  # files kept, the current one included
    stop_signal: str = "SIGTERM"
    stop_grace_period: float = 10.0
    labels: tuple[tuple[str, str], ...] = ()
    # A user namespace when given: (first id inside, first id on the host, count) ranges.
    uid_map: tuple[tuple[int, int, int], ...] = ()
    gid_map: tuple[tuple[int, int, int], ...] = ()
    restart: str = "no"
    healthcheck: HealthConfig | None = None

    def __post_init__(self) -> None:
        RestartPolicy.parse(self.restart)  # refuses what is not a policy

    @property
    def id_maps(self) -> tuple[IdMap, IdMap] | None:
        """(uid map, gid map) when the container has a user namespace, else None."""
        return (self.uid_map, self.gid_map) if self.uid_map else None

    def to_json(self) -> bytes:
        return self._json

    @functools.cached_property
    def _json(self) -> bytes:
        """Made once (the state store and the container's directory each keep a copy).
        Compact: the C encoder (any indent takes the pure Python one, 10 times slower)."""
        return json.dumps(plain(self), separators=(",", ":"), default=str).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ContainerConfig:
        doc: dict[str, Any] = json.loads(data)
        doc["mounts"] = tuple(Mount(**m) for m in doc["mounts"])
        doc["rlimits"] = tuple(Rlimit(**r) for r in doc["rlimits"])
        doc["limits"] = CgroupLimits(**doc["limits"])
        for key in ("files", "sysctls", "labels"):
            doc[key] = tuple(tuple(pair) for pair in doc[key])
        for key in ("layers", "argv", "env", "group_add", "capabilities"):
            doc[key] = tuple(doc[key])
        doc["networks"] = tuple(Attachment.from_plain(a) for a in doc.get("networks", ()))
        for key in ("uid_map", "gid_map"):
            doc[key] = tuple(tuple(entry) for entry in doc.get(key, ()))
        if doc.get("healthcheck") is not None:
            probe = doc["healthcheck"]
            doc["healthcheck"] = HealthConfig(**{**probe, "argv": tuple(probe["argv"])})
        return cls(**doc)
