"""Interface names: deterministic, unique, and within the kernel's 15 characters."""

from __future__ import annotations

import itertools

import pytest

from engine.network import NetworkError, bridge_name, veth_name
from engine.network.names import check_ifname


def test_a_bridge_name_is_deterministic_and_fits_the_kernels_limit() -> None:
    name = bridge_name("a-very-long-project-name", "a-very-long-network-name")
    assert name == bridge_name("a-very-long-project-name", "a-very-long-network-name")
    assert len(name) <= 15
    check_ifname(name)


def test_a_bridge_name_starts_with_cb_and_the_first_letters_of_the_project() -> None:
    assert bridge_name("Shop_Front", "default").startswith("cb-shop")
    assert bridge_name("---", "default").startswith("cb-")


def test_bridge_names_differ_for_every_project_and_network() -> None:
    projects = [f"p{i}" for i in range(60)] + ["shop", "shopping", "shop2"]
    networks = [f"n{i}" for i in range(30)] + ["default", "back", "front"]
    names = {bridge_name(p, n) for p, n in itertools.product(projects, networks)}
    assert len(names) == len(projects) * len(networks)


def test_bridge_names_do_not_run_project_and_network_together() -> None:
    assert bridge_name("ab", "c") != bridge_name("a", "bc")


def test_a_veth_name_is_deterministic_fits_the_limit_and_ends_with_the_index() -> None:
    name = veth_name("stack-web-1-" + "x" * 64, 999)
    assert name == veth_name("stack-web-1-" + "x" * 64, 999)
    assert len(name) <= 15 and name.startswith("cv-") and name.endswith("-999")
    check_ifname(name)


def test_the_veth_names_of_one_container_share_their_tag() -> None:
    assert veth_name("web-1", 0)[:-1] == veth_name("web-1", 1)[:-1]
    assert veth_name("web-1", 0) != veth_name("web-2", 0)


def test_veth_name_refuses_an_index_beyond_999() -> None:
    with pytest.raises(NetworkError, match="not within 0-999"):
        veth_name("web-1", 1000)


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "a:b", "a b", ".", ".."])
def test_a_name_the_kernel_would_refuse_is_refused(name: str) -> None:
    with pytest.raises(NetworkError, match="is not a valid interface name"):
        check_ifname(name)
