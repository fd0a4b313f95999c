"""The state store: what composer has decided and made on this host (stacks, networks, address
allocations, containers, published ports, events), in one SQLite database in WAL mode under the
state root. The kernel is the truth; this is the record of intent, changed in transactions."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from engine.clock import utc_now

__all__ = [
    "AddressRecord",
    "ContainerRecord",
    "NetworkRecord",
    "PortRecord",
    "StackRecord",
    "StateStore",
]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS stacks (
    project TEXT PRIMARY KEY, files TEXT NOT NULL, directory TEXT NOT NULL,
    updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    project TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL UNIQUE,
    bridge TEXT NOT NULL UNIQUE, subnet TEXT NOT NULL, gateway TEXT NOT NULL,
    subnet6 TEXT, gateway6 TEXT, internal INTEGER NOT NULL, mtu INTEGER NOT NULL,
    PRIMARY KEY (project, key));
CREATE TABLE IF NOT EXISTS addresses (
    bridge TEXT NOT NULL, address TEXT NOT NULL, container TEXT NOT NULL, names TEXT NOT NULL,
    PRIMARY KEY (bridge, address), UNIQUE (bridge, container));
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, service TEXT NOT NULL,
    number INTEGER NOT NULL, config_hash TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
    container TEXT PRIMARY KEY, config BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ports (
    container TEXT NOT NULL, project TEXT NOT NULL, service TEXT NOT NULL,
    host_ip TEXT NOT NULL, host_port INTEGER NOT NULL, container_port INTEGER NOT NULL,
    protocol TEXT NOT NULL, target_ip TEXT NOT NULL,
    PRIMARY KEY (host_ip, host_port, protocol));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, project TEXT NOT NULL,
    kind TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StackRecord:
    """A stack brought up on this host: its project name, the stack files it was read from
    and its project directory, when it was last applied."""

    project: str
    files: tuple[str, ...]
    directory: str
    updated: str = ""


@dataclass(frozen=True)
class NetworkRecord:
    """A network of a stack: `key` as in the file, `name` as on the host (PROJECT_KEY or
    its `name:`), its bridge and allocation."""

    project: str
    key: str
    name: str
    bridge: str
    subnet: str
    gateway: str
    subnet6: str | None = None
    gateway6: str | None = None
    internal: bool = False
    mtu: int = 1500


@dataclass(frozen=True)
class AddressRecord:
    """A container's address on a bridge, and the names peers find it by there (service,
    container name, aliases)."""

    bridge: str
    address: str
    container: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    project: str
    service: str
    number: int
    config_hash: str
    created: str


@dataclass(frozen=True)
class PortRecord:
    """A published port: the host side as bound (a random port is recorded as the one got)."""

    container: str
    project: str
    service: str
    host_ip: str
    host_port: int
    container_port: int
    protocol: str
    target_ip: str


class StateStore:
    """The database at `root/state.db`: one connection per object, shared by threads (each
    call and each transaction holds the object's lock)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / "state.db"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: BEGIN IMMEDIATE (one writer at a time), COMMIT, or ROLLBACK."""
        with self._lock:
            if self._db.in_transaction:  # nested: part of the outer one
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, query: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(query, args).fetchall()

    # -- stacks ------------------------------------------------------------------------------

    def stacks(self) -> list[StackRecord]:
        rows = self._rows("SELECT * FROM stacks ORDER BY project")
        return [StackRecord(p, tuple(json.loads(f)), d, u) for p, f, d, u in rows]

    def stack(self, project: str) -> StackRecord | None:
        return next((s for s in self.stacks() if s.project == project), None)

    def put_stack(self, record: StackRecord) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO stacks VALUES (?,?,?,?)",
                       (record.project, json.dumps(record.files), record.directory,
                        record.updated or utc_now()))  # fmt: skip

    def delete_stack(self, project: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM stacks WHERE project = ?", (project,))

    # -- networks ----------------------------------------------------------------------------

    def networks(self, project: str | None = None) -> list[NetworkRecord]:
        query = "SELECT * FROM networks" + (" WHERE project = ?" if project else "")
        rows = self._rows(query + " ORDER BY project, key", (project,) if project else ())
        return [_network(row) for row in rows]

    def network_named(self, name: str) -> NetworkRecord | None:
        rows = self._rows("SELECT * FROM networks WHERE name = ?", (name,))
        return _network(rows[0]) if rows else None

    def put_network(self, record: NetworkRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO networks VALUES (?,?,?,?,?,?,?,?,?,?)",
                (record.project, record.key, record.name, record.bridge, record.subnet,
                 record.gateway, record.subnet6, record.gateway6, int(record.internal),
                 record.mtu),
            )  # fmt: skip

    def delete_network(self, project: str, key: str) -> None:
        with self.transaction() as db:
            row = db.execute(
                "SELECT bridge FROM networks WHERE project = ? AND key = ?", (project, key)
            ).fetchone()
            if row:
                db.execute("DELETE FROM addresses WHERE bridge = ?", (row[0],))
            db.execute("DELETE FROM networks WHERE project = ? AND key = ?", (project, key))

    # -- addresses ---------------------------------------------------------------------------

    def addresses(
        self, bridge: str | None = None, container: str | None = None
    ) -> list[AddressRecord]:
        """The addresses on `bridge`, or of `container`, or all."""
        query, args = "SELECT * FROM addresses", ()  # type: tuple[str, tuple[str, ...]]
        if bridge is not None:
            query, args = query + " WHERE bridge = ?", (bridge,)
        elif container is not None:
            query, args = query + " WHERE container = ?", (container,)
        rows = self._rows(query + " ORDER BY bridge, container", args)
        return [AddressRecord(b, a, c, tuple(json.loads(n))) for b, a, c, n in rows]

    def put_address(self, record: AddressRecord) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM addresses WHERE bridge = ? AND container = ?",
                       (record.bridge, record.container))  # fmt: skip
            db.execute(
                "INSERT INTO addresses VALUES (?,?,?,?)",
                (record.bridge, record.address, record.container, json.dumps(record.names)),
            )

    def release_addresses(self, container: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM addresses WHERE container = ?", (container,))

    # -- containers --------------------------------------------------------------------------

    def containers(self, project: str | None = None) -> list[ContainerRecord]:
        query = "SELECT * FROM containers" + (" WHERE project = ?" if project else "")
        rows = self._rows(query + " ORDER BY service, number", (project,) if project else ())
        return [ContainerRecord(*row) for row in rows]

    def container(self, container: str) -> ContainerRecord | None:
        rows = self._rows("SELECT * FROM containers WHERE id = ?", (container,))
        return ContainerRecord(*rows[0]) if rows else None

    def put_container(self, record: ContainerRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO containers VALUES (?,?,?,?,?,?)",
                (record.id, record.project, record.service, record.number, record.config_hash,
                 record.created or utc_now()),
            )  # fmt: skip

    def delete_container(self, container: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (container,))
            db.execute("DELETE FROM configs WHERE container = ?", (container,))
            db.execute("DELETE FROM addresses WHERE container = ?", (container,))
            db.execute("DELETE FROM ports WHERE container = ?", (container,))

    def put_config(self, container: str, config: bytes) -> None:
        """The engine configuration a container was made from (to remake it if it vanishes)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO configs VALUES (?,?)", (container, config))

    def config(self, container: str) -> bytes | None:
        rows = self._rows("SELECT config FROM configs WHERE container = ?", (container,))
        return bytes(rows[0][0]) if rows else None

    # -- published ports ---------------------------------------------------------------------

    def ports(self, project: str | None = None) -> list[PortRecord]:
        query = "SELECT * FROM ports" + (" WHERE project = ?" if project else "")
        rows = self._rows(query + " ORDER BY service, container_port",
                                (project,) if project else ())  # fmt: skip
        return [PortRecord(*row) for row in rows]

    def put_ports(self, container: str, records: list[PortRecord]) -> None:
        """The container's published ports, replacing what was recorded."""
        with self.transaction() as db:
            db.execute("DELETE FROM ports WHERE container = ?", (container,))
            for r in records:
                db.execute(
                    "INSERT INTO ports VALUES (?,?,?,?,?,?,?,?)",
                    (r.container, r.project, r.service, r.host_ip, r.host_port,
                     r.container_port, r.protocol, r.target_ip),
                )  # fmt: skip

    # -- events ------------------------------------------------------------------------------

    def add_event(self, project: str, kind: str, subject: str, **detail: object) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO events (time, project, kind, subject, detail) VALUES (?,?,?,?,?)",
                (utc_now(), project, kind, subject, json.dumps(detail)),
            )

    def events(self, project: str) -> list[tuple[str, str, str, dict[str, object]]]:
        rows = self._rows(
            "SELECT time, kind, subject, detail FROM events WHERE project = ? ORDER BY id",
            (project,),
        )
        return [(t, k, s, json.loads(d)) for t, k, s, d in rows]


def _network(row: tuple[Any, ...]) -> NetworkRecord:
    project, key, name, bridge, subnet, gateway, subnet6, gateway6, internal, mtu = row
    return NetworkRecord(
        str(project), str(key), str(name), str(bridge), str(subnet), str(gateway),
        str(subnet6) if subnet6 else None, str(gateway6) if gateway6 else None,
        bool(internal), int(mtu),
    )  # fmt: skip
