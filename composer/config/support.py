"""Keys of the Compose Specification that composer does not run, and what it says about each.

A key that would change what a container is or does is refused with the reason; a key whose
absence changes nothing on a single host (swarm placement, Windows-only options) is dropped with
a warning. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from composer.config.yamlio import MarkedMap
from composer.errors import Problem, format_key_path

__all__ = ["Unsupported", "drop_unsupported"]


@dataclass(frozen=True)
class Unsupported:
    reason: str
    fatal: bool


def _refuse(reason: str) -> Unsupported:
    return Unsupported(reason, fatal=True)


def _ignore(reason: str) -> Unsupported:
    return Unsupported(reason, fatal=False)


_TOP = {
    "models": _refuse("AI models need a model runner, which composer does not provide"),
}

_SERVICE = {
    "gpus": _refuse("composer does not give containers GPUs"),
    "runtime": _refuse(
        "composer is its own container runtime; other OCI runtimes cannot be chosen"
    ),
    "models": _refuse("AI models need a model runner, which composer does not provide"),
    "provider": _refuse("provider services are run by docker compose plugins, not by composer"),
    "devices": _refuse("passing host devices into containers is not supported yet"),
    "device_cgroup_rules": _refuse("device cgroup rules are not supported yet"),
    "credential_spec": _refuse("credential specs are for Windows containers"),
    "isolation": _refuse("isolation modes are for Windows containers"),
    "storage_opt": _refuse("storage options are docker storage-driver settings"),
    "use_api_socket": _refuse("there is no Docker API socket to give a container"),
    "post_start": _refuse("lifecycle hooks are not supported yet"),
    "pre_stop": _refuse("lifecycle hooks are not supported yet"),
    "label_file": _refuse("label files are not supported yet; write the labels in `labels`"),
    "develop": _ignore("`develop` (watch mode) is a docker compose feature; ignored"),
    "blkio_config": _ignore("block I/O limits are not applied yet; ignored"),
    "cpu_count": _ignore("cpu_count is a Windows option; ignored"),
    "cpu_percent": _ignore("cpu_percent is a Windows option; ignored"),
    "oom_kill_disable": _ignore("oom_kill_disable is not applied; ignored"),
    "pull_refresh_after": _ignore("pull_refresh_after is not applied; ignored"),
}

_DEPLOY = {
    "placement": _ignore("swarm placement has no meaning on a single host; ignored"),
    "update_config": _ignore("swarm update_config has no meaning without swarm; ignored"),
    "rollback_config": _ignore("swarm rollback_config has no meaning without swarm; ignored"),
    "endpoint_mode": _ignore("swarm endpoint_mode has no meaning without swarm; ignored"),
}

_RESERVATIONS = {
    "devices": _refuse("device reservations (GPUs) are not supported"),
    "generic_resources": _refuse("generic resources are a swarm feature"),
}

_RESOURCE = {
    "template_driver": _refuse("templated configs and secrets are not supported"),
    "driver": _refuse("secrets are files on this host; secret drivers are not supported"),
    "driver_opts": _refuse("secrets are files on this host; secret drivers are not supported"),
}


def drop_unsupported(tree: MarkedMap) -> tuple[list[Problem], list[Problem]]:
    """Remove every unsupported key from a merged stack; return (errors, warnings)."""
    errors: list[Problem] = []
    warnings: list[Problem] = []

    def check(node: Any, table: dict[str, Unsupported], path: tuple[str | int, ...]) -> None:
        if not isinstance(node, MarkedMap):
            return
        for key in [k for k in node if k in table]:
            entry = table[key]
            value = node[key]
            shown = f" ({value!r})" if isinstance(value, str | int | float) else ""
            problem = Problem(
                f"{'not supported' if entry.fatal else 'ignored'}{shown}: {entry.reason}",
                format_key_path((*path, key)),
                node.where(key),
            )
            (errors if entry.fatal else warnings).append(problem)
            del node[key]

    def entries(section: str) -> list[tuple[str, Any]]:
        value = tree.get(section)
        return list(value.items()) if isinstance(value, MarkedMap) else []

    check(tree, _TOP, ())
    for name, service in entries("services"):
        path: tuple[str | int, ...] = ("services", name)
        check(service, _SERVICE, path)
        deploy = service.get("deploy") if isinstance(service, MarkedMap) else None
        check(deploy, _DEPLOY, (*path, "deploy"))
        resources = deploy.get("resources") if isinstance(deploy, MarkedMap) else None
        reservations = resources.get("reservations") if isinstance(resources, MarkedMap) else None
        check(reservations, _RESERVATIONS, (*path, "deploy", "resources", "reservations"))
    for section in ("configs", "secrets"):
        for name, resource in entries(section):
            check(resource, _RESOURCE, (section, name))
    return errors, warnings
