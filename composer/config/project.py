"""The model of a whole stack: its services and the networks, volumes, configs and secrets."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from composer.config.base import Address, Mapping, Spec, Subnet, Text
from composer.config.service import Service
from composer.config.types import PROJECT_NAME

__all__ = [
    "PROJECT_NAME",
    "FileResource",
    "Ipam",
    "IpamPool",
    "Network",
    "Project",
    "Volume",
]

SERVICE_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def _external(value: Any) -> Any:
    """`external: {name: x}` (compose v2 file format) means `external: true` with that name."""
    if isinstance(value, dict):
        return {"external": True, **({"name": value["name"]} if "name" in value else {})}
    return value


def _only_driver(kind: str, value: str | None, supported: str, why: str) -> str | None:
    if value not in (None, supported):
        raise ValueError(
            f"{kind} driver {value!r} is not supported: {why} on this host (driver: {supported})"
        )
    return value


class _Resource(Spec):
    name: str | None = None
    external: bool | None = None
    labels: Mapping | None = None

    @model_validator(mode="before")
    @classmethod
    def _external_with_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("external"), dict):
            data = {**data, **_external(data["external"])}
        return data


class IpamPool(Spec):
    subnet: Subnet | None = None
    ip_range: Subnet | None = None
    gateway: Address | None = None
    aux_addresses: dict[str, Address] | None = None

    @model_validator(mode="after")
    def _inside_subnet(self) -> IpamPool:
        if self.subnet is None:
            return self
        subnet = ipaddress.ip_network(self.subnet, strict=False)
        if self.gateway and ipaddress.ip_address(self.gateway) not in subnet:
            raise ValueError(f"the gateway {self.gateway} is outside the subnet {self.subnet}")
        if self.ip_range and not ipaddress.ip_network(self.ip_range, strict=False).subnet_of(
            subnet  # type: ignore[arg-type]
        ):
            raise ValueError(f"the ip_range {self.ip_range} is outside the subnet {self.subnet}")
        return self


class Ipam(Spec):
    driver: Literal["default"] | None = None
    config: list[IpamPool] | None = None
    options: dict[str, str] | None = None


class Network(_Resource):
    driver: str | None = None
    driver_opts: dict[str, Text] | None = None
    ipam: Ipam | None = None
    internal: bool | None = None
    attachable: bool | None = None
    enable_ipv4: bool | None = None
    enable_ipv6: bool | None = None

    @field_validator("driver")
    @classmethod
    def _bridge_only(cls, value: str | None) -> str | None:
        return _only_driver("network", value, "bridge", "composer creates Linux bridges")


class Volume(_Resource):
    driver: str | None = None
    driver_opts: dict[str, Text] | None = None

    @field_validator("driver")
    @classmethod
    def _local_only(cls, value: str | None) -> str | None:
        return _only_driver("volume", value, "local", "volumes are directories")


class FileResource(_Resource):
    """A top-level config or secret: from a file, an environment variable, or inline content."""

    file: str | None = None
    environment: str | None = None
    content: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FileResource:
        sources = [k for k in ("file", "environment", "content") if getattr(self, k) is not None]
        if self.external:
            sources.append("external")
        if len(sources) != 1:
            raise ValueError(
                "give exactly one of file, environment, content or external"
                + (f" (found {', '.join(sources)})" if sources else "")
            )
        return self


class Project(Spec):
    """A stack: everything one `composer up` brings up under one project name."""

    name: str
    services: dict[str, Service] = Field(default_factory=dict)
    networks: dict[str, Network] = Field(default_factory=dict)
    volumes: dict[str, Volume] = Field(default_factory=dict)
    configs: dict[str, FileResource] = Field(default_factory=dict)
    secrets: dict[str, FileResource] = Field(default_factory=dict)

    @field_validator("networks", "volumes", "configs", "secrets", "services", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: dict[str, Service]) -> dict[str, Service]:
        for name in value:
            if not SERVICE_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a valid service name: use letters, digits, '.', '-' and '_'"
                )
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not PROJECT_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid project name: use lower-case letters, digits, "
                "'-' and '_', starting with a letter or digit"
            )
        return value
