"""A service's container, decided: the engine's ContainerConfig from the service's keys, its
image and the stack (capabilities, security options, mounts, limits, ulimits, sysctls)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from composer.config.project import Project
from composer.config.service import Service, VolumeMount
from composer.config.yamlio import locate
from composer.errors import ComposerError, StackError, format_key_path
from composer.planner import container_name
from composer.process import resolve_process
from composer.settings import Settings
from engine.cgroups.base import CgroupLimits
from engine.container.config import ContainerConfig
from engine.container.health import HealthConfig
from engine.container.launch import ContainerError
from engine.container.spec import DEFAULT_CAPABILITIES, Mount, Rlimit
from engine.images.store import Image, ImageStore
from engine.linux import CAPABILITIES
from engine.network.veth import Attachment
from engine.userns import IdMap

__all__ = ["container_config"]

# Sysctls that are namespaced (Docker's list): others would change the host, and are refused.
_NAMESPACED_SYSCTLS: Final = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
_CPU_PERIOD: Final = 100_000


@dataclass(frozen=True)
class _Context:
    name: str
    service: Service
    project: Project
    settings: Settings
    raw: Any = None  # the stack as read (marked YAML), to say where a key is


def _fail(ctx: _Context, message: str, *key: str | int) -> ComposerError:
    """An error at `services.NAME.KEY…`, with its file, line and column when the stack as read
    is at hand."""
    path = ("services", ctx.name, *key)
    location = locate(ctx.raw, path) if ctx.raw is not None else None
    return StackError.single(message, format_key_path(path), location)


def _capability(ctx: _Context, name: str) -> str:
    full = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
    if full not in CAPABILITIES and full != "CAP_ALL":
        raise _fail(ctx, f"unknown capability {name!r}", "cap_add")
    return full


def _capabilities(ctx: _Context) -> tuple[str, ...]:
    service = ctx.service
    if service.privileged:
        return tuple(CAPABILITIES)
    adds = [_capability(ctx, c) for c in service.cap_add or []]
    drops = [_capability(ctx, c) for c in service.cap_drop or []]
    caps = [] if "CAP_ALL" in drops else list(DEFAULT_CAPABILITIES)
    caps = [c for c in caps if c not in drops]
    if "CAP_ALL" in adds:
        return tuple(c for c in CAPABILITIES if c not in drops)
    caps += [c for c in adds if c not in caps]
    return tuple(caps)


def _security(ctx: _Context) -> tuple[bool, bool]:
    """(no_new_privileges, seccomp) from security_opt; on by default (one step stricter than
    Docker: no-new-privileges is on unless turned off)."""
    no_new_privs, seccomp = True, not ctx.service.privileged
    for option in ctx.service.security_opt or []:
        key, _, value = option.replace("=", ":", 1).partition(":")
        if key == "no-new-privileges":
            no_new_privs = value.lower() != "false"
        elif key == "seccomp":
            if value != "unconfined":
                raise _fail(
                    ctx, f"{option!r}: only seccomp=unconfined is supported", "security_opt"
                )
            seccomp = False
        elif key in ("apparmor", "label", "systempaths"):
            continue  # no LSM profiles here
        else:
            raise _fail(ctx, f"unknown option {option!r}", "security_opt")
    return no_new_privs, seccomp


def _limits(ctx: _Context) -> CgroupLimits:
    service = ctx.service
    deploy = service.deploy.resources if service.deploy and service.deploy.resources else None
    limit = deploy.limits if deploy and deploy.limits else None
    reserve = deploy.reservations if deploy and deploy.reservations else None
    cpus = service.cpus if service.cpus is not None else (limit.cpus if limit else None)
    quota = service.cpu_quota or (int(cpus * _CPU_PERIOD) if cpus else None)
    memory = (
        service.mem_limit if service.mem_limit is not None else (limit.memory if limit else None)
    )
    pids = service.pids_limit if service.pids_limit is not None else (limit.pids if limit else None)
    reservation = (
        service.mem_reservation
        if service.mem_reservation is not None
        else (reserve.memory if reserve else None)
    )
    return CgroupLimits(
        cpu_quota_us=quota,
        cpu_period_us=service.cpu_period or _CPU_PERIOD,
        cpu_shares=service.cpu_shares,
        cpuset_cpus=str(service.cpuset) if service.cpuset is not None else None,
        memory_limit=int(memory) if memory is not None else None,
        memory_swap=int(service.memswap_limit) if service.memswap_limit is not None else None,
        memory_reservation=int(reservation) if reservation is not None else None,
        pids_limit=pids,
    )


def _sysctls(ctx: _Context, own_network: bool) -> tuple[tuple[str, str], ...]:
    result = []
    for key, value in (ctx.service.sysctls or {}).items():
        allowed = (
            key in _NAMESPACED_SYSCTLS
            or key.startswith("fs.mqueue.")
            or (key.startswith("net.") and own_network)
        )
        if not allowed:
            why = "the host's network" if key.startswith("net.") else "the host"
            raise _fail(
                ctx,
                f"sysctl {key} is not namespaced: it would change {why}; refused",
                "sysctls",
                key,
            )
        result.append((key, str(value)))
    return tuple(result)


def _ulimits(ctx: _Context) -> tuple[Rlimit, ...]:
    import resource

    limits = []
    for name, value in (ctx.service.ulimits or {}).items():
        rlimit = f"RLIMIT_{name.upper()}"
        if not hasattr(resource, rlimit):
            raise _fail(ctx, f"unknown ulimit {name!r}", "ulimits", name)
        limits.append(Rlimit(rlimit, value.soft, value.hard))
    return tuple(limits)


def _volume_dir(ctx: _Context, name: str) -> Path:
    return ctx.settings.root / "volumes" / name / "_data"


def _mount(ctx: _Context, mount: VolumeMount) -> Mount:
    read_only = bool(mount.read_only)
    if mount.type == "tmpfs":
        options = []
        if mount.tmpfs and mount.tmpfs.size is not None:
            options.append(f"size={int(mount.tmpfs.size)}")
        if mount.tmpfs and mount.tmpfs.mode is not None:
            options.append(f"mode={mount.tmpfs.mode:o}")
        return Mount("tmpfs", mount.target, options=",".join(options), read_only=read_only)
    if mount.type == "bind":
        source = Path(mount.source or "")
        if not source.exists():
            if not (mount.bind and mount.bind.create_host_path):
                raise _fail(
                    ctx,
                    f"bind mount source {source} does not exist (set "
                    "bind.create_host_path: true to have it made)",
                    "volumes",
                )
            source.mkdir(parents=True)
        propagation = mount.bind.propagation if mount.bind and mount.bind.propagation else ""
        return Mount("bind", mount.target, str(source), read_only, propagation=propagation)
    if mount.source:  # a named volume
        volume = ctx.project.volumes[mount.source]
        directory = _volume_dir(ctx, volume.name or mount.source)
    else:  # anonymous: a volume of its own, named at random as Docker does
        directory = _volume_dir(ctx, secrets.token_hex(32))
    seed = not directory.exists() and not (mount.volume and mount.volume.nocopy)
    directory.mkdir(parents=True, exist_ok=True)
    subpath = mount.volume.subpath if mount.volume and mount.volume.subpath else ""
    if subpath:
        directory = directory / subpath
    return Mount("bind", mount.target, str(directory), read_only, seed=seed)


def _tmpfs_entries(ctx: _Context) -> list[Mount]:
    mounts = []
    for entry in ctx.service.tmpfs or []:
        target, _, options = entry.partition(":")
        mounts.append(Mount("tmpfs", target, options=options))
    return mounts


def _files(ctx: _Context, kind: str) -> list[Mount]:
    """Secrets (under /run/secrets) and configs (at their target or /NAME), read-only."""
    granted = ctx.service.secrets if kind == "secrets" else ctx.service.configs
    resources = ctx.project.secrets if kind == "secrets" else ctx.project.configs
    mounts = []
    for ref in granted or []:
        resource = resources.get(ref.source)
        if resource is None or resource.file is None:
            raise _fail(
                ctx, f"{kind[:-1]} {ref.source!r}: only file-based ones are supported", kind
            )
        default = f"/run/secrets/{ref.source}" if kind == "secrets" else f"/{ref.source}"
        target = ref.target or default
        if kind == "secrets" and not target.startswith("/"):
            target = f"/run/secrets/{target}"
        mounts.append(Mount("bind", target, resource.file, read_only=True, recursive=False))
    return mounts


def _logging(ctx: _Context) -> tuple[str, int, int]:
    """(driver, max size, files) from `logging`: json-file (Docker's default), local (the
    same here) or none; options max-size and max-file."""
    from composer.config.types import parse_bytes

    logging = ctx.service.logging
    driver = (logging.driver if logging else None) or "json-file"
    if driver not in ("json-file", "local", "none"):
        raise _fail(
            ctx, f"logging driver {driver!r} is not supported (json-file, local, none)", "logging"
        )
    options = (logging.options if logging else None) or {}
    try:
        size = int(parse_bytes(options.get("max-size") or "10m"))
        files = int(options.get("max-file") or 3)
    except (ValueError, TypeError) as exc:
        raise _fail(ctx, f"logging options: {exc}", "logging") from exc
    if files < 1:
        raise _fail(ctx, "logging option max-file must be at least 1", "logging")
    return ("none" if driver == "none" else "json-file"), size, files


def _user_namespace(ctx: _Context) -> tuple[IdMap, IdMap]:
    """`userns_mode`: "host" (or unset) runs without a user namespace, as Docker does by
    default; "auto" maps the container's ids 0… onto the host range of the settings."""
    mode = ctx.service.userns_mode
    if mode in (None, "", "host"):
        return (), ()
    if mode != "auto":
        raise _fail(ctx, f"userns_mode {mode!r} is not supported (auto, host)", "userns_mode")
    if ctx.service.privileged:
        raise _fail(ctx, "privileged and a user namespace exclude each other", "userns_mode")
    uid, gid, size = ctx.settings.userns_range
    return ((0, uid, size),), ((0, gid, size),)


