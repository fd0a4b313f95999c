"""A stack network's Linux bridge on the host: made, kept equal to its spec (addresses, MTU,
up), and removed; level-triggered, so that running `ensure_bridge` again after a crash
halfway completes the work and fixes what was changed by hand.

IPv4 forwarding is the host's decision, not a bridge's: `enable_ip_forwarding` is a separate
step an orchestrator takes (tests never do). An internal network has no route out: its
containers get no default route (veth.attach with gateway None), and its bridge does not
forward what it receives even when the host forwards. Writing the host's switch resets every
interface's own, so an orchestrator calls `ensure_bridge` after `enable_ip_forwarding`; any
other bridge `ensure_bridge` keeps in step with the host's switch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Final

from engine.network.errors import NetworkError
from engine.network.links import remove_link, set_addresses
from engine.network.names import check_ifname, name_tag
from engine.network.rtnl import Rtnl

__all__ = [
    "BridgeSpec",
    "bridge_exists",
    "bridge_name",
    "enable_ip_forwarding",
    "ensure_bridge",
    "remove_bridge",
]

PROC_SYS: Final = Path("/proc/sys")


@dataclass(frozen=True)
class BridgeSpec:
    """A bridge as it should be: its name, its subnets, and the host's address in each (the
    gateway of the containers on it)."""

    name: str
    subnet: IPv4Network
    gateway: IPv4Address
    mtu: int = 1500
    internal: bool = False
    subnet6: IPv6Network | None = None
    gateway6: IPv6Address | None = None

    def __post_init__(self) -> None:
        check_ifname(self.name)
        if self.gateway not in self.subnet:
            raise NetworkError(f"gateway {self.gateway} is outside subnet {self.subnet}")
        if (self.subnet6 is None) != (self.gateway6 is None):
            raise NetworkError(f"bridge {self.name}: an IPv6 subnet needs an IPv6 gateway")
        if self.subnet6 is not None and self.gateway6 not in self.subnet6:
            raise NetworkError(f"gateway {self.gateway6} is outside subnet {self.subnet6}")

    @property
    def addresses(self) -> tuple[IPv4Interface | IPv6Interface, ...]:
        """The addresses the bridge carries, with the prefix length of their subnets."""
        v4 = IPv4Interface(f"{self.gateway}/{self.subnet.prefixlen}")
        if self.subnet6 is None:
            return (v4,)
        return v4, IPv6Interface(f"{self.gateway6}/{self.subnet6.prefixlen}")


def bridge_name(project: str, network: str) -> str:
    """The bridge of network `network` of stack `project`: "cb-", up to four letters or digits
    of the project (to be recognised in `ip link`), and 40 bits of a hash of both names (what
    makes it unique), e.g. cb-shopk3x9q2ab."""
    readable = re.sub(r"[^a-z0-9]", "", project.lower())[:4]
    return f"cb-{readable}{name_tag(project, network)}"


def _mac(name: str) -> str:
    """A fixed, locally administered MAC address for bridge `name`: a bridge without one takes
    the lowest of its ports', so the gateway's MAC would change as containers come and go."""
    digest = hashlib.sha256(name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def ensure_bridge(spec: BridgeSpec, proc_sys: Path = PROC_SYS) -> None:
    """Make bridge `spec.name` exist, carry exactly the gateway addresses of `spec`, have its
    MTU, be up, and (for an internal network) not forward; whatever part of that is already
    true is left as it is."""
    with Rtnl() as rtnl:
        link = rtnl.link(spec.name)
        if link is None:
            try:
                rtnl.add_bridge(spec.name, spec.mtu, _mac(spec.name))
            except NetworkError:
                if rtnl.link(spec.name) is None:  # else: made meanwhile by another
                    raise
            link = rtnl.link(spec.name)
            if link is None:
                raise NetworkError(f"bridge {spec.name} vanished as it was made")
        if link.kind != "bridge":
            raise NetworkError(f"{spec.name} exists and is not a bridge ({link.kind})")
        if link.mtu != spec.mtu:
            rtnl.set_link(f"set the MTU of {spec.name}", link.index, mtu=spec.mtu)
        set_addresses(rtnl, link.index, spec.name, spec.addresses)
        # A bridge forwards what it receives as the host does; an internal one never does.
        host = "0" if spec.internal else _read(proc_sys / "net/ipv4/ip_forward")
        _write_if_different(proc_sys / "net/ipv4/conf" / spec.name / "forwarding", host)
        if not link.up:
            rtnl.set_link(f"bring {spec.name} up", link.index, up=True)


def remove_bridge(name: str) -> None:
    """Remove bridge `name` (its ports stay, detached); nothing to do when it is gone."""
    remove_link(name, "bridge", f"bridge {name}")


def bridge_exists(name: str) -> bool:
    with Rtnl() as rtnl:
        link = rtnl.link(name)
        return link is not None and link.kind == "bridge"


def enable_ip_forwarding(proc_sys: Path = PROC_SYS) -> bool:
    """Let the host route IPv4 packets between its interfaces (net.ipv4.ip_forward = 1), which
    a non-internal network needs to reach beyond the host; True when it was off."""
    return _write_if_different(proc_sys / "net/ipv4/ip_forward", "1")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise NetworkError(f"cannot read {path}: {exc.strerror}") from exc


def _write_if_different(path: Path, value: str) -> bool:
    if _read(path) == value:
        return False
    try:
        path.write_text(value + "\n")
    except OSError as exc:
        raise NetworkError(f"cannot set {path} to {value}: {exc.strerror}") from exc
    return True
