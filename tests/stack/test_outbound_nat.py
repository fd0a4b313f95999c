"""The `outbound_nat` host setting: read from the state root's config.yaml, and with it on a
stack's non-internal networks are masqueraded while it is up and not after `down` (root, real
kernel; the rules are only looked at: no traffic is sent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.errors import StackError
from composer.settings import Settings
from composer.state import StateStore
from engine.network import masquerade_rules, nftables_ruleset
from tests.stack.conftest import Stacks
from tests.stack.test_networking import naming

SWITCHES = (Path("/proc/sys/net/ipv4/ip_forward"), Path("/proc/sys/net/ipv6/conf/all/forwarding"))


@pytest.fixture
def host_forwarding() -> Iterator[None]:
    """The host's forwarding switches, put back as they were (outbound NAT turns them on)."""
    saved = [path.read_text() for path in SWITCHES]
    try:
        yield
    finally:
        for path, value in zip(SWITCHES, saved, strict=True):
            if path.read_text() != value:  # writing resets every interface's own switch
                path.write_text(value)


def test_outbound_nat_is_off_unless_the_config_turns_it_on(tmp_path: Path) -> None:
    assert Settings.load({"COMPOSER_ROOT": str(tmp_path)}).outbound_nat is False
    (tmp_path / "config.yaml").write_text("outbound_nat: true\n")
    assert Settings.load({"COMPOSER_ROOT": str(tmp_path)}).outbound_nat is True


def test_a_bad_outbound_nat_value_is_an_error_naming_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("address_pools: [{base: 10.9.0.0/16}]\noutbound_nat: yes please\n")
    with pytest.raises(StackError) as caught:
        Settings.load({"COMPOSER_ROOT": str(tmp_path)})
    assert str(caught.value).startswith(f"{tmp_path / 'config.yaml'}:2:15: outbound_nat: input should be a valid boolean")


@pytest.mark.kernel
def test_non_internal_networks_are_masqueraded_while_up_and_not_after_down(stacks: Stacks, host_forwarding: None) -> None:
    stacks.configure("outbound_nat: true\n")
    stack = stacks.load("""
services:
  idle:
    image: busybox:test
    command: ["sleep", "300"]
    networks: [out, inside]
networks:
  out: {enable_ipv6: true}
  inside: {internal: true}
""")
    stacks.up(stack)
    with StateStore(stacks.root) as store:
        records = {r.key: r for r in store.networks(stack.project.name)}
    out, inside = records["out"], records["inside"]
    rules = masquerade_rules()
    assert rules[out.bridge] == [out.subnet, out.subnet6]
    assert inside.bridge not in rules
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == "1\n"

    stacks.down(stack.project.name)
    assert out.bridge not in masquerade_rules()
    assert naming(nftables_ruleset(), {out.bridge, inside.bridge}) == set()  # none before up
