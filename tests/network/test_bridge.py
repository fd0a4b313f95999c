"""Bridges: made as their spec says, kept so (level-triggered), removed (root)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network, ip_interface
from pathlib import Path
from typing import Any

import pytest

from engine.network import (
    BridgeSpec,
    NetworkError,
    bridge_exists,
    enable_ip_forwarding,
    ensure_bridge,
    remove_bridge,
)
from tests.iproute import host_iproute
from tests.network.conftest import Scratch


def observe(name: str) -> dict[str, Any]:
    """The bridge as the kernel has it: kind, MTU, up, and its IPv4 and global IPv6 addresses."""
    with host_iproute() as ipr:
        link = ipr.link("get", ifname=name)[0]
        addresses = {
            str(ip_interface(f"{a.get('address')}/{a['prefixlen']}"))
            for a in ipr.addr("dump", index=link["index"])
            if a["index"] == link["index"] and (a["family"] == socket.AF_INET or a["scope"] == 0)
        }
    return {
        "kind": link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
        "mtu": link.get("mtu"),
        "up": bool(link["flags"] & 1),
        "addresses": addresses,
        "mac": link.get("address"),
    }


def expected(spec: BridgeSpec) -> dict[str, Any]:
    return {
        "kind": "bridge",
        "mtu": spec.mtu,
        "up": True,
        "addresses": {str(a) for a in spec.addresses},
    }


def without_mac(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items() if key != "mac"}


@pytest.mark.kernel
def test_ensure_bridge_makes_an_up_bridge_with_the_gateway_addresses_and_mtu(scratch: Scratch) -> None:
    spec = scratch.bridge(ipv6=True, mtu=1400)
    assert without_mac(observe(spec.name)) == expected(spec)
    assert bridge_exists(spec.name)


@pytest.mark.kernel
def test_ensure_bridge_gives_the_bridge_a_fixed_locally_administered_mac(scratch: Scratch) -> None:
    spec = scratch.bridge()
    mac = observe(spec.name)["mac"]
    assert int(mac.split(":")[0], 16) & 0b11 == 0b10  # locally administered, unicast
    remove_bridge(spec.name)
    ensure_bridge(spec)
    assert observe(spec.name)["mac"] == mac


@pytest.mark.kernel
def test_ensure_bridge_twice_changes_nothing(scratch: Scratch) -> None:
    spec = scratch.bridge(ipv6=True)
    before = observe(spec.name)
    ensure_bridge(spec)
    assert observe(spec.name) == before


@pytest.mark.kernel
def test_ensure_bridge_puts_back_a_removed_gateway_address(scratch: Scratch) -> None:
    spec = scratch.bridge(ipv6=True)
    with host_iproute() as ipr:
        index = ipr.link_lookup(ifname=spec.name)[0]
        ipr.addr("del", index=index, address=str(spec.gateway), prefixlen=spec.subnet.prefixlen)
    assert str(spec.addresses[0]) not in observe(spec.name)["addresses"]
    ensure_bridge(spec)
    assert without_mac(observe(spec.name)) == expected(spec)


@pytest.mark.kernel
def test_ensure_bridge_removes_addresses_that_are_not_the_gateways(scratch: Scratch) -> None:
    spec = scratch.bridge()
    stray = spec.gateway + 5
    with host_iproute() as ipr:
        index = ipr.link_lookup(ifname=spec.name)[0]
        ipr.addr("add", index=index, address=str(stray), prefixlen=32)
        ipr.addr("del", index=index, address=str(spec.gateway), prefixlen=spec.subnet.prefixlen)
        ipr.addr("add", index=index, address=str(spec.gateway), prefixlen=spec.subnet.prefixlen + 1)
    ensure_bridge(spec)
    assert without_mac(observe(spec.name)) == expected(spec)


@pytest.mark.kernel
def test_ensure_bridge_brings_a_downed_bridge_up_and_resets_its_mtu(scratch: Scratch) -> None:
    spec = scratch.bridge()
    with host_iproute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=spec.name)[0], state="down", mtu=1300)
    ensure_bridge(spec)
    assert without_mac(observe(spec.name)) == expected(spec)


@pytest.mark.kernel
def test_ensure_bridge_completes_a_bridge_left_halfway_by_a_crash(scratch: Scratch) -> None:
    name = scratch.bridge_name()
    scratch.bridges.append(name)
    with host_iproute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")  # made, then the crash: no address, down
    subnet = scratch.subnet()
    spec = BridgeSpec(name, subnet, subnet.network_address + 1)
    ensure_bridge(spec)
    assert without_mac(observe(name)) == expected(spec)


@pytest.mark.kernel
def test_ensure_bridge_moves_the_bridge_to_a_new_subnet(scratch: Scratch) -> None:
    spec = scratch.bridge()
    other = scratch.subnet()
    moved = BridgeSpec(spec.name, other, other.network_address + 1)
    ensure_bridge(moved)
    assert observe(spec.name)["addresses"] == {f"{other.network_address + 1}/24"}


@pytest.mark.kernel
def test_an_internal_bridge_does_not_forward_what_it_receives(scratch: Scratch) -> None:
    spec = scratch.bridge(internal=True)
    assert Path(f"/proc/sys/net/ipv4/conf/{spec.name}/forwarding").read_text().strip() == "0"


@pytest.mark.kernel
def test_remove_bridge_removes_it_and_does_nothing_when_it_is_gone(scratch: Scratch) -> None:
    spec = scratch.bridge()
    remove_bridge(spec.name)
    assert not bridge_exists(spec.name)
    remove_bridge(spec.name)


@pytest.mark.kernel
def test_bridge_functions_refuse_to_touch_a_link_that_is_not_a_bridge(scratch: Scratch) -> None:
    ns = scratch.netns()
    name = f"cv-{scratch.tag}x"
    scratch.veths.append(name)
    with host_iproute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns.fd})
    subnet = scratch.subnet()
    with pytest.raises(NetworkError, match=f"{name} exists and is not a bridge \\(veth\\)"):
        ensure_bridge(BridgeSpec(name, subnet, subnet.network_address + 1))
    with pytest.raises(NetworkError, match=f"{name} is not a bridge \\(veth\\): not removing it"):
        remove_bridge(name)
    assert not bridge_exists(name)


def test_a_bridge_spec_refuses_a_gateway_outside_its_subnet() -> None:
    with pytest.raises(NetworkError, match=r"gateway 10.0.1.1 is outside subnet 10.0.0.0/24"):
        BridgeSpec("cb-x", IPv4Network("10.0.0.0/24"), IPv4Address("10.0.1.1"))


def test_a_bridge_spec_refuses_a_name_the_kernel_would_refuse() -> None:
    with pytest.raises(NetworkError, match="is not a valid interface name"):
        BridgeSpec("cb-a-name-far-too-long", IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))


def test_enable_ip_forwarding_writes_the_switch_once(tmp_path: Path) -> None:
    switch = tmp_path / "net/ipv4/ip_forward"  # a stand-in for /proc/sys
    switch.parent.mkdir(parents=True)
    switch.write_text("0\n")
    assert enable_ip_forwarding(tmp_path) is True
    assert switch.read_text() == "1\n"
    assert enable_ip_forwarding(tmp_path) is False


@pytest.mark.kernel
def test_a_bridge_that_is_not_internal_forwards_as_the_host_does(scratch: Scratch, tmp_path: Path) -> None:
    spec = scratch.bridge(internal=True)
    fake = tmp_path / "sys"  # a stand-in for /proc/sys where the host forwards
    (fake / "net/ipv4/conf" / spec.name).mkdir(parents=True)
    (fake / "net/ipv4/ip_forward").write_text("1\n")
    (fake / "net/ipv4/conf" / spec.name / "forwarding").write_text("0\n")
    ensure_bridge(BridgeSpec(spec.name, spec.subnet, spec.gateway), proc_sys=fake)
    assert (fake / "net/ipv4/conf" / spec.name / "forwarding").read_text() == "1\n"
    ensure_bridge(spec, proc_sys=fake)
    assert (fake / "net/ipv4/conf" / spec.name / "forwarding").read_text() == "0\n"
