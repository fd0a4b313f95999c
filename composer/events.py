"""A stack's events as one stream in time order, as `docker compose events` shows them: what
composer's commands did to its containers (the state store's events table) and what the
containers did by themselves (the supervisor's events file, `run/PROJECT.events`). An event
written to both (the reconciler's) is shown once."""

from __future__ import annotations

import contextlib
import datetime
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from composer.settings import Settings
from composer.state import StateStore

if TYPE_CHECKING:
    from composer.stackview import Member, StackView
    from engine.container.runtime import Runtime

__all__ = ["Event", "EventFeed", "record_event"]

# What the supervisor calls an event, in docker's words; what it notes for itself only.
_ACTIONS: Final = {"exit": "die"}
_INTERNAL: Final = frozenset({"watch"})
_SAME_WITHIN: Final = 5.0  # seconds: the same event in both places is one event
_REMEMBERED: Final = 200  # the state store's latest events, to know them again in the file


@dataclass(frozen=True)
class Event:
    """Something that happened to a container: `action` as docker names it (start, stop,
    die, kill, pause, destroy …), attributes such as its name, image and exit code."""

    time: str
    action: str
    container: str
    service: str
    attributes: tuple[tuple[str, str], ...]

    @property
    def seconds(self) -> float:
        """When, in seconds since the epoch."""
        return datetime.datetime.fromisoformat(self.time.replace("Z", "+00:00")).timestamp()


def record_event(
    store: StateStore, view: StackView, member: Member, action: str, settings: Settings,
    **attributes: str,
) -> None:  # fmt: skip
    """Record that a composer command did `action` to a container of the stack."""
    store.add_event(view.project, action, member.name, service=member.service,
                    image=view.image(member, settings), **attributes)  # fmt: skip


class EventFeed:
    """The events of project `project`: each call of `read` returns those recorded since the
    previous call (all of them the first time), oldest first."""

    def __init__(self, settings: Settings, runtime: Runtime, project: str) -> None:
        self.settings, self.runtime, self.project = settings, runtime, project
        self._file = settings.root / "run" / f"{project}.events"
        self._offset = 0  # in the supervisor's file: up to its last complete line
        self._stored = 0  # events of the state store already read
        self._services: dict[str, str] = {}
        self._recent: list[Event] = []  # of the store, to know them again in the file

    def read(self) -> list[Event]:
        stored = self._from_store()
        self._recent = (self._recent + stored)[-_REMEMBERED:]
        found = stored + [e for e in self._from_supervisor() if not self._known(e)]
        return sorted(found, key=lambda e: e.seconds)

    def _known(self, event: Event) -> bool:
        return any(
            (e.action, e.container, e.attributes) == (event.action, event.container,
                                                      event.attributes)
            and abs(e.seconds - event.seconds) < _SAME_WITHIN
            for e in self._recent
        )  # fmt: skip

    def _from_store(self) -> list[Event]:
        with StateStore(self.settings.root) as store:
            rows = store.events(self.project)
        if len(rows) < self._stored:
            self._stored = 0  # the table was emptied meanwhile
        found = []
        for when, action, container, detail in rows[self._stored :]:
            service = str(detail.get("service", "")) or self._service(container)
            attributes = {"name": container}
            attributes.update((k, str(v)) for k, v in detail.items() if k != "service")
            found.append(Event(when, action, container, service, tuple(sorted(attributes.items()))))
        self._stored = len(rows)
        return found

    def _from_supervisor(self) -> list[Event]:
        try:
            with open(self._file, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        found = []
        for line in complete.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = json.loads(line)
                if entry["event"] not in _INTERNAL:
                    found += self._supervisor_event(entry)
        return found

    def _supervisor_event(self, entry: dict[str, object]) -> list[Event]:
        when, kind, container = str(entry["time"]), str(entry["event"]), str(entry["container"])
        details = {k: v for k, v in entry.items() if k not in ("time", "event", "container")}
        attributes = {"name": container}
        for key, value in details.items():
            if key == "exit_code":
                attributes["exitCode"] = str(value if value is not None else "")
            elif key != "oom_killed":
                attributes[key] = str(value)
        service = self._service(container)
        events = []
        if kind == "exit" and details.get("oom_killed"):
            events.append(Event(when, "oom", container, service, (("name", container),)))
        action = _ACTIONS.get(kind, kind)
        if kind == "health_status" and "status" in details:  # docker's "health_status: healthy"
            action = f"{kind}: {details['status']}"
        events.append(Event(when, action, container, service, tuple(sorted(attributes.items()))))
        return events

    def _service(self, container: str) -> str:
        """The service of a container (its label, or its record once it is gone)."""
        from composer.stackview import LABEL_SERVICE
        from engine.errors import EngineError

        if container not in self._services:
            service = ""
            try:
                service = dict(self.runtime.get(container).config.labels).get(LABEL_SERVICE, "")
            except EngineError:
                with StateStore(self.settings.root) as store:
                    records = [r for r in store.containers(self.project) if r.id == container]
                service = records[0].service if records else ""
            self._services[container] = service
        return self._services[container]
