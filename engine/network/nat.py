"""Outbound NAT of a bridge's subnets: what its containers send out of any other interface
leaves with the address of that interface (masquerade), as Docker does for its bridges.

The rules live in one nftables table of our own, `inet composer`, whose only chain is
`postrouting` (type nat, hook postrouting, priority srcnat). Each bridge has one rule per
subnet (IPv4, and IPv6 when it has one), commented with the bridge's name:

    ip saddr 10.213.4.0/24 oifname != "cb-webk3x9q2ab" masquerade comment "cb-webk3x9q2ab"

so `ensure_masquerade` can find and keep them (running it twice leaves one rule),
`remove_masquerade` takes one bridge's rules and leaves the others', and the table goes with
its last rule. Another table (iptables-nft's, firewalld's) is never touched. Changes are made
under an flock of LOCK_PATH, so that two stacks changing their rules at once cannot remove
the table one of them has just added to; each change is one nftables transaction.

Nothing is added to the forward hook: the kernel accepts forwarded packets unless a chain
there drops them. A host whose forward policy drops (Docker sets iptables' FORWARD to DROP)
needs an accept of its own for the bridges' traffic; an accept in another table would not
override that drop anyway, since every base chain on a hook must accept a packet.

The library is libnftables (Debian: libnftables1), the one `nft` itself is built on, through
its JSON interface (libnftables-json(5)) over ctypes: rules are written and read back as
documented JSON objects, comments and handles included, in atomic batches. pyroute2's
nftables module only builds raw netlink expressions (no IPv6 or interface-name helpers, no
reading back of comments in dict form) and calls itself experimental; the `nftables` Python
binding is a Debian package for Debian's own Python, not on PyPI, and is itself a thin ctypes
layer over the same library.

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
import ctypes
import fcntl
import functools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Final

from engine.network.bridge import PROC_SYS, enable_ip_forwarding
from engine.network.errors import NetworkError
from engine.network.names import check_ifname

__all__ = [
    "LOCK_PATH",
    "TABLE",
    "ensure_masquerade",
    "masquerade_rules",
    "nftables_ruleset",
    "remove_masquerade",
]

TABLE: Final = "composer"  # family inet: one rule set for IPv4 and IPv6
LOCK_PATH: Final = Path("/run/composer-nat.lock")
_FAMILY: Final = "inet"
_CHAIN: Final = "postrouting"
_SRCNAT: Final = 100
_LIBRARY: Final = "libnftables.so.1"
# libnftables.h: nft_ctx_output_flags and nft_ctx_input_flags.
_OUTPUT_STATELESS: Final = 1 << 2
_OUTPUT_HANDLE: Final = 1 << 3
_OUTPUT_JSON: Final = 1 << 4
_INPUT_JSON: Final = 1 << 1

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
    try:
        _library()
    except NetworkError:
        return
    _converge(bridge, [])


def masquerade_rules() -> dict[str, list[str]]:
    """The masquerades in the kernel, read back from our table: bridge → its subnets."""
    found: dict[str, list[str]] = {}
    for rule in _rules()[1]:
        if rule.bridge is not None and rule.subnet is not None and rule.well_formed:
            found.setdefault(rule.bridge, []).append(str(rule.subnet))
    return found


def nftables_ruleset() -> list[str]:
    """Every table, chain, set and rule of this network namespace's nftables ruleset (every
    table's, not only ours), each as one JSON text without counters' values: to compare the
    ruleset before and after."""
    objects = _run("list the nftables ruleset", [{"list": {"ruleset": None}}], _OUTPUT_STATELESS)
    return [json.dumps(o, sort_keys=True) for o in objects if "metainfo" not in o]


@dataclass(frozen=True)
class _Rule:
    """A rule of our chain as read back: its handle, the bridge its comment names (None: not
    ours), the source subnet it matches, and whether it is exactly a masquerade of that
    subnet out of every interface but the bridge."""

    handle: int
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
    transaction; the table goes when nothing would be left in it."""
    with _locked():
        exists, rules = _rules()
        kept: list[Subnet] = []
        stale: list[_Rule] = []
        for rule in (r for r in rules if r.bridge == bridge):
            subnet = rule.subnet if rule.well_formed else None
            if subnet is not None and subnet in wanted and subnet not in kept:
                kept.append(subnet)
            else:
                stale.append(rule)
        missing = [s for s in wanted if s not in kept]
        others = any(r.bridge != bridge for r in rules)
        table = {"family": _FAMILY, "name": TABLE}
        commands: list[dict[str, Any]]
        if exists and not (others or kept or missing):
            what, commands = f"remove the masquerade of {bridge}", [{"delete": {"table": table}}]
        elif stale or missing:
            what = (
                f"set the masquerade of {bridge} to {', '.join(map(str, wanted))}"
                if wanted
                else f"remove the masquerade of {bridge}"
            )
            commands = [
                {"add": {"table": table}},
                {"add": {"chain": _chain()}},
                *({"delete": {"rule": {**_where(), "handle": r.handle}}} for r in stale),
                *({"add": {"rule": _rule(bridge, s)}} for s in missing),
            ]
        else:
            return
        _run(what, commands)


