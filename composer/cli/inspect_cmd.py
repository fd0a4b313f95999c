"""`composer inspect SERVICE|CONTAINER`: what a container is, as `docker inspect` shows it —
its configuration, state (health and restarts too), namespaces, cgroup, root filesystem
layers and network settings — one JSON object per container, in a JSON array."""

from __future__ import annotations

import datetime
import json
import os
from typing import TYPE_CHECKING, Any, Final

import click

from composer.cli.context import Context
from composer.cli.target import Target, open_target
from composer.errors import ComposerError
from composer.stackview import ACTIVE, Member, attached_networks

if TYPE_CHECKING:
    from composer.state import NetworkRecord, PortRecord
    from engine.network.veth import Attachment

__all__ = ["inspect"]

_NEVER: Final = "0001-01-01T00:00:00Z"  # docker's time for "not yet"


@click.command()
@click.argument("name", metavar="SERVICE|CONTAINER")
@click.pass_obj
def inspect(ctx: Context, name: str) -> None:
    """Show the containers of a service (or one container) in detail, as JSON."""
    from composer.state import StateStore

    target = open_target(ctx)
    members = [m for m in target.view.members if name in (m.name, m.service)]
    if not members:
        services = ", ".join(target.view.services) or "none"
        raise ComposerError(f"no such service or container: {name} (the services of "
                            f"{target.view.project}: {services})")  # fmt: skip
    with StateStore(target.settings.root) as store:
        networks, ports = store.networks(), store.ports(target.view.project)
    click.echo(json.dumps([_document(target, m, networks, ports) for m in members], indent=4))


def _document(
    target: Target, member: Member, networks: list[NetworkRecord], ports: list[PortRecord]
) -> dict[str, Any]:
    from engine.container.processes import namespaces
    from engine.rootfs import Rootfs

    config, state = member.config, member.state
    rootfs = Rootfs(member.container.directory / "rootfs")
    live = state.status in ACTIVE and state.pid > 0
    created = datetime.datetime.fromtimestamp(member.created, datetime.UTC)
    own = attached_networks(member, networks)
    return {
        "Id": member.name,
        "Name": f"/{member.name}",
        "Created": created.isoformat().replace("+00:00", "Z"),
        "Path": config.argv[0] if config.argv else "",
        "Args": list(config.argv[1:]),
        "State": _state(target, member),
        "Image": config.image_id,
        "RestartCount": getattr(state, "restart_count", 0),
        "LogPath": str(member.container.directory / "container.log"),
        "Config": {
            "Hostname": config.hostname,
            "Domainname": config.domainname,
            "User": config.user,
            "Env": list(config.env),
            "Cmd": list(config.argv),
            "Image": target.view.image(member, target.settings),
            "WorkingDir": config.working_dir,
            "Labels": dict(config.labels),
            "Tty": config.tty,
            "OpenStdin": config.stdin_open,
            "StopSignal": config.stop_signal,
            "StopTimeout": config.stop_grace_period,
        },
        "HostConfig": {
            "NetworkMode": own[0][0] if own else config.network,
            "ReadonlyRootfs": config.read_only,
            "ShmSize": config.shm_size,
            "Init": config.init,
            "CapAdd": list(config.capabilities),
            "LogConfig": {
                "Type": config.log_driver,
                "Config": {
                    "max-size": str(config.log_max_size),
                    "max-file": str(config.log_max_files),
                },
            },
        },
        "Mounts": [
            {"Type": m.kind, "Source": m.source, "Destination": m.target, "RW": not m.read_only}
            for m in config.mounts
        ],
        "Namespaces": namespaces(state.pid) if live else {},
        "Cgroup": _cgroup(target, member),
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": ":".join(reversed(config.layers)),  # the top layer first
                "UpperDir": str(rootfs.upper),
                "WorkDir": str(rootfs.work),
                "MergedDir": str(rootfs.merged),
            },
        },
        "NetworkSettings": _network_settings(member, networks, ports),
    }


