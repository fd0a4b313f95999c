"""What the host forwards to and from a stack's bridge: nothing between two stacks' networks,
nothing in or out of an internal one, no connection into a network started outside it — on
a host that forwards (Docker turns net.ipv4.ip_forward on), and also on one whose forward
policy drops (Docker's, again).

Isolation lives in composer's own nftables table, `inet composer` (nftables.py): a chain
`forward` (type filter, hook forward, priority filter, policy accept) and a set `bridges` of
every bridge that has a firewall. Each bridge has its member of the set and two rules,
commented with its name, as Docker's DOCKER-ISOLATION chains do for its own:

    iifname B oifname @bridges oifname != B drop               # to another stack's network
    oifname B iifname != B ct state invalid,new,untracked drop  # a connection from outside

or, for an internal network, everything forwarded in or out of it that is not B to B:

    iifname B oifname != B drop
    oifname B iifname != B drop

Replies to what B's containers started come in; a published port is not forwarded (the
userland proxy connects from the host). Traffic between the ports of B that br_netfilter
passes to the forward hook (as iifname B oifname B) is left alone. A drop is final whatever
other tables' chains on the hook accept, so this holds on any host.

Coexistence with a forward policy that drops: every base chain on the hook must accept a
packet, so no accept of ours could override Docker's `iptables -P FORWARD DROP`, which, with
br_netfilter loaded (Docker loads it, and sets bridge-nf-call-iptables=1), even drops
traffic between two containers of one bridge. With iptables-nft, Docker's FORWARD chain is
the nftables base chain `ip filter FORWARD` (`ip6 filter FORWARD` for ip6tables), and into
each of those that exists `ensure_firewall` inserts, at its head:

    iifname B accept comment B    # B's own traffic, outbound and, bridged, B to B
    oifname B accept comment B    # into B: what may come in is our chain's decision above

Only rules with that comment and exactly that expression are ever deleted there; nothing
else in that table is touched, and nothing is added when the chain does not exist. The rules
are plain interface matches so that iptables-nft can still read the chain: `iptables -S`
lists them as `-A FORWARD -i B -m comment --comment B -j ACCEPT`, whereas one native
`ct state` match in it (iptables-nft 1.8.9 writes its own `-m conntrack` as an xtables match
and cannot parse the native one) makes `iptables -S` and `iptables-save`, and so whatever is
built on them (kube-proxy), fail on the whole table: "table `filter' is incompatible, use
'nft' tool". Whoever flushes that chain (Docker restarting, `iptables -F`) removes them too:
they are level-triggered, and an orchestrator ensures them again (composer's reconciler does
on each look).

iptables-legacy cannot be handled this way: its rules are in x_tables, which nftables neither
lists nor changes (the kernel names its tables in /proc/net/ip_tables_names, and iptables-nft
warns "iptables-legacy tables present"). Its FORWARD policy DROP then drops the bridges'
traffic whatever nftables accepts (checked on kernel 6.18: routed traffic, a legacy DROP
policy and an nftables accept rule: dropped); the isolation above still holds. On such a host
the user either switches to iptables-nft (`update-alternatives --set iptables
/usr/sbin/iptables-nft`, the same for ip6tables, then reboots — or empties the legacy tables
and restarts Docker — so that Docker's rules are made again in nftables), or accepts the
bridges' traffic in the legacy chain Docker leaves to users: `iptables -I DOCKER-USER -i cb-+
-j ACCEPT` and `iptables -I DOCKER-USER -o cb-+ -j ACCEPT` (FORWARD when there is no Docker;
the same with ip6tables; what may come in is still decided by our chain). Other firewalls'
own tables (firewalld's `inet firewalld`) are not touched either: trust the bridges there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from engine.network import nftables
from engine.network.errors import NetworkError
from engine.network.names import check_ifname
from engine.network.nftables import FAMILY, TABLE

__all__ = ["FORWARD_CHAINS", "BridgeFirewall", "ensure_firewall", "firewalls", "remove_firewall"]

# iptables-nft's FORWARD chains, where a DROP policy or rule would drop the bridges' traffic.
FORWARD_CHAINS: Final = (("ip", "filter", "FORWARD"), ("ip6", "filter", "FORWARD"))
_CHAIN: Final = "forward"
_SET: Final = "bridges"
_FILTER: Final = 0  # the priority named "filter"
_FROM_OUTSIDE: Final = ["invalid", "new", "untracked"]  # as libnftables lists them back
_ATTEMPTS: Final = 3

Isolation = Literal["network", "internal"]
Expr = list[dict[str, Any]]


@dataclass(frozen=True)
class BridgeFirewall:
    """A bridge's firewall as read back from the kernel: its isolation in our table (None
    when its rules there are not exactly one of the two kinds, or it is not in the set), and
    the other tables' forward chains that accept its traffic ("ip filter FORWARD"…)."""

    isolation: Isolation | None
    accepted_by: tuple[str, ...] = ()