def container_config(
    project: Project,
    name: str,
    number: int,
    image: Image,
    store: ImageStore,
    settings: Settings,
    files: tuple[tuple[str, str], ...] = (),
    raw: Any = None,
    joined: str | None = None,
    networks: tuple[Attachment, ...] = (),
    labels: tuple[tuple[str, str], ...] = (),
) -> ContainerConfig:
    """The container `number` of service `name`; raises StackError naming the key (with its
    file, line and column when `raw`, the stack as read, is given) for what cannot be run.
    `joined`: for `network_mode: service:X` or `container:X`, the id of that container (its
    network namespace is joined as it runs at each start); `networks`: the container's veth
    per network of its own."""
    service = project.services[name]
    ctx = _Context(name, service, project, settings, raw)
    process = resolve_process(name, service, image.config)
    mode = service.network_mode or ""
    network = "host" if mode == "host" else "none"
    if mode.startswith(("service:", "container:")):
        if joined is None:
            raise _fail(ctx, f"{mode!r}: no such container in this stack", "network_mode")
        network = f"container:{joined}"
    no_new_privs, seccomp = _security(ctx)
    mounts = [_mount(ctx, m) for m in service.volumes or []]
    mounts += _tmpfs_entries(ctx) + _files(ctx, "secrets") + _files(ctx, "configs")
    cid = container_name(project.name, name, number, service.container_name)
    log_driver, log_size, log_files = _logging(ctx)
    uid_map, gid_map = _user_namespace(ctx)
    # `restart`, else deploy.restart_policy (its condition defaults to any, as the spec says)
    restart = service.restart
    policy = service.deploy.restart_policy if service.deploy else None
    if restart is None and policy is not None:
        condition = {"any": "always", "none": "no"}.get(policy.condition or "any", "on-failure")
        limit = policy.max_attempts if condition == "on-failure" else None
        restart = f"{condition}:{limit}" if limit else condition
    # The service's healthcheck over the image's, already resolved (see composer.process).
    health, healthcheck = process.healthcheck, None
    try:
        if health is not None:
            healthcheck = HealthConfig.from_test(
                health.test, interval=health.interval, timeout=health.timeout,
                retries=health.retries, start_period=health.start_period,
                start_interval=health.start_interval,
            )  # fmt: skip
    except ContainerError as exc:
        raise _fail(ctx, str(exc), "healthcheck") from exc
    return ContainerConfig(
        id=cid,
        image_id=image.id,
        layers=tuple(str(store.layer_link(layer.diff_id)) for layer in image.layers),
        argv=process.argv,
        group=project.name,
        env=process.env,
        working_dir=process.working_dir,
        user=process.user,
        group_add=tuple(str(g) for g in service.group_add or ()),
        hostname=service.hostname or cid,
        domainname=service.domainname or "",
        mounts=tuple(mounts),
        files=files,
        capabilities=_capabilities(ctx),
        no_new_privileges=no_new_privs,
        seccomp=seccomp,
        read_only=bool(service.read_only),
        shm_size=int(service.shm_size) if service.shm_size is not None else 64 << 20,
        rlimits=_ulimits(ctx),
        sysctls=_sysctls(ctx, own_network=network == "none"),
        limits=_limits(ctx),
        network=network,
        networks=networks if network == "none" else (),
        ipc_host=service.ipc == "host",
        pid_host=service.pid == "host",
        uts_host=service.uts == "host",
        cgroup_host=service.cgroup == "host",
        cgroup_parent=service.cgroup_parent or "",
        oom_score_adj=service.oom_score_adj,
        tty=bool(service.tty),
        stdin_open=bool(service.stdin_open),
        init=bool(service.init),
        log_driver=log_driver,
        log_max_size=log_size,
        log_max_files=log_files,
        stop_signal=process.stop_signal,
        stop_grace_period=float(service.stop_grace_period or 10.0),
        uid_map=uid_map,
        gid_map=gid_map,
        restart=restart or "no",
        healthcheck=healthcheck,
        labels=(
            *((str(k), str(v)) for k, v in (service.labels or {}).items()
              if not str(k).startswith("composer.")),  # ours are not the stack's to set
            ("composer.project", project.name),
            ("composer.service", name),
            ("composer.number", str(number)),
            *labels,
        ),
    )