def _state(target: Target, member: Member) -> dict[str, Any]:
    state = member.state
    document: dict[str, Any] = {
        "Status": state.status,
        "Running": state.status in ACTIVE,
        "Paused": state.status == "paused",
        "Restarting": state.status == "restarting",
        "OOMKilled": state.oom_killed,
        "Dead": state.status == "dead",
        "Pid": state.pid,
        "ExitCode": state.exit_code or 0,
        "Error": "",
        "StartedAt": state.started_at or _NEVER,
        "FinishedAt": state.finished_at or _NEVER,
    }
    health = _health(target, member)
    if health is not None:
        document["Health"] = health
    return document


def _health(target: Target, member: Member) -> dict[str, Any] | None:
    """State.Health as docker shows it, when the container has a healthcheck (read from the
    runtime's health record when it keeps one, else from the state's status)."""
    from composer.cli.humanize import health_of

    status = health_of(member.state)
    reader = getattr(target.runtime, "health", None)
    record = reader(member.name) if callable(reader) else None
    if record is None:
        return {"Status": status, "FailingStreak": 0, "Log": []} if status else None
    log = [{"Start": getattr(p, "start", ""), "End": getattr(p, "end", ""),
            "ExitCode": getattr(p, "exit_code", 0), "Output": getattr(p, "output", "")}
           for p in getattr(record, "log", ())]  # fmt: skip
    return {"Status": status or getattr(record, "status", ""),
            "FailingStreak": getattr(record, "failing_streak", 0), "Log": log}  # fmt: skip


def _cgroup(target: Target, member: Member) -> dict[str, Any]:
    cgroups = target.runtime.cgroups
    name = target.runtime.cgroup_of(member.name)
    limits = member.config.limits
    return {
        "Path": name,
        "Version": cgroups.version,
        "Limits": {
            "CpuQuota": limits.cpu_quota_us,
            "CpuPeriod": limits.cpu_period_us,
            "CpuShares": limits.cpu_shares,
            "CpusetCpus": limits.cpuset_cpus,
            "CpusetMems": limits.cpuset_mems,
            "Memory": limits.memory_limit,
            "MemorySwap": limits.memory_swap,
            "MemoryReservation": limits.memory_reservation,
            "PidsLimit": limits.pids_limit,
        },
    }


def _network_settings(
    member: Member, networks: list[NetworkRecord], ports: list[PortRecord]
) -> dict[str, Any]:
    published: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        if port.container == member.name:
            published.setdefault(f"{port.container_port}/{port.protocol}", []).append(
                {"HostIp": port.host_ip or "0.0.0.0", "HostPort": str(port.host_port)}
            )
    macs = _macs(member)
    attached = {}
    for name, attachment in attached_networks(member, networks):
        attached[name] = _network(attachment, macs.get(attachment.ifname, ""))
    return {"Ports": published, "Networks": attached}


def _network(attachment: Attachment, mac: str) -> dict[str, Any]:
    return {
        "IPAddress": str(attachment.address.ip),
        "IPPrefixLen": attachment.address.network.prefixlen,
        "Gateway": str(attachment.gateway) if attachment.gateway else "",
        "GlobalIPv6Address": str(attachment.address6.ip) if attachment.address6 else "",
        "IPv6Gateway": str(attachment.gateway6) if attachment.gateway6 else "",
        "MacAddress": attachment.mac or mac,
        "Bridge": attachment.bridge,
        "HostInterface": attachment.host_ifname,
        "Interface": attachment.ifname,
    }


def _macs(member: Member) -> dict[str, str]:
    """The MAC address of each interface in the container's network namespace (none when it
    does not run, or has no interface of its own to read)."""
    if member.state.status not in ACTIVE or not member.state.pid or not member.config.networks:
        return {}
    from engine.errors import EngineError
    from engine.network.netns import netns_rtnl, open_netns

    try:
        fd = open_netns(member.state.pid)
    except EngineError:
        return {}
    try:
        with netns_rtnl(fd) as rtnl:
            return {link.name: link.mac for link in rtnl.links()}
    finally:
        os.close(fd)
