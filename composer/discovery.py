"""Service discovery: each container's /etc/hosts names every peer it shares a network with
(service, container name, aliases, every replica), its /etc/resolv.conf the host's servers.
Files live under the state root and are bind-mounted into the container; they are rewritten
in place (same inode) whenever a peer comes or goes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import TYPE_CHECKING

from composer.errors import ComposerError
from composer.state import AddressRecord, StateStore
from engine.files import make_spread_directory

if TYPE_CHECKING:
    from composer.config.service import Service

IPAddress = IPv4Address | IPv6Address

__all__ = ["ContainerFiles", "HostsHeader", "refresh_hosts", "write_files"]


@dataclass(frozen=True)
class HostsHeader:
    """What a container's hosts file says of the container itself: kept beside the file, so
    the file can be rewritten when a peer changes without the stack file at hand."""

    hostname: str
    domainname: str = ""
    extra: tuple[tuple[str, str], ...] = ()  # (name, address) from extra_hosts
    ipv6: bool = False


@dataclass(frozen=True)
class ContainerFiles:
    """The generated files of one container, in `directory`."""

    directory: Path

    @property
    def hosts(self) -> Path:
        return self.directory / "hosts"

    @property
    def resolv_conf(self) -> Path:
        return self.directory / "resolv.conf"

    @property
    def hostname(self) -> Path:
        return self.directory / "hostname"

    @property
    def header(self) -> Path:
        return self.directory / "hosts.json"

    def mounts(self) -> tuple[tuple[str, str], ...]:
        """(path in the container, file on the host) for the runtime's `files`."""
        return (
            ("/etc/hosts", str(self.hosts)),
            ("/etc/resolv.conf", str(self.resolv_conf)),
            ("/etc/hostname", str(self.hostname)),
        )


def header_of(service: Service, hostname: str) -> HostsHeader:
    extra = []
    for entry in service.extra_hosts or []:
        name, _, address = str(entry).partition("=")
        extra.append((name, address))
    return HostsHeader(hostname, service.domainname or "", tuple(extra))


def write_files(
    files: ContainerFiles, service: Service, hostname: str, store: StateStore, container: str,
    host_resolv_conf: Path = Path("/etc/resolv.conf"), book: AddressBook | None = None,
) -> None:  # fmt: skip
    """Make (or refresh) the container's hosts, resolv.conf and hostname files (`book`: the
    addresses as they are now, when the caller read them already)."""
    from engine.network.hosts import render_resolv_conf, write_in_place

    if not files.directory.is_dir():
        make_spread_directory(files.directory.parent)  # the stack's: one per container in it
        files.directory.mkdir(exist_ok=True)
    header = header_of(service, hostname)
    for _, address in header.extra:
        if address != "host-gateway":
            try:
                ip_address(address)
            except ValueError:
                raise ComposerError(f"extra_hosts: {address!r} is not an IP address") from None
    files.header.write_text(json.dumps(asdict(header)))
    try:
        host_text = host_resolv_conf.read_text()
    except OSError:
        host_text = ""
    resolv = render_resolv_conf(
        host_text,
        dns=[str(s) for s in service.dns or []] or None,
        search=[str(s) for s in service.dns_search or []] or None,
        options=list(service.dns_opt or []) or None,
    )
    write_in_place(_touched(files.resolv_conf), resolv)
    write_in_place(_touched(files.hostname), hostname + "\n")
    write_in_place(_touched(files.hosts), hosts_content(store, container, header, book))


def _touched(path: Path) -> Path:
    path.touch(mode=0o644, exist_ok=True)
    return path


class AddressBook:
    """Every address allocation and gateway, read once (a refresh of N hosts files reads
    them once, not N times), each as the hosts entry its peers list, made once."""

    def __init__(self, store: StateStore) -> None:
        from engine.network.hosts import HostsEntry

        self.of: dict[str, list[tuple[AddressRecord, HostsEntry]]] = {}  # by container
        self.on: dict[str, list[tuple[AddressRecord, HostsEntry]]] = {}  # by bridge
        for record in store.addresses():  # by bridge, then container
            entry = (record, HostsEntry(ip_address(record.address), record.names))
            self.of.setdefault(record.container, []).append(entry)
            self.on.setdefault(record.bridge, []).append(entry)
        self.gateways = {n.bridge: n.gateway for n in store.networks()}


def hosts_content(
    store: StateStore, container: str, header: HostsHeader, book: AddressBook | None = None
) -> str:
    """The container's /etc/hosts now: localhost lines, extra_hosts, itself (its address on
    its first network, hostname and names), then each peer on each shared network."""
    from engine.network.hosts import HostsEntry, render_hosts

    book = book or AddressBook(store)
    own_rows = book.of.get(container, [])
    own: list[HostsEntry] = []
    fqdn = f"{header.hostname}.{header.domainname}" if header.domainname else ""
    names = tuple(n for n in (fqdn, header.hostname) if n)
    if own_rows:
        first, entry = own_rows[0]
        own.append(HostsEntry(entry.address, tuple(dict.fromkeys(names + first.names))))
        own += [entry for _, entry in own_rows[1:]]
    peers: list[HostsEntry] = []
    for row, _ in own_rows:
        for peer, entry in book.on.get(row.bridge, []):
            if peer.container != container:
                peers.append(entry)
    gateway = book.gateways.get(own_rows[0][0].bridge) if own_rows else None
    extra = []
    for name, address in header.extra:
        if address == "host-gateway":
            if gateway is None:
                continue
            address = gateway
        extra.append(HostsEntry(ip_address(address), (name,)))
    return render_hosts(own, peers, extra, header.ipv6)


def refresh_hosts(store: StateStore, files_of: dict[str, ContainerFiles]) -> list[str]:
    """Rewrite, in place, the hosts file of each container in `files_of` whose content
    changed; the ids of those rewritten."""
    from engine.network.hosts import write_in_place

    changed = []
    book = AddressBook(store)
    for container, files in files_of.items():
        try:
            header = HostsHeader(**json.loads(files.header.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # not made yet, or being removed
        header = HostsHeader(header.hostname, header.domainname,
                             tuple(tuple(e) for e in header.extra), header.ipv6)  # type: ignore[misc]  # fmt: skip
        if files.hosts.exists() and write_in_place(
            files.hosts, hosts_content(store, container, header, book)
        ):
            changed.append(container)
    return changed
