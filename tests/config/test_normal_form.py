"""`composer config` prints the stack as `docker compose config` does: one normal form."""

from __future__ import annotations

from pathlib import Path

import yaml

from composer.config.serialize import project_to_dict, service_hash, to_json, to_yaml
from tests.conftest import Load, Write

STACK = """
name: shop
services:
  web:
    image: nginx
    command: nginx -g 'daemon off;'
    environment: [MODE=prod, DEBUG]
    ports: ["127.0.0.1:8080:80", "443:443/udp"]
    volumes: ["./html:/usr/share/nginx/html:ro", "logs:/var/log/nginx"]
    depends_on: [api]
    healthcheck:
      test: curl -f http://localhost
      interval: 90s
      timeout: 500ms
    mem_limit: 1g
    shm_size: 64m
    stop_grace_period: 1m
    extra_hosts: {gateway: 10.0.0.1}
    x-team: web
  api:
    image: api
    labels: [tier=back]
    ulimits: {nofile: 1024}
volumes:
  logs: {}
x-version: 2
"""


def test_normal_form_uses_long_syntax_bytes_durations_and_absolute_paths(
    write: Write, load: Load, tmp_path: Path
) -> None:
    write("compose.yaml", STACK)
    data = project_to_dict(load("compose.yaml", environ={"DEBUG": "1"}).project)
    web = data["services"]["web"]
    assert web["command"] == ["nginx", "-g", "daemon off;"]
    assert web["environment"] == {"MODE": "prod", "DEBUG": "1"}
    assert web["ports"] == [
        {
            "host_ip": "127.0.0.1",
            "mode": "ingress",
            "protocol": "tcp",
            "published": "8080",
            "target": 80,
        },
        {"mode": "ingress", "protocol": "udp", "published": "443", "target": 443},
    ]
    assert web["volumes"] == [
        {
            "bind": {"create_host_path": True},
            "read_only": True,
            "source": str(tmp_path / "html"),
            "target": "/usr/share/nginx/html",
            "type": "bind",
        },
        {"source": "logs", "target": "/var/log/nginx", "type": "volume"},
    ]
    assert web["depends_on"] == {"api": {"condition": "service_started", "required": True}}
    assert web["healthcheck"] == {
        "interval": "1m30s",
        "test": ["CMD-SHELL", "curl -f http://localhost"],
        "timeout": "500ms",
    }
    assert (web["mem_limit"], web["shm_size"], web["stop_grace_period"]) == (
        1 << 30,
        64 << 20,
        "1m0s",
    )
    assert web["extra_hosts"] == ["gateway=10.0.0.1"]
    assert web["networks"] == {"default": None}
    assert web["x-team"] == "web"
    assert data["services"]["api"]["ulimits"] == {"nofile": {"hard": 1024, "soft": 1024}}
    assert data["networks"] == {"default": {"name": "shop_default"}}
    assert data["volumes"] == {"logs": {"name": "shop_logs"}}
    assert data["x-version"] == 2


def test_services_and_keys_are_sorted_and_empty_values_left_out(write: Write, load: Load) -> None:
    write("compose.yaml", "services:\n  zeta: {image: z, cap_add: []}\n  alpha: {image: a}\n")
    data = project_to_dict(load("compose.yaml").project)
    assert list(data["services"]) == ["alpha", "zeta"]
    assert data["services"]["zeta"] == {"image": "z", "networks": {"default": None}}


def test_printed_yaml_and_json_load_back_to_the_same_stack(
    write: Write, load: Load, tmp_path: Path
) -> None:
    write("compose.yaml", STACK)
    first = project_to_dict(load("compose.yaml", environ={"DEBUG": "1"}).project)
    for name, text in (("again.yaml", to_yaml(first)), ("again.json", to_json(first))):
        (tmp_path / name).write_text(text)
        assert project_to_dict(load(name, environ={"DEBUG": "1"}).project) == first


def test_strings_that_yaml_1_1_would_misread_are_quoted(write: Write, load: Load) -> None:
    write(
        "compose.yaml",
        "services:\n  web:\n    image: x\n    labels: {a: 'no', b: '22:22', c: 'on'}\n",
    )
    text = to_yaml(project_to_dict(load("compose.yaml").project))
    assert yaml.safe_load(text)["services"]["web"]["labels"] == {"a": "no", "b": "22:22", "c": "on"}


def test_hash_is_stable_and_ignores_what_does_not_change_a_container(
    write: Write, load: Load
) -> None:
    write("a.yaml", "services:\n  web: {image: x, environment: {A: '1'}, scale: 1}\n")
    write("b.yaml", "services:\n  web: {image: x, environment: [A=1], scale: 3, profiles: [p]}\n")
    write("c.yaml", "services:\n  web: {image: x, environment: {A: '2'}}\n")
    hash_a = service_hash(load("a.yaml").project, "web")
    assert hash_a == service_hash(load("a.yaml").project, "web")
    assert hash_a == service_hash(load("b.yaml", profiles=("p",)).project, "web")
    assert hash_a != service_hash(load("c.yaml").project, "web")
    assert len(hash_a) == 64


def test_an_empty_entrypoint_is_printed_and_changes_the_hash(write: Write, load: Load) -> None:
    write("a.yaml", "services:\n  web: {image: x, entrypoint: []}\n")
    write("b.yaml", "services:\n  web: {image: x}\n")
    cleared = load("a.yaml").project
    assert project_to_dict(cleared)["services"]["web"]["entrypoint"] == []
    assert service_hash(cleared, "web") != service_hash(load("b.yaml").project, "web")
