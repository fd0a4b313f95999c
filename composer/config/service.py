"""The model of one service of a stack, with the long forms of its short syntaxes."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from composer.config import types
from composer.config.base import (
    Address,
    Bytes,
    Command,
    Duration,
    Mapping,
    NullableMapping,
    Spec,
    StrList,
    Text,
)

__all__ = [
    "Build",
    "DependsOn",
    "Deploy",
    "FileReference",
    "Healthcheck",
    "Logging",
    "Port",
    "Service",
    "ServiceNetwork",
    "Ulimit",
    "VolumeMount",
]


_STRING_OR_LIST = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


class Build(Spec):
    """How to build the service's image (kept for a later release; nothing is built yet)."""

    short_syntax = "context"

    context: str | None = None
    dockerfile: str | None = None
    dockerfile_inline: str | None = None
    args: NullableMapping | None = None
    ssh: StrList | None = None
    labels: Mapping | None = None
    cache_from: list[str] | None = None
    cache_to: list[str] | None = None
    no_cache: bool | None = None
    additional_contexts: Mapping | None = None
    network: str | None = None
    pull: bool | None = None
    target: str | None = None
    shm_size: Bytes | None = None
    extra_hosts: StrList | None = None
    isolation: str | None = None
    privileged: bool | None = None
    secrets: list[FileReference] | None = None
    tags: list[str] | None = None
    ulimits: dict[str, Ulimit] | None = None
    platforms: list[str] | None = None
    entitlements: list[str] | None = None
    provenance: Text | None = None
    sbom: Text | None = None


class Port(Spec):
    """One published or exposed port (the long syntax)."""

    short_forms = ({"type": "string"}, {"type": "integer"})

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        if isinstance(value, str | int) and not isinstance(value, bool):
            entries = types.parse_port(value)
            if len(entries) > 1:
                raise ValueError(
                    f"{value!r} is a range; write it where a list of ports is expected"
                )
            return entries[0]
        return value

    name: str | None = None
    mode: Literal["ingress", "host"] = "ingress"
    host_ip: str | None = None
    target: int = Field(ge=0, le=65535)
    published: Text | None = None
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    app_protocol: str | None = None

    @field_validator("published")
    @classmethod
    def _port_or_range(cls, value: str | None) -> str | None:
        if value is not None:
            types.parse_port(f"{value}:1")  # raises with a clear message when malformed
        return value


def _ports(value: Any) -> Any:
    """Expand short-syntax ranges into one entry per port; a malformed entry is left for the
    Port model to reject, so that its error names the entry's index."""
    if not isinstance(value, list):
        return value
    result: list[Any] = []
    for item in value:
        try:
            result.extend(types.parse_port(item) if isinstance(item, str | int) else [item])
        except ValueError:
            result.append(item)
    return result


class BindOptions(Spec):
    propagation: Literal["shared", "rshared", "slave", "rslave", "private", "rprivate"] | None = (
        None
    )
    create_host_path: bool | None = None
    recursive: Literal["enabled", "disabled", "writable", "readonly"] | None = None
    selinux: Literal["z", "Z"] | None = None


class VolumeOptions(Spec):
    labels: Mapping | None = None
    nocopy: bool | None = None
    subpath: str | None = None


class TmpfsOptions(Spec):
    size: Bytes | None = None
    mode: int | None = None


class VolumeMount(Spec):
    """A mount into the container: a host path, a named or anonymous volume, or a tmpfs."""

    short_forms = ({"type": "string", "description": "[SOURCE:]TARGET[:MODE]"},)

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return types.parse_volume(value) if isinstance(value, str) else value

    type: Literal["bind", "volume", "tmpfs"]
    source: str | None = None
    target: str
    read_only: bool | None = None
    consistency: str | None = None
    bind: BindOptions | None = None
    volume: VolumeOptions | None = None
    tmpfs: TmpfsOptions | None = None

    @model_validator(mode="after")
    def _source_fits_type(self) -> VolumeMount:
        if self.type == "bind" and not self.source:
            raise ValueError("a bind mount needs a source (a path on the host)")
        if self.type == "tmpfs" and self.source:
            raise ValueError("a tmpfs mount takes no source")
        if not self.target.startswith("/"):
            raise ValueError(
                f"the target {self.target!r} must be an absolute path in the container"
            )
        return self


