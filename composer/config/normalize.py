"""The defaults docker compose fills in, and the cross-references it checks, on a Project."""

from __future__ import annotations

from typing import Any, TypeVar

from composer.config.project import FileResource, Network, Project, Volume
from composer.config.yamlio import locate
from composer.errors import Problem, format_key_path

__all__ = ["DEFAULT_NETWORK", "check_references", "complete"]

DEFAULT_NETWORK = "default"

_Resource = TypeVar("_Resource", Network, Volume, FileResource)


def complete(project: Project) -> Project:
    """Every service on a network (the implicit `default` one when none is named), and every
    network, volume, config and secret with its real name (`PROJECT_KEY` unless external)."""
    services = {}
    for name, service in project.services.items():
        if service.network_mode is None and not service.networks:
            service = service.model_copy(update={"networks": {DEFAULT_NETWORK: None}})
        services[name] = service
    networks = dict(project.networks)
    uses_default = any(DEFAULT_NETWORK in (s.networks or {}) for s in services.values())
    if uses_default and DEFAULT_NETWORK not in networks:
        networks[DEFAULT_NETWORK] = Network()
    return project.model_copy(
        update={
            "services": services,
            "networks": _named(project.name, networks),
            "volumes": _named(project.name, project.volumes),
            "configs": _named(project.name, project.configs),
            "secrets": _named(project.name, project.secrets),
        }
    )


def _named(project: str, resources: dict[str, _Resource]) -> dict[str, _Resource]:
    result = {}
    for key, resource in resources.items():
        if resource.name is None:
            name = key if resource.external else f"{project}_{key}"
            resource = resource.model_copy(update={"name": name})
        result[key] = resource
    return result


def check_references(project: Project, raw: Any) -> list[Problem]:
    """Networks, volumes, configs and secrets a service names must be declared; container
    names must be unique."""
    problems: list[Problem] = []

    def report(message: str, *path: str | int, hint: str | None = None) -> None:
        problems.append(Problem(message, format_key_path(path), locate(raw, path), hint))

    owners: dict[str, str] = {}
    for name, service in project.services.items():
        for network in service.networks or {}:
            if network not in project.networks:
                report(
                    f"network {network!r} is not declared under top-level `networks`",
                    "services",
                    name,
                    "networks",
                    network,
                )
        for index, mount in enumerate(service.volumes or []):
            if mount.type == "volume" and mount.source and mount.source not in project.volumes:
                report(
                    f"volume {mount.source!r} is not declared under top-level `volumes`",
                    "services",
                    name,
                    "volumes",
                    index,
                    hint="declare it, or write a path (./dir or /dir) for a bind mount",
                )
        for kind, declared in (("secrets", project.secrets), ("configs", project.configs)):
            for index, ref in enumerate(getattr(service, kind) or []):
                if ref.source not in declared:
                    report(
                        f"{kind[:-1]} {ref.source!r} is not declared under top-level `{kind}`",
                        "services",
                        name,
                        kind,
                        index,
                    )
        if service.container_name:
            other = owners.setdefault(service.container_name, name)
            if other != name:
                report(
                    f"container name {service.container_name!r} is also used by service {other!r}",
                    "services",
                    name,
                    "container_name",
                )
            replicas = (
                service.scale
                if service.scale is not None
                else (service.deploy.replicas if service.deploy else None)
            )
            if replicas is not None and replicas > 1:
                report(
                    "a service with a container_name cannot have more than one replica",
                    "services",
                    name,
                    "container_name",
                )
    return problems