def ensure_firewall(bridge: str, internal: bool = False) -> None:
    """Give `bridge` its isolation (that of an internal network with `internal`) and its
    accepts in the host's iptables-nft forward chains, in one transaction; whatever is
    already as wanted is left as it is, any other rule commented with its name is removed."""
    check_ifname(bridge)
    _converge(bridge, "internal" if internal else "network")


def remove_firewall(bridge: str) -> None:
    """Remove every rule of `bridge` from our table (the table too when they were its last)
    and from the forward chains; nothing to do when there are none, nor when libnftables is
    not installed (then nothing of ours can have been added)."""
    check_ifname(bridge)
    if nftables.available():
        _converge(bridge, None)


def firewalls() -> dict[str, BridgeFirewall]:
    """The firewalls in the kernel, read back: bridge → what it has."""
    listing = nftables.read_ours()
    rules = listing.rules_of(_CHAIN)
    members = set(listing.sets.get(_SET, ()))
    named = {r.get("comment") for r in rules} | members
    found = {
        bridge: BridgeFirewall(_isolation_of(bridge, rules, members))
        for bridge in named
        if isinstance(bridge, str)
    }
    for family, table, chain in FORWARD_CHAINS:
        listed = nftables.base_chain_rules(family, table, chain, "forward") or []
        for bridge in {r.get("comment") for r in listed}:
            mine = [r for r in listed if r.get("comment") == bridge]
            if isinstance(bridge, str) and _sort(mine, _accepts(bridge)) == ([], []):
                had = found.get(bridge, BridgeFirewall(None))
                accepted_by = (*had.accepted_by, f"{family} {table} {chain}")
                found[bridge] = BridgeFirewall(had.isolation, accepted_by)
    return found


def _isolation_of(bridge: str, rules: list[dict[str, Any]], members: set[Any]) -> Isolation | None:
    if bridge not in members:
        return None
    mine = [r for r in rules if r.get("comment") == bridge]
    kinds: tuple[Isolation, ...] = ("network", "internal")
    return next((k for k in kinds if _sort(mine, _isolation(bridge, k)) == ([], [])), None)


def _converge(bridge: str, isolation: Isolation | None) -> None:
    """Make `bridge`'s rules and membership be those of `isolation` (None: none at all), in
    one transaction; the chain and the set go when no other bridge is left in them. Another
    program may change a forward chain between our reading it and our transaction (Docker
    flushes it as it starts): the transaction then fails as a whole, and is tried again on a
    fresh reading."""
    for attempt in range(_ATTEMPTS):
        try:
            _converge_once(bridge, isolation)
            return
        except NetworkError:
            if attempt == _ATTEMPTS - 1:
                raise


