"""Network namespaces, bridges and veth pairs for the network tests, each with a name of its
own (random hex) and all removed when the test ends, however it ends: pairs first, then
bridges, then the processes that hold the namespaces (ended by pid, then reaped).

The namespaces are those of netnstools.py. Subnets come from a random /16 of 10.128.0.0/9
and a random IPv6 ULA /48, avoiding every network of the host (`host_networks`), so that
tests running side by side do not meet.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

import pytest

from engine.network import (
    Attachment,
    BridgeSpec,
    allocate_address,
    allocate_subnet,
    detach,
    ensure_bridge,
    gateway_of,
    host_networks,
    remove_bridge,
    veth_name,
)
from tests.network.netnstools import Netns, spawn_netns


class Scratch:
    """What one test made in the kernel, and how to make it; `cleanup` removes all of it."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[Netns] = []
        self.bridges: list[str] = []
        self.veths: list[str] = []
        self.subnets: list[IPv4Network | IPv6Network] = []
        self.base = IPv4Network(f"10.{128 + secrets.randbelow(128)}.0.0/16")
        h = secrets.token_hex(5)
        self.base6 = IPv6Network(f"fd{h[:2]}:{h[2:6]}:{h[6:]}::/48")
        self.taken: dict[IPv4Address, str] = {}
        self.taken6: dict[IPv6Address, str] = {}
        self._count = 0

    def netns(self) -> Netns:
        made = spawn_netns()
        self.namespaces.append(made)
        return made

    def bridge_name(self) -> str:
        self._count += 1
        return f"cbt{self.tag}{self._count:02d}{secrets.token_hex(2)}"[:15]

    def subnet(self) -> IPv4Network:
        subnet = allocate_subnet([(self.base, 24)], [*host_networks(), *self.subnets])
        self.subnets.append(subnet)
        return subnet

    def subnet6(self) -> IPv6Network:
        subnet = allocate_subnet([(self.base6, 64)], [*host_networks(), *self.subnets])
        self.subnets.append(subnet)
        return subnet

    def bridge(self, ipv6: bool = False, **fields: object) -> BridgeSpec:
        """A new bridge on a free subnet, ensured."""
        subnet = self.subnet()
        subnet6 = self.subnet6() if ipv6 else None
        spec = BridgeSpec(
            name=self.bridge_name(),
            subnet=subnet,
            gateway=gateway_of(subnet),
            subnet6=subnet6,
            gateway6=gateway_of(subnet6) if subnet6 is not None else None,
            **fields,  # type: ignore[arg-type]
        )
        self.bridges.append(spec.name)
        ensure_bridge(spec)
        return spec

    def attachment(
        self, spec: BridgeSpec, index: int = 0, gateway: bool = True, **fields: object
    ) -> Attachment:
        """An Attachment to `spec` with the next free address and a new host end name."""
        address = allocate_address(spec.subnet, spec.gateway, self.taken)
        self.taken[address] = f"attachment {len(self.taken)}"
        address6 = None
        if spec.subnet6 is not None:
            assert spec.gateway6 is not None
            found = allocate_address(spec.subnet6, spec.gateway6, self.taken6)
            self.taken6[found] = f"attachment {len(self.taken6)}"
            address6 = IPv6Interface(f"{found}/{spec.subnet6.prefixlen}")
        host_ifname = veth_name(f"test-{secrets.token_hex(8)}", index)
        self.veths.append(host_ifname)
        values: dict[str, object] = {
            "bridge": spec.name,
            "host_ifname": host_ifname,
            "ifname": f"eth{index}",
            "address": IPv4Interface(f"{address}/{spec.subnet.prefixlen}"),
            "gateway": spec.gateway if gateway else None,
            "address6": address6,
            "gateway6": spec.gateway6 if gateway and address6 is not None else None,
        }
        values.update(fields)
        return Attachment(**values)  # type: ignore[arg-type]

    def cleanup(self) -> list[str]:
        failures = []
        for name in self.veths:
            try:
                detach(name)
            except Exception as exc:  # go on: everything else must still be cleaned
                failures.append(f"{name}: {exc}")
        for name in self.bridges:
            try:
                remove_bridge(name)
            except Exception as exc:
                failures.append(f"{name}: {exc}")
        for made in self.namespaces:
            made.end()
        return failures


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    if os.geteuid() != 0:
        pytest.skip("needs root: makes bridges, veth pairs and network namespaces")
    made = Scratch()
    yield made
    failures = made.cleanup()
    assert not failures, failures
