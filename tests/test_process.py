"""A service's process from its image config and its own keys, by Docker's rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from composer.config.service import Service
from composer.errors import ComposerError
from composer.process import Health, resolve_process
from engine.images.manifest import ImageConfig, parse_config


def image(**config: Any) -> ImageConfig:
    return parse_config(json.dumps({"architecture": "amd64", "os": "linux", "config": config}).encode(), "test")


def service(**keys: Any) -> Service:
    return Service.model_validate({"image": "x", **keys})


@pytest.mark.parametrize(
    ("image_config", "keys", "argv"),
    [
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {}, ("/ep", "a")),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"command": "b c"}, ("/ep", "b", "c")),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": ["/new"]}, ("/new",)),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": "/new", "command": ["z"]}, ("/new", "z")),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": []}, ()),
        ({"Cmd": ["sh"]}, {}, ("sh",)),
        ({"Cmd": ["sh"]}, {"command": []}, ()),
    ],
)
def test_entrypoint_and_command_follow_dockers_rules(image_config: dict[str, Any], keys: dict[str, Any], argv: tuple[str, ...]) -> None:
    if not argv:
        with pytest.raises(ComposerError, match="no command to run"):
            resolve_process("web", service(**keys), image(**image_config))
    else:
        assert resolve_process("web", service(**keys), image(**image_config)).argv == argv


def test_service_environment_overrides_the_images_by_name() -> None:
    process = resolve_process(
        "web",
        service(environment={"B": "service", "C": "new", "UNSET": None}),
        image(Cmd=["sh"], Env=["A=1", "B=image", "UNSET=kept"]),
    )
    assert process.env == ("A=1", "B=service", "UNSET=kept", "C=new")


def test_working_dir_user_and_stop_signal_default_to_the_image() -> None:
    plain = resolve_process("web", service(), image(Cmd=["sh"], WorkingDir="/app", User="app", StopSignal="SIGQUIT"))
    assert (plain.working_dir, plain.user, plain.stop_signal) == ("/app", "app", "SIGQUIT")
    own = resolve_process("web", service(working_dir="/srv", user="0:0", stop_signal="SIGINT"), image(Cmd=["sh"], WorkingDir="/app", User="app"))
    assert (own.working_dir, own.user, own.stop_signal) == ("/srv", "0:0", "SIGINT")
    bare = resolve_process("web", service(), image(Cmd=["sh"]))
    assert (bare.working_dir, bare.user, bare.stop_signal) == ("/", "", "SIGTERM")


def test_exposed_ports_join_the_images_and_the_services() -> None:
    process = resolve_process("web", service(expose=["9000", "53/udp"]), image(Cmd=["sh"], ExposedPorts={"80/tcp": {}}))
    assert process.exposed_ports == ("80/tcp", "9000/tcp", "53/udp")


def test_healthcheck_fields_fall_back_to_the_images_then_to_dockers_defaults() -> None:
    check = {"Test": ["CMD", "true"], "Interval": 5_000_000_000, "Retries": 7}
    process = resolve_process("web", service(healthcheck={"timeout": "2s"}), image(Cmd=["sh"], Healthcheck=check))
    assert process.healthcheck == Health(("CMD", "true"), interval=5.0, timeout=2.0, retries=7, start_period=0.0, start_interval=5.0)


def test_a_disabled_healthcheck_drops_the_images() -> None:
    check = {"Test": ["CMD", "true"]}
    assert resolve_process("web", service(healthcheck={"disable": True}), image(Cmd=["sh"], Healthcheck=check)).healthcheck is None
    assert resolve_process("web", service(healthcheck={"test": ["NONE"]}), image(Cmd=["sh"], Healthcheck=check)).healthcheck is None


def test_a_service_healthcheck_needs_no_image_one() -> None:
    process = resolve_process("web", service(healthcheck={"test": "wget -q localhost"}), image(Cmd=["sh"]))
    assert process.healthcheck is not None and process.healthcheck.test == ("CMD-SHELL", "wget -q localhost")
