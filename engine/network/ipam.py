"""Choosing subnets for stack networks and addresses for containers: pure functions over
what is already taken, and `host_networks`, what the host itself already uses."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any, TypeVar, overload

from engine.network.errors import NetworkError

__all__ = ["allocate_address", "allocate_subnet", "gateway_of", "host_networks"]

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
_N = TypeVar("_N", IPv4Network, IPv6Network)


def host_networks() -> list[Network]:
    """Every network the host already reaches directly: the subnets of its addresses and the
    destinations of its routes (of every table; default routes excepted, they cover all)."""
    from engine.network.rtnl import Rtnl

    found: set[Network] = set()
    with Rtnl() as rtnl:
        found.update(a.interface.network for a in rtnl.addresses())
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in rtnl.routes(family):
                if route.dst is not None and route.dst_len > 0:
                    found.add(ip_network(f"{route.dst}/{route.dst_len}", strict=False))
    return sorted(found, key=lambda n: (n.version, n))


def allocate_subnet(pool: Sequence[tuple[_N, int]], taken: Iterable[Network]) -> _N:
    """The first subnet of the pool that overlaps nothing in `taken`. Each pool entry is a
    base network and the prefix length of the subnets cut from it, e.g. (172.30.0.0/16, 24);
    entries are tried in order."""
    taken = list(taken)
    for base, prefixlen in pool:
        if not base.prefixlen <= prefixlen <= base.max_prefixlen - 2:
            raise NetworkError(
                f"cannot cut /{prefixlen} subnets from {base}: the length must be within "
                f"/{base.prefixlen} and /{base.max_prefixlen - 2}"
            )
        near = [n for n in taken if n.version == base.version and n.overlaps(base)]
        for candidate in base.subnets(new_prefix=prefixlen):
            if not any(candidate.overlaps(n) for n in near):
                return candidate
    described = ", ".join(f"{base} (/{length} each)" for base, length in pool) or "(empty)"
    raise NetworkError(
        f"no free subnet left in the address pool {described}: every one overlaps a network "
        "of the host or of another stack"
    )


@overload
def gateway_of(subnet: IPv4Network) -> IPv4Address: ...
@overload
def gateway_of(subnet: IPv6Network) -> IPv6Address: ...
def gateway_of(subnet: Network) -> Address:
    """The gateway of a subnet: its first host address."""
    if subnet.num_addresses < 4:
        raise NetworkError(f"subnet {subnet} is too small for a gateway and a container")
    return subnet.network_address + 1


@overload
def allocate_address(
    subnet: IPv4Network,
    gateway: IPv4Address | None,
    taken: Mapping[IPv4Address, str],
    ip_range: IPv4Network | None = None,
    wanted: IPv4Address | str | None = None,
) -> IPv4Address: ...
@overload
def allocate_address(
    subnet: IPv6Network,
    gateway: IPv6Address | None,
    taken: Mapping[IPv6Address, str],
    ip_range: IPv6Network | None = None,
    wanted: IPv6Address | str | None = None,
) -> IPv6Address: ...
def allocate_address(
    subnet: Network,
    gateway: Address | None,
    taken: Mapping[Any, str],
    ip_range: Network | None = None,
    wanted: Address | str | None = None,
) -> Address:
    """An address of `subnet` for a container: `wanted` when given and free, else the lowest
    free one (of `ip_range`, when given). Never the network, broadcast or gateway address, nor
    one of `taken`, which maps each address in use to who has it (named in the error)."""
    if ip_range is not None and not _within(ip_range, subnet):
        raise NetworkError(f"ip_range {ip_range} is not within subnet {subnet}")
    if wanted is not None:
        return _check_wanted(subnet, gateway, taken, wanted)
    span = ip_range or subnet
    first = max(int(span.network_address), int(subnet.network_address) + 1)
    last = int(span.broadcast_address)
    if subnet.version == 4:  # IPv6 has no broadcast address
        last = min(last, int(subnet.broadcast_address) - 1)
    used = {int(address) for address in taken}
    if gateway is not None:
        used.add(int(gateway))
    make = type(subnet.network_address)
    for candidate in range(first, last + 1):
        if candidate not in used:
            return make(candidate)
    where = f"ip_range {ip_range} of {subnet}" if ip_range is not None else f"subnet {subnet}"
    raise NetworkError(f"no free address left in {where} ({len(taken)} taken)")


def _within(inner: Network, outer: Network) -> bool:
    if isinstance(inner, IPv4Network) and isinstance(outer, IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, IPv6Network) and isinstance(outer, IPv6Network):
        return inner.subnet_of(outer)
    return False


def _check_wanted(
    subnet: Network, gateway: Address | None, taken: Mapping[Any, str], wanted: Address | str
) -> Address:
    try:
        address = ip_address(wanted) if isinstance(wanted, str) else wanted
    except ValueError:
        raise NetworkError(f"{wanted} is not an IP address") from None
    if address.version != subnet.version or address not in subnet:
        raise NetworkError(f"{address} is outside subnet {subnet}")
    if address == subnet.network_address:
        raise NetworkError(f"{address} is the network address of {subnet}")
    if subnet.version == 4 and address == subnet.broadcast_address:
        raise NetworkError(f"{address} is the broadcast address of {subnet}")
    if address == gateway:
        raise NetworkError(f"{address} is the gateway of {subnet}")
    owner = taken.get(address)
    if owner is not None:
        raise NetworkError(f"{address} is already taken by {owner}")
    return address
