"""A whole lifecycle (bridge, two attachments, a masquerade, detach, remove) leaves the host's
links, addresses, routes and nftables rules as they were (root).

Other test suites may make and remove links on this machine meanwhile, so the comparison
looks at what this test made (its links, what is on them, what routes into its subnets) and
at the host's own devices (links of no kind: lo, eth0), not at every difference."""

from __future__ import annotations

import json
import socket
from functools import partial
from ipaddress import ip_network
from pathlib import Path

import pytest

from engine.network import (
    attach,
    detach,
    ensure_masquerade,
    nftables_ruleset,
    remove_bridge,
    remove_masquerade,
)
from engine.network.nat import TABLE
from tests.iproute import host_iproute
from tests.network.conftest import Scratch

pytestmark = pytest.mark.kernel

Record = tuple[str, ...]


def snapshot() -> set[Record]:
    """The host's links, addresses and routes (every table, both families) and nftables
    ruleset, as records: ("link", index, name, kind), ("address", index, address/prefix),
    ("route", table, dst/len, gateway, oif), ("nft", table, comment, JSON of the object)."""
    records: set[Record] = set()
    with host_iproute() as ipr:
        for link in ipr.link("dump"):
            kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
            records.add(("link", str(link["index"]), str(link.get("ifname")), str(kind)))
        for family in (socket.AF_INET, socket.AF_INET6):
            for a in ipr.addr("dump", family=family):
                records.add(("address", str(a["index"]), f"{a.get('address')}/{a['prefixlen']}"))
            for r in ipr.route("dump", family=family):
                dst = r.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
                records.add(
                    ("route", str(r["table"]), f"{dst}/{r['dst_len']}", str(r.get("gateway")), str(r.get("oif")))
                )
    for line in nftables_ruleset():
        [(kind, fields)] = json.loads(line).items()
        table = fields["name"] if kind == "table" else fields.get("table")
        records.add(("nft", str(table), str(fields.get("comment")), line))
    return records


def on_links(records: set[Record], indexes: set[str]) -> set[Record]:
    """The records of links `indexes`: the links, their addresses, routes through them."""
    return {
        r
        for r in records
        if (r[0] in ("link", "address") and r[1] in indexes) or (r[0] == "route" and r[4] in indexes)
    }


def test_a_bridge_with_two_attachments_and_a_masquerade_leaves_nothing_behind(
    scratch: Scratch, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    before = snapshot()
    host_devices = {r[1] for r in before if r[0] == "link" and r[3] == "None"}
    spec = scratch.bridge(ipv6=True)
    request.addfinalizer(partial(remove_masquerade, spec.name))  # also when the test fails
    a_ns, b_ns = scratch.netns(), scratch.netns()
    a, b = scratch.attachment(spec), scratch.attachment(spec)
    attach(a_ns.fd, a)
    attach(b_ns.fd, b)
    forwarding = tmp_path / "net/ipv4/ip_forward"  # a stand-in: the host's switch stays as it is
    forwarding.parent.mkdir(parents=True)
    forwarding.write_text("1\n")
    ensure_masquerade(spec.name, [str(spec.subnet)], tmp_path)
    during = snapshot()

    names = {spec.name, a.host_ifname, b.host_ifname}
    ours = {r[1] for r in during if r[0] == "link" and r[2] in names}
    subnets = [s for s in (spec.subnet, spec.subnet6) if s is not None]

    def made_by_this_test(record: Record) -> bool:
        """One of its links, on one of them, or an address or route in one of its subnets."""
        if record[0] == "link":
            return record[1] in ours or record[2] in names
        if record[0] == "nft":
            return record[2] == spec.name
        if on_links({record}, ours):
            return True
        network = ip_network(record[2], strict=False)
        return network.prefixlen > 0 and any(
            s.version == network.version and s.overlaps(network)  # type: ignore[arg-type]
            for s in subnets
        )

    made = {r for r in during - before if made_by_this_test(r)}
    assert len(ours) == 3
    kinds = sorted(r[3] for r in made if r[0] == "link")
    assert kinds == ["bridge", "veth", "veth"]
    assert {r[2] for r in made if r[0] == "address"} >= {str(x) for x in spec.addresses}
    assert any(r[0] == "route" for r in made)
    assert [r[1] for r in made if r[0] == "nft"] == [TABLE]

    remove_masquerade(spec.name)
    detach(a.host_ifname)
    detach(b.host_ifname)
    remove_bridge(spec.name)
    after = snapshot()
    assert {r for r in after if made_by_this_test(r)} == set()
    assert on_links(before, host_devices) == on_links(after, host_devices)
    assert {r for r in before if r[:2] == ("nft", TABLE)} == {r for r in after if r[:2] == ("nft", TABLE)}