class DependsOn(Spec):
    """How a service depends on another; the list form means `service_started`, required."""

    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = (
        "service_started"
    )
    required: bool = True
    restart: bool | None = None


def _depends_on(value: Any) -> Any:
    if isinstance(value, list):
        return {str(name): {} for name in value}
    return value


_HEALTH_KINDS = ("NONE", "CMD", "CMD-SHELL")


class Healthcheck(Spec):
    test: Annotated[
        list[Text] | None,
        BeforeValidator(lambda v: ["CMD-SHELL", v] if isinstance(v, str) else v),
        WithJsonSchema(_STRING_OR_LIST),
    ] = None
    interval: Duration | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0)
    start_period: Duration | None = None
    start_interval: Duration | None = None
    disable: bool | None = None

    @field_validator("test")
    @classmethod
    def _known_kind(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or value[0] not in _HEALTH_KINDS):
            raise ValueError(
                "a healthcheck test is a string (run by the shell) or a list starting "
                "with CMD, CMD-SHELL or NONE"
            )
        if value and value[0] == "CMD-SHELL" and len(value) != 2:
            raise ValueError("CMD-SHELL takes exactly one string, the shell command")
        return value


class ResourceLimits(Spec):
    cpus: float | None = Field(default=None, ge=0)
    memory: Bytes | None = None
    pids: int | None = None


class ResourceReservations(Spec):
    cpus: float | None = Field(default=None, ge=0)
    memory: Bytes | None = None


class Resources(Spec):
    limits: ResourceLimits | None = None
    reservations: ResourceReservations | None = None


class RestartPolicy(Spec):
    condition: Literal["none", "on-failure", "any"] | None = None
    delay: Duration | None = None
    max_attempts: int | None = Field(default=None, ge=0)
    window: Duration | None = None


class Deploy(Spec):
    mode: Literal["replicated", "global"] | None = None
    replicas: int | None = Field(default=None, ge=0)
    labels: Mapping | None = None
    resources: Resources | None = None
    restart_policy: RestartPolicy | None = None


class ServiceNetwork(Spec):
    aliases: list[str] | None = None
    ipv4_address: Address | None = None
    ipv6_address: Address | None = None
    link_local_ips: list[str] | None = None
    mac_address: str | None = None
    priority: int | None = None
    gw_priority: int | None = None
    interface_name: str | None = None
    driver_opts: Mapping | None = None


def _networks(value: Any) -> Any:
    if isinstance(value, list):
        return {str(name): None for name in value}
    return value


class Ulimit(Spec):
    short_forms = ({"type": "integer"},)
    soft: int
    hard: int

    @model_validator(mode="before")
    @classmethod
    def _single(cls, value: Any) -> Any:
        if isinstance(value, int | str) and not isinstance(value, bool):
            return {"soft": value, "hard": value}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Ulimit:
        if self.soft > self.hard:
            raise ValueError(f"the soft limit {self.soft} is above the hard limit {self.hard}")
        return self


class FileReference(Spec):
    """A secret or config granted to the service (`source` names a top-level entry)."""

    short_syntax = "source"

    source: str
    target: str | None = None
    uid: Text | None = None
    gid: Text | None = None
    mode: int | None = None


class Logging(Spec):
    driver: str | None = None
    options: dict[str, Text | None] | None = None


class EnvFile(Spec):
    short_syntax = "path"

    path: str
    required: bool = True
    format: str | None = None


_RESTART = re.compile(r"no|always|unless-stopped|on-failure(:[0-9]+)?")
_NETWORK_MODE = re.compile(r"none|host|bridge|(service|container):.+")
_PULL_POLICY = re.compile(r"always|never|missing|if_not_present|build|daily|weekly|every_.+")


def _matching(pattern: re.Pattern[str], expected: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, str) and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not valid here: expected {expected}")
        return value

    return BeforeValidator(check)


def _extra_hosts(value: Any) -> Any:
    """Map form (`host: ip` or `host: [ip, ...]`) and `host:ip` become `host=ip` strings."""
    if isinstance(value, dict):
        result = []
        for host, addresses in value.items():
            for address in addresses if isinstance(addresses, list) else [addresses]:
                result.append(f"{host}={types.to_str(address)}")
        return result
    if isinstance(value, list):
        return [_host_entry(item) if isinstance(item, str) else item for item in value]
    return value


