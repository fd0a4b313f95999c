"""Bad input gets errors that name the file, line, column and key, and say what to do."""

from __future__ import annotations

import pytest

from tests.conftest import Load, Write, problems_of


def test_misspelt_key_suggests_the_closest_valid_one(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web:\n    imagee: busybox\n    image: busybox\n")
    (line,) = problems_of(load, "compose.yaml")
    assert line.endswith(
        "compose.yaml:3:5: services.web.imagee: unknown key (did you mean 'image'?)"
    )


def test_misspelt_nested_key_suggests_from_its_own_level(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    healthcheck:\n      intervall: 5s\n",
    )
    (line,) = problems_of(load, "compose.yaml")
    assert "services.web.healthcheck.intervall: unknown key (did you mean 'interval'?)" in line


def test_several_errors_are_reported_together_in_file_order(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        services:
          web:
            image: busybox
            ports: ["8080:80", "nonsense"]
            restart: sometimes
          db:
            image: postgres
            mem_limit: lots
        """,
    )
    lines = problems_of(load, "compose.yaml")
    assert len(lines) == 3
    assert "compose.yaml:4:24: services.web.ports[1]" in lines[0] and "'nonsense'" in lines[0]
    assert "services.web.restart" in lines[1] and "on-failure" in lines[1]
    assert "services.db.mem_limit" in lines[2] and "'512m'" in lines[2]


def test_wrong_type_says_what_was_expected_and_what_was_found(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web:\n    image: busybox\n    privileged: maybe\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "services.web.privileged" in line and "boolean" in line and '"maybe"' in line


def test_service_without_image_or_build(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web:\n    command: echo\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "compose.yaml:2:3: services.web: a service needs an image or a build" in line


def test_refused_spec_key_is_named_with_the_reason(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  wasm:\n    image: x\n    runtime: io.containerd.wasmedge.v1\n",
    )
    (line,) = problems_of(load, "compose.yaml")
    assert "services.wasm.runtime: not supported" in line
    assert "io.containerd.wasmedge.v1" in line


def test_harmless_spec_key_is_dropped_with_a_warning(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  web:\n    image: x\n    deploy:\n      placement: {constraints: []}\n",
    )
    warnings = [str(w) for w in load("compose.yaml").warnings]
    assert any("services.web.deploy.placement: ignored" in w for w in warnings)


def test_network_driver_other_than_bridge_is_refused(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  web: {image: x}\nnetworks:\n  mesh:\n    driver: overlay\n",
    )
    (line,) = problems_of(load, "compose.yaml")
    assert "networks.mesh.driver" in line and "'overlay' is not supported" in line


def test_undeclared_network_and_volume_are_named(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  web:\n    image: x\n    networks: [front]\n    volumes: ['data:/d']\n",
    )
    lines = problems_of(load, "compose.yaml")
    assert any("services.web.networks.front: network 'front' is not declared" in x for x in lines)
    assert any("services.web.volumes[0]: volume 'data' is not declared" in x for x in lines)


def test_network_mode_with_networks_is_refused(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  web:\n    image: x\n    network_mode: host\n    networks: [default]\n",
    )
    (line,) = problems_of(load, "compose.yaml")
    assert "network_mode and networks cannot be used together" in line


def test_duplicate_container_names_are_refused(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  a: {image: x, container_name: same}\n  b: {image: x, container_name: same}\n",
    )
    (line,) = problems_of(load, "compose.yaml")
    assert "services.b.container_name" in line and "also used by service 'a'" in line


def test_top_level_must_be_a_mapping(write: Write, load: Load) -> None:
    write("compose.yaml", "- just\n- a list\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "compose.yaml:1:1" in line and "mapping" in line


def test_unknown_top_level_key_suggests(write: Write, load: Load) -> None:
    write("compose.yaml", "service:\n  web: {image: x}\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "service: unknown key (did you mean 'services'?)" in line


def test_errors_of_every_stage_are_reported_together(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        """
        services:
          web:
            image: busybox
            ports: ["${PORT:?give a port}:80"]
            runtime: kata
            mem_limit: lots
            depends_on: [nosuch]
        """,
    )
    lines = problems_of(load, "compose.yaml")
    assert len(lines) == 3, lines
    assert "services.web.ports[0]: required variable PORT is missing a value" in lines[0]
    assert "services.web.runtime: not supported ('kata')" in lines[1]
    assert "services.web.mem_limit" in lines[2]


def test_reference_and_graph_errors_are_reported_together(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  web:\n    image: x\n    networks: [nonet]\n    depends_on: [nosuch]\n",
    )
    lines = problems_of(load, "compose.yaml")
    assert len(lines) == 2
    assert "network 'nonet' is not declared" in lines[0]
    assert "'nosuch', which is not defined" in lines[1]


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ("{ipam: {config: [{subnet: 10.0.0.0/33}]}}", "'10.0.0.0/33' is not a subnet"),
        (
            "{ipam: {config: [{subnet: 10.1.0.0/16, gateway: 10.2.0.1}]}}",
            "the gateway 10.2.0.1 is outside the subnet",
        ),
        (
            "{ipam: {config: [{subnet: 10.1.0.0/16, ip_range: 10.3.0.0/24}]}}",
            "the ip_range 10.3.0.0/24 is outside",
        ),
    ],
)
def test_bad_network_addressing_is_explained(
    write: Write, load: Load, network: str, message: str
) -> None:
    write("compose.yaml", f"services:\n  web: {{image: x}}\nnetworks:\n  front: {network}\n")
    (line,) = problems_of(load, "compose.yaml")
    assert message in line and "networks.front.ipam.config[0]" in line


def test_bad_static_address_is_explained(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  web:\n    image: x\n    networks:\n      default: {ipv4_address: 10.0.0.300}\n",
    )
    (line,) = problems_of(load, "compose.yaml")
    assert "services.web.networks.default.ipv4_address: '10.0.0.300' is not an IP address" in line


def test_invalid_service_name_is_refused(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  'bad/name': {image: x}\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "'bad/name' is not a valid service name" in line


def test_invalid_container_name_is_refused(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  web: {image: x, container_name: '-bad'}\n")
    (line,) = problems_of(load, "compose.yaml")
    assert "services.web.container_name: '-bad' is not valid here" in line
