"""Outbound NAT of a bridge's subnets: what its containers send out of any other interface
leaves with the address of that interface (masquerade), as Docker does for its bridges.

The rules live in composer's own nftables table, `inet composer` (nftables.py), in a chain
`postrouting` (type nat, hook postrouting, priority srcnat). Each bridge has one rule per
subnet (IPv4, and IPv6 when it has one), commented with the bridge's name:

    ip saddr 10.213.4.0/24 oifname != "cb-webk3x9q2ab" masquerade comment "cb-webk3x9q2ab"

so `ensure_masquerade` can find and keep them (running it twice leaves one rule),
`remove_masquerade` takes one bridge's rules and leaves the others', the chain goes with its
last rule and the table with the last rule of any of its chains. Another table (iptables-nft's,
firewalld's) is never touched; each change is one nftables transaction.

What may be forwarded at all is firewall.py's concern.

Masquerading needs forwarding: `ensure_masquerade` turns on net.ipv4.ip_forward (and
net.ipv6.conf.all.forwarding for an IPv6 subnet), as Docker does, and never turns it off —
what it was is not recorded: once on, other software may rely on it, and switching it off
would reset every interface's own switch. Switching it on resets them too (see bridge.py), so
an orchestrator that has internal bridges turns forwarding on before it ensures them. With
IPv6 forwarding on, an interface with accept_ra=1 stops accepting router advertisements (set
accept_ra=2 on a host that configures its uplink from them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Final

from engine.network import nftables
from engine.network.bridge import PROC_SYS, enable_ip_forwarding
from engine.network.errors import NetworkError
from engine.network.names import check_ifname
from engine.network.nftables import FAMILY, TABLE, nftables_ruleset

__all__ = [
    "TABLE",
    "ensure_masquerade",
    "masquerade_rules",
    "nftables_ruleset",
    "remove_masquerade",
]

_CHAIN: Final = "postrouting"
_SRCNAT: Final = 100

Subnet = IPv4Network | IPv6Network


def ensure_masquerade(bridge: str, subnets: Iterable[str], proc_sys: Path = PROC_SYS) -> None:
    """Masquerade what comes from `subnets` (CIDR) and leaves by any interface but `bridge`,
    with one rule per subnet, and turn on forwarding for their IP versions (`proc_sys`:
    where /proc/sys is). Rules of `bridge` for other subnets are removed; whatever is already
    as wanted is left as it is."""
    check_ifname(bridge)
    wanted = _subnets(bridge, subnets)
    if any(s.version == 4 for s in wanted):
        enable_ip_forwarding(proc_sys)
    if any(s.version == 6 for s in wanted):
        _switch_on(proc_sys / "net/ipv6/conf/all/forwarding")
    _converge(bridge, wanted)


def remove_masquerade(bridge: str) -> None:
    """Remove the masquerade rules of `bridge` (the table too when they were its last);
    nothing to do when there are none, nor when libnftables is not installed (then nothing of
    ours can have been added)."""
    check_ifname(bridge)
    if nftables.available():
        _converge(bridge, [])


def masquerade_rules() -> dict[str, list[str]]:
    """The masquerades in the kernel, read back from our table: bridge → its subnets."""
    found: dict[str, list[str]] = {}
    for rule in map(_parse, nftables.read_ours().rules_of(_CHAIN)):
        if rule.bridge is not None and rule.subnet is not None and rule.well_formed:
            found.setdefault(rule.bridge, []).append(str(rule.subnet))
    return found


@dataclass(frozen=True)
class _Rule:
    """A rule of our chain as read back: as listed, the bridge its comment names (None: not
    ours), the source subnet it matches, and whether it is exactly a masquerade of that
    subnet out of every interface but the bridge."""

    listed: dict[str, Any]
    bridge: str | None
    subnet: Subnet | None
    well_formed: bool


def _subnets(bridge: str, subnets: Iterable[str]) -> list[Subnet]:
    wanted: list[Subnet] = []
    for text in subnets:
        try:
            subnet = ip_network(text)
        except ValueError as exc:
            raise NetworkError(f"bridge {bridge}: {text!r} is not a subnet ({exc})") from exc
        if subnet not in wanted:
            wanted.append(subnet)
    return wanted


def _converge(bridge: str, wanted: list[Subnet]) -> None:
    """Make the rules of `bridge` be one well-formed masquerade per subnet of `wanted`, in one
    transaction; the chain goes when nothing would be left in it."""
    with nftables.locked():
        listing = nftables.read_ours()
        rules = [_parse(r) for r in listing.rules_of(_CHAIN)]
        kept: list[Subnet] = []
        stale: list[dict[str, Any]] = []
        for rule in (r for r in rules if r.bridge == bridge):
            subnet = rule.subnet if rule.well_formed else None
            if subnet is not None and subnet in wanted and subnet not in kept:
                kept.append(subnet)
            else:
                stale.append(rule.listed)
        missing = [s for s in wanted if s not in kept]
        commands: list[nftables.Command]
        if kept or missing or any(r.bridge != bridge for r in rules):
            chain = nftables.our_chain(_CHAIN, "nat", "postrouting", _SRCNAT)
            commands = [{"add": {"chain": chain}}] if missing else []
            commands += [{"add": {"rule": _rule(bridge, s)}} for s in missing]
        else:
            ours = {"family": FAMILY, "table": TABLE, "name": _CHAIN}
            commands = [{"delete": {"chain": ours}}] if _CHAIN in listing.chains else []
        if stale or missing:
            what = (
                f"set the masquerade of {bridge} to {', '.join(map(str, wanted))}"
                if wanted
                else f"remove the masquerade of {bridge}"
            )
            nftables.change_ours(what, listing, stale, commands)


def _rule(bridge: str, subnet: Subnet) -> dict[str, Any]:
    return {
        "family": FAMILY,
        "table": TABLE,
        "chain": _CHAIN,
        "comment": bridge,
        "expr": _expr(bridge, subnet),
    }


def _expr(bridge: str, subnet: Subnet) -> list[dict[str, Any]]:
    """`ip[6] saddr SUBNET oifname != BRIDGE masquerade`, as libnftables writes it back."""
    source = {"payload": {"protocol": "ip" if subnet.version == 4 else "ip6", "field": "saddr"}}
    prefix = {"prefix": {"addr": str(subnet.network_address), "len": subnet.prefixlen}}
    return [
        {"match": {"op": "==", "left": source, "right": prefix}},
        {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": bridge}},
        {"masquerade": None},
    ]


def _parse(rule: dict[str, Any]) -> _Rule:
    comment = rule.get("comment")
    bridge = comment if isinstance(comment, str) else None
    subnet = None
    with contextlib.suppress(KeyError, TypeError, ValueError, IndexError):
        right = rule["expr"][0]["match"]["right"]
        prefix = right["prefix"] if isinstance(right, dict) else {"addr": right, "len": None}
        address = prefix["addr"]
        subnet = ip_network(address if prefix["len"] is None else f"{address}/{prefix['len']}")
    well_formed = (
        bridge is not None and subnet is not None and _same(rule.get("expr"), _expr(bridge, subnet))
    )
    return _Rule(rule, bridge, subnet, well_formed)


def _same(listed: Any, wanted: list[dict[str, Any]]) -> bool:
    """Whether a listed expression is `wanted`; a single address may be listed for a /32 or
    /128 prefix."""
    if listed == wanted:
        return True
    with contextlib.suppress(KeyError, TypeError, IndexError):
        prefix = wanted[0]["match"]["right"]["prefix"]
        full = prefix["len"] == (32 if ":" not in prefix["addr"] else 128)
        single = [{"match": {**wanted[0]["match"], "right": prefix["addr"]}}, *wanted[1:]]
        return bool(full and listed == single)
    return False


def _switch_on(path: Path) -> None:
    try:
        if path.read_text().strip() != "1":
            path.write_text("1\n")
    except OSError as exc:
        raise NetworkError(f"cannot set {path} to 1: {exc.strerror}") from exc
