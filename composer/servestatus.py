"""What `composer serve` knows about the stacks it serves — the last apply of each, and, read
afresh on each question, their containers and what their supervisors healed and restarted —
for its control socket and its metrics, which ask from threads of their own."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from composer.converge import LABEL_ONE_OFF
from composer.settings import Settings
from composer.stackview import LABEL_NUMBER, LABEL_SERVICE
from composer.state import StateStore

if TYPE_CHECKING:
    from engine.container.runtime import Runtime

__all__ = ["ApplyResult", "ContainerStatus", "ServeStatus", "StackReport", "StackStatus"]

_RECENT: Final = 10  # heal events kept per stack for the socket
# A heal's kind, from the words the reconciler records it with (first match).
_HEAL_KINDS: Final = (
    ("bridge", "bridge"),
    ("re-attached", "veth"),
    ("hosts", "hosts"),
    ("container re-created", "container"),
    ("network namespace", "network-namespace"),
)


@dataclass(frozen=True)
class ApplyResult:
    """One apply of a stack file: whether it worked, when it ended (UTC) and how long it took,
    one line on what was done or why not, the file's problems (file:line:column: key:
    message) and what happened to each container."""

    ok: bool
    time: str
    seconds: float
    message: str
    problems: tuple[str, ...] = ()
    actions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StackStatus:
    """A served stack file as the serve loop last saw it: its project (None until it loaded
    once), the replicas its services want, its applies and the supervisor starts serve did."""

    source: str
    files: tuple[str, ...]
    directory: str
    project: str | None = None
    desired: tuple[tuple[str, int], ...] = ()
    last: ApplyResult | None = None
    applies_ok: int = 0
    applies_failed: int = 0
    supervisor_starts: int = 0


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    service: str
    number: int
    status: str
    health: str
    restarts: int


@dataclass(frozen=True)
class StackReport:
    """A served stack now: its status, whether it is up, its supervisor's pid, its containers,
    heals by kind and container restarts by service (since its events file began), and its
    latest heal events."""

    status: StackStatus
    up: bool
    supervisor: int | None
    containers: tuple[ContainerStatus, ...]
    heals: dict[str, int]
    restarts: dict[str, int]
    recent_heals: tuple[dict[str, Any], ...]

    def services(self) -> dict[str, dict[str, int]]:
        """Per service: desired replicas, running, healthy and unhealthy containers."""
        found = {s: {"desired": n, "running": 0, "healthy": 0, "unhealthy": 0}
                 for s, n in self.status.desired}  # fmt: skip
        for c in self.containers:
            counts = found.setdefault(c.service, {"desired": 0, "running": 0, "healthy": 0,
                                                  "unhealthy": 0})  # fmt: skip
            counts["running"] += c.status == "running"
            if c.health in ("healthy", "unhealthy"):
                counts[c.health] += 1
        return found

    def to_json(self) -> dict[str, Any]:
        s = self.status
        last = asdict(s.last) if s.last else None
        if last is not None:
            last["result"] = "ok" if last.pop("ok") else "failed"
            last["actions"] = dict(s.last.actions) if s.last else {}
        return {
            "project": s.project, "source": s.source, "files": list(s.files),
            "directory": s.directory, "up": self.up, "supervisor": self.supervisor,
            "services": self.services(), "containers": [asdict(c) for c in self.containers],
            "last_apply": last, "applies": {"ok": s.applies_ok, "failed": s.applies_failed},
            "supervisor_starts": s.supervisor_starts, "heals": self.heals,
            "restarts": self.restarts, "recent_heals": list(self.recent_heals),
        }  # fmt: skip


@dataclass
class _EventsTail:
    """A supervisor's events file (`run/PROJECT.events`, JSON lines), read on from where the
    last read ended."""

    path: Path
    offset: int = 0
    heals: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)  # by container
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_RECENT))

    def read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                if f.seek(0, 2) < self.offset:
                    self.offset = 0  # a new file
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                self._count(json.loads(line))

    def _count(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "restart":
            self.restarts[str(event.get("container", ""))] += 1
        elif kind in ("heal", "heal-failed"):
            what = str(event.get("what", ""))
            heal = "failed" if kind == "heal-failed" else next(
                (k for words, k in _HEAL_KINDS if words in what), "other")  # fmt: skip
            self.heals[heal] += 1
            self.recent.append(event)


class ServeStatus:
    """The status of every served stack file; the loop writes it, readers ask for reports."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._stacks: dict[str, StackStatus] = {}  # by source
        self._tails: dict[str, _EventsTail] = {}  # by project
        self._services: dict[str, str] = {}  # container → service, for restarts of gone ones
        self.about: dict[str, Any] = {}  # serve itself: the answer to {"get": "serve"}

    def get(self, source: str) -> StackStatus | None:
        with self._lock:
            return self._stacks.get(source)

    def put(self, status: StackStatus) -> None:
        with self._lock:
            self._stacks[status.source] = status

    def forget(self, source: str) -> None:
        with self._lock:
            self._stacks.pop(source, None)

    def answer(self, request: object) -> dict[str, Any]:
        """The answer to one request of the control socket (specs/serve.md)."""
        what = request.get("get") if isinstance(request, dict) else None
        if what == "stacks":
            return {"stacks": [report.to_json() for report in self.reports()]}
        if what == "serve":
            return dict(self.about)
        return {"error": 'unknown request: send {"get": "stacks"} or {"get": "serve"}'}

    def reports(self) -> list[StackReport]:
        """Every served stack as it is now, by project (files that never loaded last)."""
        from engine.supervisor import supervisor_pid

        with self._lock:
            stacks = sorted(
                self._stacks.values(), key=lambda s: (s.project is None, s.project or "", s.source)
            )
        with StateStore(self.settings.root) as store:
            up = {record.project for record in store.stacks()}
            recorded = {record.id: record.service for record in store.containers()}
        containers = _containers(_runtime(self.settings))
        reports = []
        for s in stacks:
            project = s.project or ""
            mine = containers.get(project, [])
            with self._lock:
                self._services.update(recorded)
                self._services.update((c.name, c.service) for c in mine)
                tail = self._tails.setdefault(
                    project, _EventsTail(self.settings.root / "run" / f"{project}.events")
                )
                if project:  # else: the file never loaded
                    tail.read()
                restarts = Counter[str]()
                for container, count in tail.restarts.items():
                    restarts[self._services.get(container, "")] += count
                heals, recent = dict(tail.heals), tuple(tail.recent)
            pid = supervisor_pid(self.settings.root, project) if project in up else None
            reports.append(StackReport(s, project in up, pid, tuple(mine), heals,
                                       dict(restarts), recent))  # fmt: skip
        return reports


def _runtime(settings: Settings) -> Runtime:
    from engine.cgroups import detect
    from engine.container.runtime import Runtime

    return Runtime(settings.root, detect())


def _containers(runtime: Runtime) -> dict[str, list[ContainerStatus]]:
    """Every stack's containers now (the runtime's labels say whose they are), by project."""
    from engine.errors import EngineError

    found: dict[str, list[ContainerStatus]] = {}
    for container_id in runtime.ids():
        try:
            container = runtime.get(container_id)
        except EngineError:
            continue  # removed meanwhile
        labels, state = dict(container.config.labels), container.state
        if LABEL_SERVICE not in labels or LABEL_ONE_OFF in labels:
            continue  # not a stack's, or a `composer run` container (no replica)
        found.setdefault(container.config.group, []).append(ContainerStatus(
            container_id, labels[LABEL_SERVICE], int(labels.get(LABEL_NUMBER, "1")),
            state.status, getattr(state, "health", ""),
            getattr(state, "restart_count", 0)))  # fmt: skip
    return found
