"""nftables for the engine: the one binding to libnftables (`run`), and composer's own table
in the ruleset, `inet composer`, which nat.py (masquerade) and firewall.py (forward filter)
share.

The library is libnftables (Debian: libnftables1), the one `nft` itself is built on, through
its JSON interface (libnftables-json(5)) over ctypes: rules are written and read back as
documented JSON objects, comments and handles included, in atomic batches. pyroute2's
nftables module only builds raw netlink expressions (no IPv6 or interface-name helpers, no
reading back of comments in dict form) and calls itself experimental; the `nftables` Python
binding is a Debian package for Debian's own Python, not on PyPI, and is itself a thin ctypes
layer over the same library.

Each user of our table marks its rules with a comment naming the bridge they are for, reads
them back (`read_ours`) and hands `change_ours` the rules to delete and the commands to run:
one transaction, after which the table is deleted if no rule is left in it, whoever's rules
they were. Changes are made under an flock of LOCK_PATH, so that two stacks changing rules
at once cannot remove the table one of them has just added to.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from engine.network.errors import NetworkError

__all__ = [
    "FAMILY",
    "LOCK_PATH",
    "TABLE",
    "Listing",
    "available",
    "base_chain_rules",
    "change_ours",
    "locked",
    "nftables_ruleset",
    "our_chain",
    "read_ours",
    "run",
]

TABLE: Final = "composer"
FAMILY: Final = "inet"  # one rule set for IPv4 and IPv6
LOCK_PATH: Final = Path("/run/composer-nftables.lock")
_LIBRARY: Final = "libnftables.so.1"
# libnftables.h: nft_ctx_output_flags and nft_ctx_input_flags.
_OUTPUT_STATELESS: Final = 1 << 2
_OUTPUT_HANDLE: Final = 1 << 3
_OUTPUT_JSON: Final = 1 << 4
_INPUT_JSON: Final = 1 << 1

Command = dict[str, Any]


@dataclass(frozen=True)
class Listing:
    """Our table as read back: whether it exists, the names of its chains, its sets (name →
    elements) and its rules as libnftables lists them (handles and comments included)."""

    exists: bool
    chains: frozenset[str] = frozenset()
    sets: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    rules: tuple[dict[str, Any], ...] = ()

    def rules_of(self, chain: str) -> list[dict[str, Any]]:
        return [r for r in self.rules if r.get("chain") == chain]


def available() -> bool:
    """Whether libnftables can be loaded (when it cannot, no rule of ours can exist)."""
    try:
        _library()
    except NetworkError:
        return False
    return True


def nftables_ruleset() -> list[str]:
    """Every table, chain, set and rule of this network namespace's nftables ruleset (every
    table's, not only ours), each as one JSON text without counters' values: to compare the
    ruleset before and after."""
    objects = run("list the nftables ruleset", [{"list": {"ruleset": None}}], _OUTPUT_STATELESS)
    return [json.dumps(o, sort_keys=True) for o in objects if "metainfo" not in o]


def read_ours() -> Listing:
    tables = run("list the nftables tables", [{"list": {"tables": None}}])
    if not any(_is_ours(o.get("table", {}), "name") for o in tables):
        return Listing(exists=False)
    listed = run(
        f"list the nftables table {FAMILY} {TABLE}",
        [{"list": {"table": {"family": FAMILY, "name": TABLE}}}],
    )
    return Listing(
        exists=True,
        chains=frozenset(o["chain"]["name"] for o in listed if "chain" in o),
        sets={o["set"]["name"]: tuple(o["set"].get("elem", ())) for o in listed if "set" in o},
        rules=tuple(o["rule"] for o in listed if "rule" in o),
    )


def change_ours(
    what: str, listing: Listing, stale: Sequence[dict[str, Any]], commands: Sequence[Command]
) -> None:
    """Delete the listed rules `stale` (of any table), then run `commands` (adding the table
    first), in one transaction; when that leaves no rule in our table, the table is deleted
    instead of being changed (commands on other tables still run). Nothing is run when there
    is nothing to do."""
    if not stale and not commands:
        return
    gone = {r["handle"] for r in stale if _is_ours(r, "table")}
    adds = any(
        verb in ("add", "insert") and "rule" in body and _is_ours(body["rule"], "table")
        for command in commands
        for verb, body in command.items()
    )
    deletes = [
        {"delete": {"rule": {k: r[k] for k in ("family", "table", "chain", "handle")}}}
        for r in stale
    ]
    table = {"family": FAMILY, "name": TABLE}
    if adds or any(r["handle"] not in gone for r in listing.rules):
        batch = [{"add": {"table": table}}, *deletes, *commands]
    else:
        batch = [d for d, r in zip(deletes, stale, strict=True) if not _is_ours(r, "table")]
        batch += [c for c in commands if not any(_about_ours(body) for body in c.values())]
        if listing.exists:
            batch.append({"delete": {"table": table}})
    if batch:
        run(what, batch)


def our_chain(name: str, kind: str, hook: str, priority: int) -> dict[str, Any]:
    """A base chain of our table, as `add chain` takes it: whatever its rules do not decide
    is accepted (another table's chain may still drop it)."""
    return {
        "family": FAMILY,
        "table": TABLE,
        "name": name,
        "type": kind,
        "hook": hook,
        "prio": priority,
        "policy": "accept",
    }


def base_chain_rules(family: str, table: str, chain: str, hook: str) -> list[dict[str, Any]] | None:
    """The rules of base chain `family table chain` on `hook`, or None when there is none
    (another program's chain: an iptables-nft one, say)."""
    chains = run("list the nftables chains", [{"list": {"chains": None}}])
    wanted = {"family": family, "table": table, "name": chain, "hook": hook}
    if not any(wanted.items() <= o.get("chain", {}).items() for o in chains):
        return None
    listed = run(
        f"list the nftables chain {family} {table} {chain}",
        [{"list": {"chain": {"family": family, "table": table, "name": chain}}}],
    )
    return [o["rule"] for o in listed if "rule" in o]


def _is_ours(fields: dict[str, Any], key: str) -> bool:
    return fields.get("family") == FAMILY and fields.get(key) == TABLE


def _about_ours(body: dict[str, Any]) -> bool:
    """Whether a command's object (`{"rule": {...}}`, `{"set": {...}}`…) is in our table."""
    return any(_is_ours(o, "name" if kind == "table" else "table") for kind, o in body.items())


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold LOCK_PATH: what is read from our table meanwhile stays true until it is changed."""
    try:
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NetworkError(f"cannot open the nftables lock {LOCK_PATH}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
            f"stack networks' filtering and NAT need libnftables ({exc}): install it "
            "(Debian: apt-get install libnftables1)"
        ) from exc
    for name, (argtypes, restype) in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype
    if hasattr(lib, _INPUT_FLAGS):
        getattr(lib, _INPUT_FLAGS).argtypes = [ctypes.c_void_p, ctypes.c_uint]
    return lib


def run(what: str, commands: list[Command], flags: int = 0) -> list[dict[str, Any]]:
    """Run `commands` (libnftables JSON) as one transaction in this thread's network
    namespace; the objects it printed (listings). `what` says what they do, for errors."""
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
