"""A container's /etc/hosts and /etc/resolv.conf: their text, Docker's way, and rewriting a
file that is bind-mounted into a running container."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Final

from engine.network.errors import NetworkError

__all__ = [
    "FALLBACK_NAMESERVERS",
    "HostsEntry",
    "render_hosts",
    "render_resolv_conf",
    "write_in_place",
]

# What Docker gives a container when the host has no nameserver a container can reach.
FALLBACK_NAMESERVERS: Final = ("8.8.8.8", "8.8.4.4")


@dataclass(frozen=True)
class HostsEntry:
    address: IPv4Address | IPv6Address
    names: tuple[str, ...]

    @functools.cached_property
    def line(self) -> str:
        """The entry's line (made once: an entry of a peer is in every other's file)."""
        return f"{self.address}\t{' '.join(self.names)}\n"


_LOCALHOST: Final = "127.0.0.1\tlocalhost\n"
_IPV6_DEFAULTS: Final = (
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def render_hosts(
    own: Sequence[HostsEntry],
    peers: Sequence[HostsEntry],
    extra: Sequence[HostsEntry],
    ipv6: bool,
) -> str:
    """/etc/hosts as Docker writes it: localhost (and the IPv6 names when `ipv6`), the
    `extra_hosts`, the container's own addresses and names, then its peers. Extra hosts come
    before the rest as in Docker, where they are read before any name service: the first line
    with a name wins, so an `extra_hosts` entry overrides a service's address. Without `ipv6`,
    IPv6 entries are left out (Docker's BuildNoIPv6)."""
    entries = [*extra, *own, *peers]
    return (
        _LOCALHOST
        + (_IPV6_DEFAULTS if ipv6 else "")
        + "".join(e.line for e in entries if ipv6 or e.address.version == 4)
    )


def write_in_place(path: Path, content: str) -> bool:
    """Make file `path` hold `content`, keeping its inode (a container sees the file through a
    bind mount: a new file renamed over it would stay invisible to it); False when it already
    did. One write at offset 0, of the new content padded with newlines to the old length when
    shorter, then a truncation: a reader in between sees the new lines followed by blank ones,
    still a valid hosts or resolv.conf file, and never a mix of old and new lines."""
    new = content.encode()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise NetworkError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        old = _read_all(fd)
        if old == new:
            return False
        data = new + b"\n" * (len(old) - len(new))
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], written)
        os.ftruncate(fd, len(new))
    except OSError as exc:
        raise NetworkError(f"cannot rewrite {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return True


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def render_resolv_conf(
    host_text: str,
    dns: Sequence[str] | None = None,
    search: Sequence[str] | None = None,
    options: Sequence[str] | None = None,
) -> str:
    """A container's resolv.conf from the host's (`host_text`), as Docker makes it: the host's
    lines, without its loopback nameservers (127.0.0.0/8, ::1: in the container they would be
    the container itself); `dns`, `search` and `options`, when given, replace the host's
    nameserver, search (and domain) and options lines. `search` of ["."] means none. When no
    nameserver remains, Docker's public fallback ones, with a comment saying so."""
    replaced = {
        "nameserver": dns is not None and len(dns) > 0,
        "search": search is not None and len(search) > 0,
        "domain": search is not None and len(search) > 0,
        "options": options is not None and len(options) > 0,
    }
    lines: list[str] = []
    nameservers = 0
    for line in host_text.splitlines():
        words = line.split()
        keyword = words[0] if words and not line.lstrip().startswith(("#", ";")) else ""
        if replaced.get(keyword):
            continue
        if keyword == "nameserver":
            if len(words) < 2 or _is_loopback(words[1]):
                continue
            nameservers += 1
        lines.append(line)
    if dns:
        lines.extend(f"nameserver {server}" for server in dns)
        nameservers += len(dns)
    if search and list(search) != ["."]:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    if nameservers == 0:
        lines.append("# No nameserver of the host can be reached from a container (loopback")
        lines.append("# ones only, or none): Docker's fallback public nameservers follow.")
        lines.extend(f"nameserver {server}" for server in FALLBACK_NAMESERVERS)
    return "\n".join(lines) + "\n"


def _is_loopback(server: str) -> bool:
    try:
        return ip_address(server.split("%")[0]).is_loopback
    except ValueError:
        return False
