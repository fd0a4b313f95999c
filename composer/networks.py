"""A stack's networks, decided: which bridge and subnet each network gets and which address
each container gets on it, kept in the state store so they survive restarts and heals; the
engine is then asked to make the bridges and plumb the containers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_network,
)
from typing import TYPE_CHECKING, Final

from composer.errors import ComposerError
from composer.state import AddressRecord, NetworkRecord, StateStore

if TYPE_CHECKING:  # the models are loaded by whoever has a stack (not by `down`)
    from composer.config.project import Network, Project
    from composer.config.service import Service, ServiceNetwork
    from engine.network.bridge import BridgeSpec
    from engine.network.veth import Attachment

__all__ = [
    "Allocations",
    "attachments",
    "bridge_spec",
    "ensure_networks",
    "network_name",
    "own_network",
    "remove_networks",
    "service_networks",
]

_IPV6_POOL: Final = ((IPv6Network("fd42:c0de::/48"), 64),)


def network_name(project: Project, key: str) -> str:
    """The network's name on the host: its `name:`, else `PROJECT_KEY`, as docker compose."""
    network = project.networks.get(key)
    return (network.name if network and network.name else None) or f"{project.name}_{key}"


def own_network(service: Service) -> bool:
    """Whether the service's containers get networks of the stack (not `network_mode`)."""
    return not service.network_mode


def service_networks(service: Service) -> list[tuple[str, ServiceNetwork]]:
    """The networks a service joins, the first (eth0, default route) first: by `priority`,
    highest first, then by name, as docker compose orders them."""
    if not own_network(service):
        return []
    from composer.config.service import ServiceNetwork

    joined = service.networks or {"default": None}
    entries = [(key, options or ServiceNetwork()) for key, options in joined.items()]
    return sorted(entries, key=lambda e: (-(e[1].priority or 0), e[0]))


def _used(project: Project) -> list[str]:
    keys: dict[str, None] = {}
    for service in project.services.values():
        for key, _ in service_networks(service):
            keys[key] = None
    return list(keys)


@dataclass(frozen=True)
class _Pools:
    """What a new subnet must not overlap: the host's networks and every stack's."""

    taken: list[IPv4Network | IPv6Network]

    @classmethod
    def observe(cls, store: StateStore) -> _Pools:
        from engine.network.ipam import host_networks

        taken = list(host_networks())
        for record in store.networks():
            taken.append(ip_network(record.subnet))
            if record.subnet6:
                taken.append(ip_network(record.subnet6))
        return cls(taken)


def ensure_networks(
    project: Project,
    store: StateStore,
    pools: Iterable[tuple[str, int]],
    *,
    outbound_nat: bool = False,
) -> dict[str, NetworkRecord]:
    """Every network the stack's services use, allocated (once: the allocation is kept) and
    its bridge made or repaired with its firewall (kept apart from other networks, its own
    traffic accepted by the host's iptables-nft forward chains), and with `outbound_nat` what
    a non-internal one sends off the host masqueraded; key → record. External networks are
    looked up by name (their own stack keeps their firewall)."""
    from engine.network.bridge import bridge_exists, enable_ip_forwarding, ensure_bridge
    from engine.network.firewall import ensure_firewall
    from engine.network.nat import ensure_masquerade

    if outbound_nat:  # first: switching it on resets every interface's own switch (bridge.py)
        enable_ip_forwarding()
    from composer.config.project import Network

    known = {record.key: record for record in store.networks(project.name)}
    records: dict[str, NetworkRecord] = {}
    observed: _Pools | None = None
    for key in _used(project):
        network = project.networks.get(key) or Network()
        name = network_name(project, key)
        if network.external:
            found = store.network_named(name)
            if found is None or not bridge_exists(found.bridge):
                raise ComposerError(
                    f"network {name} declared as external, but could not be found "
                    "(bring up the stack that makes it first)"
                )
            records[key] = found
            continue
        record = known.get(key)
        if record is None:
            observed = observed or _Pools.observe(store)
            record = _allocate(project, key, name, network, observed, pools)
            observed.taken.append(ip_network(record.subnet))
            store.put_network(record)
        ensure_firewall(record.bridge, internal=record.internal)  # before: never without it
        ensure_bridge(bridge_spec(record))
        if outbound_nat and not record.internal:
            ensure_masquerade(record.bridge, [s for s in (record.subnet, record.subnet6) if s])
        records[key] = record
    return records


def _allocate(
    project: Project,
    key: str,
    name: str,
    network: Network,
    observed: _Pools,
    pools: Iterable[tuple[str, int]],
) -> NetworkRecord:
    from engine.network.bridge import bridge_name
    from engine.network.errors import NetworkError
    from engine.network.ipam import allocate_subnet, gateway_of

    configured = list(network.ipam.config or []) if network.ipam else []
    v4 = [c for c in configured if c.subnet and ip_network(c.subnet, strict=False).version == 4]
    v6 = [c for c in configured if c.subnet and ip_network(c.subnet, strict=False).version == 6]
    try:
        if v4:
            subnet = IPv4Network(v4[0].subnet, strict=False)
            clash = [n for n in observed.taken if n.version == 4 and n.overlaps(subnet)]
            if clash:
                raise ComposerError(
                    f"network {name}: subnet {subnet} overlaps {clash[0]}, already in use on "
                    "this host"
                )
            gateway = IPv4Address(v4[0].gateway) if v4[0].gateway else gateway_of(subnet)
        else:
            subnet = allocate_subnet(
                [(IPv4Network(base), size) for base, size in pools], observed.taken
            )
            gateway = gateway_of(subnet)
        subnet6 = gateway6 = None
        if network.enable_ipv6:
            if v6:
                subnet6 = IPv6Network(v6[0].subnet, strict=False)
                gateway6 = IPv6Address(v6[0].gateway) if v6[0].gateway else gateway_of(subnet6)
            else:
                subnet6 = allocate_subnet(_IPV6_POOL, observed.taken)
                gateway6 = gateway_of(subnet6)
    except NetworkError as exc:
        raise ComposerError(f"network {name}: {exc}") from exc
    mtu = int((network.driver_opts or {}).get("com.docker.network.driver.mtu", 1500))
    return NetworkRecord(
        project=project.name,
        key=key,
        name=name,
        bridge=bridge_name(project.name, key),
        subnet=str(subnet),
        gateway=str(gateway),
        subnet6=str(subnet6) if subnet6 else None,
        gateway6=str(gateway6) if gateway6 else None,
        internal=bool(network.internal),
        mtu=mtu,
    )