def _host_entry(entry: str) -> str:
    if "=" in entry:
        return entry
    host, sep, address = entry.partition(":")
    if not sep:
        raise ValueError(f"{entry!r} is not a host entry: expected HOST=IP or HOST:IP")
    return f"{host}={address}"


class Service(Spec):
    """One service: the template of one or more identical containers."""

    image: str | None = None
    build: Build | None = None
    command: Command | None = None
    entrypoint: Command | None = None
    environment: NullableMapping | None = None
    env_file: (
        Annotated[list[EnvFile], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)] | None
    ) = None
    working_dir: str | None = None
    user: Text | None = None
    group_add: list[Text] | None = None
    hostname: str | None = None
    domainname: str | None = None
    container_name: (
        Annotated[
            str,
            _matching(re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"), "letters, digits, '_', '.', '-'"),
        ]
        | None
    ) = None
    mac_address: str | None = None
    ports: Annotated[list[Port], BeforeValidator(_ports)] | None = None
    expose: list[Text] | None = None
    volumes: list[VolumeMount] | None = None
    volumes_from: list[str] | None = None
    tmpfs: StrList | None = None
    depends_on: Annotated[dict[str, DependsOn], BeforeValidator(_depends_on)] | None = None
    links: list[str] | None = None
    external_links: list[str] | None = None
    healthcheck: Healthcheck | None = None
    restart: (
        Annotated[str, _matching(_RESTART, "no, always, on-failure[:MAX] or unless-stopped")] | None
    ) = None
    deploy: Deploy | None = None
    scale: int | None = Field(default=None, ge=0)
    cpus: float | None = Field(default=None, ge=0)
    cpu_shares: int | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpu_rt_period: int | None = None
    cpu_rt_runtime: int | None = None
    cpuset: Text | None = None
    mem_limit: Bytes | None = None
    mem_reservation: Bytes | None = None
    memswap_limit: Bytes | None = None
    mem_swappiness: int | None = Field(default=None, ge=0, le=100)
    oom_score_adj: int | None = Field(default=None, ge=-1000, le=1000)
    pids_limit: int | None = None
    shm_size: Bytes | None = None
    networks: Annotated[dict[str, ServiceNetwork | None], BeforeValidator(_networks)] | None = None
    network_mode: (
        Annotated[
            str, _matching(_NETWORK_MODE, "none, host, bridge, service:NAME or container:NAME")
        ]
        | None
    ) = None
    dns: StrList | None = None
    dns_search: StrList | None = None
    dns_opt: list[str] | None = None
    extra_hosts: (
        Annotated[
            list[str],
            BeforeValidator(_extra_hosts),
            WithJsonSchema(
                {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}]}
            ),
        ]
        | None
    ) = None
    labels: Mapping | None = None
    annotations: Mapping | None = None
    init: bool | None = None
    stop_signal: str | None = None
    stop_grace_period: Duration | None = None
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    privileged: bool | None = None
    read_only: bool | None = None
    security_opt: list[str] | None = None
    ulimits: dict[str, Ulimit] | None = None
    sysctls: Mapping | None = None
    ipc: str | None = None
    pid: str | None = None
    uts: str | None = None
    userns_mode: str | None = None
    cgroup: Literal["host", "private"] | None = None
    cgroup_parent: str | None = None
    profiles: list[str] | None = None
    tty: bool | None = None
    stdin_open: bool | None = None
    secrets: list[FileReference] | None = None
    configs: list[FileReference] | None = None
    pull_policy: (
        Annotated[
            str,
            _matching(
                _PULL_POLICY, "always, never, missing, build, daily, weekly or every_<duration>"
            ),
        ]
        | None
    ) = None
    platform: str | None = None
    logging: Logging | None = None
    attach: bool | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Service:
        if self.network_mode is not None and self.networks:
            raise ValueError("network_mode and networks cannot be used together")
        if self.image is None and self.build is None:
            raise ValueError("a service needs an image or a build")
        return self


Build.model_rebuild()