def _converge_once(bridge: str, isolation: Isolation | None) -> None:
    with nftables.locked():
        listing = nftables.read_ours()
        stale, commands = _isolate(listing, bridge, isolation)
        for family, table, chain in FORWARD_CHAINS:
            rules = nftables.base_chain_rules(family, table, chain, "forward")
            if rules is None:
                continue
            gone, lacking = _sort(
                [r for r in rules if r.get("comment") == bridge],
                _accepts(bridge) if isolation else [],
            )
            stale += gone
            foreign = {"family": family, "table": table}
            commands += [{"insert": {"rule": _rule(foreign, chain, bridge, e)}} for e in lacking]
        what = f"set the firewall of {bridge}" if isolation else f"remove the firewall of {bridge}"
        nftables.change_ours(what, listing, stale, commands)


def _isolate(
    listing: nftables.Listing, bridge: str, isolation: Isolation | None
) -> tuple[list[dict[str, Any]], list[nftables.Command]]:
    """What to delete from our table, and what to run on it, for `bridge` to have
    `isolation`: its rules and its member of the set (none of either for None)."""
    ours = listing.rules_of(_CHAIN)
    wanted = _isolation(bridge, isolation) if isolation else []
    stale, missing = _sort([r for r in ours if r.get("comment") == bridge], wanted)
    members = listing.sets.get(_SET, ())
    where = {"family": FAMILY, "table": TABLE}
    element = {**where, "name": _SET, "elem": [bridge]}
    commands: list[nftables.Command] = []
    if isolation and (missing or bridge not in members):
        base = nftables.our_chain(_CHAIN, "filter", "forward", _FILTER)
        commands += [{"add": {"chain": base}}, {"add": {"set": _set()}}]
        if bridge not in members:
            commands.append({"add": {"element": element}})
        commands += [{"add": {"rule": _rule(where, _CHAIN, bridge, e)}} for e in missing]
    elif not isolation:
        others = any(r.get("comment") != bridge for r in ours) or any(m != bridge for m in members)
        if others and bridge in members:
            commands.append({"delete": {"element": element}})
        if not others and _CHAIN in listing.chains:
            commands.append({"delete": {"chain": {**where, "name": _CHAIN}}})
        if not others and _SET in listing.sets:
            commands.append({"delete": {"set": {**where, "name": _SET}}})
    return stale, commands


def _sort(
    listed: Iterable[dict[str, Any]], wanted: list[Expr]
) -> tuple[list[dict[str, Any]], list[Expr]]:
    """The listed rules that are not wanted (or repeat one), and the wanted ones not listed."""
    kept: list[Expr] = []
    stale: list[dict[str, Any]] = []
    for rule in listed:
        expr = rule.get("expr")
        if expr in wanted and expr not in kept:
            kept.append(expr)
        else:
            stale.append(rule)
    return stale, [e for e in wanted if e not in kept]


def _isolation(bridge: str, isolation: Isolation) -> list[Expr]:
    """Our chain's rules for `bridge`, as libnftables writes them back."""
    if isolation == "internal":
        return [
            [_meta("iifname", "==", bridge), _meta("oifname", "!=", bridge), {"drop": None}],
            [_meta("oifname", "==", bridge), _meta("iifname", "!=", bridge), {"drop": None}],
        ]
    state = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": _FROM_OUTSIDE}}
    return [
        [
            _meta("iifname", "==", bridge),
            _meta("oifname", "==", f"@{_SET}"),
            _meta("oifname", "!=", bridge),
            {"drop": None},
        ],
        [_meta("oifname", "==", bridge), _meta("iifname", "!=", bridge), state, {"drop": None}],
    ]


def _accepts(bridge: str) -> list[Expr]:
    """The forward chains' rules for `bridge`."""
    return [[_meta(key, "==", bridge), {"accept": None}] for key in ("iifname", "oifname")]


def _meta(key: str, op: str, right: str) -> dict[str, Any]:
    return {"match": {"op": op, "left": {"meta": {"key": key}}, "right": right}}


def _rule(where: dict[str, str], chain: str, bridge: str, expr: Expr) -> dict[str, Any]:
    return {**where, "chain": chain, "comment": bridge, "expr": expr}


def _set() -> dict[str, Any]:
    return {"family": FAMILY, "table": TABLE, "name": _SET, "type": "ifname"}