class Allocations:
    """The IPv4 addresses on each bridge as the state store has them, read once per bridge and
    kept up to date as containers get theirs: giving N containers their addresses reads and
    parses the bridge's N, not N times N."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._on: dict[str, dict[str, IPv4Address]] = {}  # bridge → container → address

    def on(self, bridge: str) -> dict[str, IPv4Address]:
        if bridge not in self._on:
            self._on[bridge] = {a.container: IPv4Address(a.address)
                                for a in self.store.addresses(bridge=bridge)
                                if ":" not in a.address}  # fmt: skip
        return self._on[bridge]

    def put(self, record: AddressRecord) -> None:
        self.store.put_address(record)
        self.on(record.bridge)[record.container] = IPv4Address(record.address)


def attachments(
    project: Project,
    service_name: str,
    container_id: str,
    records: dict[str, NetworkRecord],
    store: StateStore,
    allocations: Allocations | None = None,
) -> list[Attachment]:
    """The container's place on each of its service's networks (eth0, eth1… in priority
    order), its addresses allocated — or kept from before — and recorded with the names its
    peers find it by: the service, the container's name, its aliases (`allocations`: those
    of the containers given theirs before, when there are several)."""
    from engine.network.errors import NetworkError
    from engine.network.ipam import allocate_address
    from engine.network.veth import Attachment, veth_name

    allocations = allocations or Allocations(store)
    service = project.services[service_name]
    result = []
    for index, (key, options) in enumerate(service_networks(service)):
        record = records[key]
        subnet = IPv4Network(record.subnet)
        on_bridge = allocations.on(record.bridge)
        found = on_bridge.get(container_id)
        mine = str(found) if found is not None else None
        wanted = options.ipv4_address
        address = mine if mine and (not wanted or wanted == mine) else None
        if address is None:
            taken = {at: owner for owner, at in on_bridge.items() if owner != container_id}
            network = project.networks.get(key)
            ip_range = _ip_range(network)
            try:
                address = str(
                    allocate_address(subnet, IPv4Address(record.gateway), taken, ip_range, wanted)
                )
            except NetworkError as exc:
                where = f"services.{service_name}.networks.{key}.ipv4_address"
                raise ComposerError(
                    f"{where}: {exc}" if wanted else f"network {record.name}: {exc}"
                ) from exc
        names = tuple(dict.fromkeys([service_name, container_id, *(options.aliases or [])]))
        allocations.put(AddressRecord(record.bridge, address, container_id, names))
        address6 = None
        if record.subnet6:
            address6 = IPv6Interface(
                f"{_ipv6_for(record, address)}/{IPv6Network(record.subnet6).prefixlen}"
            )
        first = index == 0 and not record.internal
        result.append(
            Attachment(
                bridge=record.bridge,
                host_ifname=veth_name(container_id, index),
                ifname=f"eth{index}",
                address=IPv4Interface(f"{address}/{subnet.prefixlen}"),
                gateway=IPv4Address(record.gateway) if first else None,
                mtu=record.mtu,
                mac=options.mac_address,
                address6=address6,
                gateway6=IPv6Address(record.gateway6) if first and record.gateway6 else None,
            )
        )
    return result


def _ip_range(network: Network | None) -> IPv4Network | None:
    if network is None or network.ipam is None:
        return None
    for pool in network.ipam.config or []:
        if pool.ip_range and ip_network(pool.ip_range, strict=False).version == 4:
            return IPv4Network(pool.ip_range, strict=False)
    return None


def _ipv6_for(record: NetworkRecord, address: str) -> IPv6Address:
    """The container's IPv6 address: its IPv4 host number in the IPv6 subnet (unique as the
    IPv4 one is, and needs no allocation of its own)."""
    host = int(IPv4Address(address)) - int(IPv4Network(record.subnet).network_address)
    return IPv6Network(record.subnet6 or "").network_address + host


def remove_networks(project_name: str, store: StateStore) -> None:
    """Remove the stack's bridges, their firewalls and their masquerades (whatever the
    setting is now: it may have changed since `up`) and forget their allocations (external
    networks are another stack's: untouched)."""
    from engine.network.bridge import remove_bridge
    from engine.network.firewall import remove_firewall
    from engine.network.nat import remove_masquerade

    for record in store.networks(project_name):
        remove_masquerade(record.bridge)
        remove_bridge(record.bridge)
        remove_firewall(record.bridge)
        store.delete_network(project_name, record.key)


def bridge_spec(record: NetworkRecord) -> BridgeSpec:
    """The bridge a network's record says it has."""
    from engine.network.bridge import BridgeSpec

    return BridgeSpec(
        name=record.bridge,
        subnet=IPv4Network(record.subnet),
        gateway=IPv4Address(record.gateway),
        mtu=record.mtu,
        internal=record.internal,
        subnet6=IPv6Network(record.subnet6) if record.subnet6 else None,
        gateway6=IPv6Address(record.gateway6) if record.gateway6 else None,
    )