def _chain() -> dict[str, Any]:
    return {
        "family": _FAMILY,
        "table": TABLE,
        "name": _CHAIN,
        "type": "nat",
        "hook": "postrouting",
        "prio": _SRCNAT,
        "policy": "accept",
    }


def _where() -> dict[str, str]:
    return {"family": _FAMILY, "table": TABLE, "chain": _CHAIN}


def _rule(bridge: str, subnet: Subnet) -> dict[str, Any]:
    return {**_where(), "comment": bridge, "expr": _expr(bridge, subnet)}


def _expr(bridge: str, subnet: Subnet) -> list[dict[str, Any]]:
    """`ip[6] saddr SUBNET oifname != BRIDGE masquerade`, as libnftables writes it back."""
    source = {"payload": {"protocol": "ip" if subnet.version == 4 else "ip6", "field": "saddr"}}
    prefix = {"prefix": {"addr": str(subnet.network_address), "len": subnet.prefixlen}}
    return [
        {"match": {"op": "==", "left": source, "right": prefix}},
        {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": bridge}},
        {"masquerade": None},
    ]


def _rules() -> tuple[bool, list[_Rule]]:
    """Whether our table exists, and the rules of its chains."""
    tables = _run("list the nftables tables", [{"list": {"tables": None}}])
    ours = {"family": _FAMILY, "name": TABLE}
    if not any(ours.items() <= o.get("table", {}).items() for o in tables):
        return False, []
    listed = _run(
        f"list the nftables table {_FAMILY} {TABLE}",
        [{"list": {"table": {"family": _FAMILY, "name": TABLE}}}],
    )
    return True, [_parse(o["rule"]) for o in listed if "rule" in o]


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
        bridge is not None
        and subnet is not None
        and rule.get("chain") == _CHAIN
        and _same(rule.get("expr"), _expr(bridge, subnet))
    )
    return _Rule(int(rule["handle"]), bridge, subnet, well_formed)


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


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    try:
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NetworkError(f"cannot open the NAT lock {LOCK_PATH}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _switch_on(path: Path) -> None:
    try:
        if path.read_text().strip() != "1":
            path.write_text("1\n")
    except OSError as exc:
        raise NetworkError(f"cannot set {path} to 1: {exc.strerror}") from exc


# libnftables.h: (argument types, result type) of what we call.
_SIGNATURES: Final[dict[str, tuple[list[Any], Any]]] = {
    "nft_ctx_new": ([ctypes.c_uint32], ctypes.c_void_p),
    "nft_ctx_free": ([ctypes.c_void_p], None),
    "nft_ctx_output_set_flags": ([ctypes.c_void_p, ctypes.c_uint], None),
    "nft_ctx_buffer_output": ([ctypes.c_void_p], ctypes.c_int),
    "nft_ctx_buffer_error": ([ctypes.c_void_p], ctypes.c_int),
    "nft_ctx_get_output_buffer": ([ctypes.c_void_p], ctypes.c_char_p),
    "nft_ctx_get_error_buffer": ([ctypes.c_void_p], ctypes.c_char_p),
    "nft_run_cmd_from_buffer": ([ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int),
}
_INPUT_FLAGS: Final = "nft_ctx_input_set_flags"  # 1.0.7 on; before, JSON output implies input


@functools.cache
def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(_LIBRARY)
    except OSError as exc:
        raise NetworkError(
            f"outbound NAT needs libnftables ({exc}): install it (Debian: apt-get install "
            "libnftables1)"
        ) from exc
    for name, (argtypes, restype) in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype
    if hasattr(lib, _INPUT_FLAGS):
        getattr(lib, _INPUT_FLAGS).argtypes = [ctypes.c_void_p, ctypes.c_uint]
    return lib


def _run(what: str, commands: list[dict[str, Any]], flags: int = 0) -> list[dict[str, Any]]:
    """Run `commands` (libnftables JSON) as one transaction in this thread's network
    namespace; the objects it printed (listings)."""
    lib = _library()
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise NetworkError(f"cannot {what}: libnftables could not make a context")
    try:
        lib.nft_ctx_output_set_flags(ctx, _OUTPUT_JSON | _OUTPUT_HANDLE | flags)
        if hasattr(lib, _INPUT_FLAGS):
            getattr(lib, _INPUT_FLAGS)(ctx, _INPUT_JSON)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        status = lib.nft_run_cmd_from_buffer(ctx, json.dumps({"nftables": commands}).encode())
        output = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        error = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)
    if status != 0:
        reason = " ".join(error.replace("internal:0:0-0: Error: ", "").split()) or "refused"
        raise NetworkError(f"cannot {what} (nftables: {reason})")
    if not output.strip():
        return []
    try:
        listed: list[dict[str, Any]] = json.loads(output)["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NetworkError(f"cannot {what}: libnftables printed {output[:200]!r}") from exc
    return listed
