"""What composer prints for a stack loads back as the same stack (normalise → print → load).

The stacks are generated: small strategies, one per piece of the compose syntax, are composed
into whole stack files that are written with PyYAML's safe dumper and loaded as composer would
load them. Printing (YAML or JSON) and loading the printout must change neither the normal form nor
any service's config hash.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from composer.config.loader import LoadOptions, Stack, load_stack
from composer.config.serialize import project_to_dict, service_hash, to_json, to_yaml

ENVIRON = {"HOME": "/home/tester", "GREETING": "hello there", "NUMBER": "42"}
"""The process environment of every load: keys given without a value take theirs from here."""

Draw = Callable[[st.SearchStrategy[Any]], Any]

# --- scalars ----------------------------------------------------------------------------------

_TEXT_PIECES = st.sampled_from(
    [
        "hello",
        "hello world",
        " leading",
        "trailing ",
        "a=b",
        "key: value",
        "#not-a-comment",
        "'quoted'",
        '"double"',
        "{braces}",
        "[brackets]",
        "multi\nline",
        "tab\there",
        "ünïcødé",
        "$$HOME",  # an escaped dollar: the value holds a literal `$HOME`
        "$${NOT_INTERPOLATED}",
        "price: 5$$",
        "yes",
        "no",
        "on",
        "null",
        "true",
        "~",
        "42",
        "-7",
        "1.5",
        "1e3",
        "0o17",
        "0x1f",
        "1_000",
        "22:22",
        "2024-01-01",
    ]
)
_FREE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="$"),
    max_size=12,
)

text = st.one_of(
    _TEXT_PIECES, _FREE_TEXT, st.lists(_TEXT_PIECES, min_size=2, max_size=3).map(" ".join)
)
"""A string value as a user may write one (escaped `$` only: interpolation is not under test)."""

word = st.one_of(
    st.sampled_from(["sh", "-c", "echo", "--flag=1", "hello world", "$$HOME", "1e3", "0o17", ""]),
    st.text(alphabet="abcxyz019-_./=: ", min_size=1, max_size=8),
)
scalar = st.one_of(text, st.integers(-5, 10**6), st.booleans(), st.sampled_from([0.5, 1.25]))

env_name = st.sampled_from(["APP_MODE", "DEBUG", "PORT", "GREETING", "NUMBER", "EMPTY", "PATH_X"])
label_key = st.sampled_from(["com.example.team", "com.example.tier", "traefik.enable", "simple"])
duration = st.one_of(
    st.sampled_from(["30s", "1m30s", "500ms", "1h", "1.5s", "90s", "1h2m3s", "10us", "0s", "2m"]),
    st.integers(0, 3600),
)
size = st.one_of(
    st.sampled_from(["512m", "1g", "1.5g", "64k", "100b", "2MiB", "1GB", "10M", "0.5k"]),
    st.integers(0, 2**34),
)
cpus = st.sampled_from([0.5, 1, 1.5, "0.25", "2"])
container_path = st.sampled_from(
    ["/data", "/srv/app", "/var/lib/app", "/cache", "/etc/app/conf.d", "/tmp/scratch"]
)


def _subset(draw: Draw, items: list[str], min_size: int = 0) -> list[str]:
    """Some of `items`, without repeats; none when there are none to choose from."""
    if not items:
        return []
    chosen: list[str] = draw(st.lists(st.sampled_from(items), min_size=min_size, unique=True))
    return chosen


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with any subset of `fields`."""
    return st.fixed_dictionaries({}, optional=fields)


def key_values(
    keys: st.SearchStrategy[str], values: st.SearchStrategy[Any], *, nullable: bool
) -> st.SearchStrategy[Any]:
    """The map form (`{K: V}`) or the list form (`["K=V", "K"]`) of a KEY=VALUE section."""
    mapping = st.dictionaries(keys, st.one_of(values, st.none()) if nullable else values)
    as_list = st.dictionaries(keys, st.one_of(text, st.none()) if nullable else text).map(
        lambda d: [k if v is None else f"{k}={v}" for k, v in d.items()]
    )
    return st.one_of(mapping, as_list)


# --- service keys -----------------------------------------------------------------------------

image = st.sampled_from(
    [
        "nginx",
        "nginx:1.25-alpine",
        "registry.example.com:5000/team/app:v2",
        "busybox@sha256:" + "a" * 64,
        "postgres:16",
    ]
)
command = st.one_of(
    st.lists(word, min_size=1, max_size=4).map(shlex.join), st.lists(word, max_size=4)
)
environment = key_values(env_name, scalar, nullable=True)
labels = key_values(label_key, scalar, nullable=False)

_host_ip = st.sampled_from(["127.0.0.1", "0.0.0.0", "[::1]"])
_protocol = st.sampled_from(["", "/tcp", "/udp"])
short_port = st.one_of(
    st.integers(1, 65535),
    st.builds(lambda t, p: f"{t}{p}", st.integers(1, 65535), _protocol),
    st.builds(
        lambda h, t, p: f"{h}:{t}{p}", st.integers(1, 65535), st.integers(1, 65535), _protocol
    ),
    st.builds(
        lambda ip, h, t: f"{ip}:{h}:{t}", _host_ip, st.integers(1, 65535), st.integers(1, 65535)
    ),
    st.builds(lambda ip, t: f"{ip}::{t}", _host_ip, st.integers(1, 65535)),
    st.builds(
        lambda lo, n, p: f"{lo}-{lo + n}:{lo}-{lo + n}{p}",
        st.integers(1000, 9000),
        st.integers(1, 3),
        _protocol,
    ),
    st.builds(lambda lo, n: f"{lo}-{lo + n}", st.integers(1000, 9000), st.integers(1, 3)),
    st.builds(lambda lo, t: f"{lo}-{lo + 10}:{t}", st.integers(1000, 9000), st.integers(1, 65535)),
)
long_port = st.fixed_dictionaries(
    {"target": st.integers(1, 65535)},
    optional={
        "published": st.one_of(st.integers(1, 65535), st.integers(1, 65535).map(str)),
        "protocol": st.sampled_from(["tcp", "udp"]),
        "host_ip": st.sampled_from(["127.0.0.1", "::1"]),
        "mode": st.sampled_from(["ingress", "host"]),
        "name": st.sampled_from(["http", "metrics"]),
    },
)
ports = st.lists(st.one_of(short_port, long_port), max_size=4)
expose = st.lists(
    st.one_of(st.integers(1, 65535), st.sampled_from(["3000", "4000-4002", "53/udp"])), max_size=3
)


@st.composite
def volume_mount(draw: Draw, target: str, named: list[str]) -> Any:
    """One mount of `target`: a bind, named, anonymous or tmpfs mount, short or long."""
    ro = draw(st.sampled_from(["", ":ro", ":rw"]))
    host = draw(st.sampled_from(["./data", "./conf/app.conf", "/srv/host", "~/cache", "."]))
    choices: list[Any] = [
        st.just(f"{host}:{target}{ro}"),
        st.just(target),
        st.fixed_dictionaries(
            {"type": st.just("bind"), "source": st.just(host), "target": st.just(target)},
            optional={
                "read_only": st.booleans(),
                "bind": _optional(
                    propagation=st.sampled_from(["rprivate", "shared"]),
                    create_host_path=st.booleans(),
                ),
            },
        ),
        st.fixed_dictionaries(
            {"type": st.just("tmpfs"), "target": st.just(target)},
            optional={"tmpfs": _optional(size=size, mode=st.sampled_from([0o1777, 0o755]))},
        ),
        st.just({"type": "volume", "target": target}),
    ]
    if named:
        source = draw(st.sampled_from(named))
        choices += [
            st.sampled_from(
                [f"{source}:{target}", f"{source}:{target}:ro", f"{source}:{target}:nocopy"]
            ),
            st.fixed_dictionaries(
                {"type": st.just("volume"), "source": st.just(source), "target": st.just(target)},
                optional={"read_only": st.booleans(), "volume": _optional(nocopy=st.booleans())},
            ),
        ]
    return draw(st.one_of(choices))


@st.composite
def volumes(draw: Draw, named: list[str]) -> list[Any]:
    targets = draw(st.lists(container_path, max_size=4, unique=True))
    return [draw(volume_mount(target, named)) for target in targets]


tmpfs = st.one_of(
    st.just("/run"),
    st.lists(st.sampled_from(["/run", "/tmp:size=64m,mode=1777"]), min_size=1, unique=True),
)


@st.composite
def depends_on(draw: Draw, earlier: list[str]) -> Any:
    """Dependencies on services defined before this one only, so the graph stays acyclic."""
    names = _subset(draw, earlier, min_size=1)
    if draw(st.booleans()):
        return names
    condition = st.sampled_from(
        ["service_started", "service_healthy", "service_completed_successfully"]
    )
    return {
        name: draw(_optional(condition=condition, required=st.booleans(), restart=st.booleans()))
        for name in names
    }


healthcheck = st.fixed_dictionaries(
    {},
    optional={
        "test": st.one_of(
            st.sampled_from(
                ["curl -f http://localhost/ || exit 1", "pg_isready -U $$POSTGRES_USER"]
            ),
            st.lists(word, min_size=1, max_size=3).map(lambda w: ["CMD", *w]),
            word.map(lambda w: ["CMD-SHELL", w]),
            st.just(["NONE"]),
        ),
        "interval": duration,
        "timeout": duration,
        "retries": st.integers(0, 10),
        "start_period": duration,
        "start_interval": duration,
        "disable": st.booleans(),
    },
)
restart = st.sampled_from(["no", "always", "unless-stopped", "on-failure", "on-failure:5"])
deploy = _optional(
    mode=st.sampled_from(["replicated", "global"]),
    replicas=st.integers(0, 5),
    labels=labels,
    resources=_optional(
        limits=_optional(cpus=cpus, memory=size, pids=st.integers(1, 1000)),
        reservations=_optional(cpus=cpus, memory=size),
    ),
    restart_policy=_optional(
        condition=st.sampled_from(["none", "on-failure", "any"]),
        delay=duration,
        max_attempts=st.integers(0, 10),
        window=duration,
    ),
)


@st.composite
def ulimit(draw: Draw) -> Any:
    soft, hard = sorted(draw(st.lists(st.integers(0, 65536), min_size=2, max_size=2)))
    return draw(st.sampled_from([soft, {"soft": soft, "hard": hard}]))


ulimits = st.dictionaries(st.sampled_from(["nofile", "nproc", "core"]), ulimit(), max_size=2)
sysctls = key_values(
    st.sampled_from(["net.core.somaxconn", "net.ipv4.ip_forward", "kernel.msgmax"]),
    st.one_of(st.integers(0, 65535), st.sampled_from(["1", "0"])),
    nullable=False,
)
_ip = st.sampled_from(["10.0.0.5", "192.168.1.10", "::1", "2001:db8::1"])
_host = st.sampled_from(["db.internal", "gateway", "host.docker.internal"])
extra_hosts = st.one_of(
    st.lists(
        st.builds(lambda h, sep, ip: f"{h}{sep}{ip}", _host, st.sampled_from([":", "="]), _ip),
        max_size=3,
    ),
    st.dictionaries(
        _host, st.one_of(_ip, st.lists(_ip, min_size=1, max_size=2, unique=True)), max_size=2
    ),
)
dns = st.one_of(st.just("8.8.8.8"), st.lists(st.sampled_from(["1.1.1.1", "9.9.9.9"]), unique=True))
profiles = st.lists(st.sampled_from(["debug", "tools", "test"]), min_size=1, unique=True)
extensions = st.dictionaries(
    st.sampled_from(["x-owner", "x-notes", "x-meta"]),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-100, 100), text),
        lambda inner: st.one_of(
            st.lists(inner, max_size=2),
            st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=2),
        ),
        max_leaves=4,
    ),
    max_size=2,
)


@st.composite
def file_references(draw: Draw, declared: list[str]) -> list[Any]:
    """A service's secrets or configs: the short name or the long form."""
    refs: list[Any] = []
    for name in _subset(draw, declared):
        if draw(st.booleans()):
            refs.append(name)
            continue
        options = _optional(
            target=st.sampled_from([f"/run/{name}", name, "/etc/app/file"]),
            uid=st.sampled_from(["1000", 0]),
            gid=st.sampled_from(["1000", 0]),
            mode=st.sampled_from([0o440, 0o400, 0o644]),
        )
        refs.append({"source": name, **draw(options)})
    return refs


@st.composite
def service_networks(draw: Draw, declared: dict[str, Any]) -> Any:
    """The list form, or the map form with aliases and, on a network with a subnet, an address."""
    names = _subset(draw, [*declared, "default"], min_size=1)
    if draw(st.booleans()):
        return names
    result: dict[str, Any] = {}
    for name in names:
        fields: dict[str, st.SearchStrategy[Any]] = {
            "aliases": st.lists(st.sampled_from(["alias1", "svc.local"]), min_size=1, unique=True),
            "priority": st.integers(0, 100),
        }
        subnet = _subnet_of(declared.get(name))
        if subnet is not None:
            fields["ipv4_address"] = st.sampled_from([f"{subnet}.{n}" for n in range(2, 251)])
        result[name] = draw(st.one_of(st.none(), _optional(**fields)))
    return result


def _subnet_of(network: Any) -> str | None:
    """The first three octets of a declared network's /24 subnet, if it has one."""
    if isinstance(network, dict) and "ipam" in network:
        return str(network["ipam"]["config"][0]["subnet"]).rsplit(".", 1)[0]
    return None


@st.composite
def service(draw: Draw, earlier: list[str], top: dict[str, Any]) -> dict[str, Any]:
    """One service using any of the declared networks, volumes, secrets and configs."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "command": command,
        "entrypoint": command,
        "environment": environment,
        "ports": ports,
        "expose": expose,
        "volumes": volumes(list(top.get("volumes", {}))),
        "tmpfs": tmpfs,
        "healthcheck": healthcheck,
        "restart": restart,
        "deploy": deploy,
        "cpus": cpus,
        "mem_limit": size,
        "mem_reservation": size,
        "shm_size": size,
        "networks": service_networks(top.get("networks", {})),
        "labels": labels,
        "ulimits": ulimits,
        "sysctls": sysctls,
        "extra_hosts": extra_hosts,
        "dns": dns,
        "profiles": profiles,
        "secrets": file_references(list(top.get("secrets", {}))),
        "configs": file_references(list(top.get("configs", {}))),
        "stop_grace_period": duration,
        "user": st.sampled_from(["1000", "1000:1000", "nobody", 0]),
        "working_dir": st.sampled_from(["/srv/app", "/"]),
        "init": st.booleans(),
        "read_only": st.booleans(),
        "cap_add": st.lists(st.sampled_from(["NET_ADMIN", "SYS_TIME"]), unique=True),
        "logging": _optional(
            driver=st.just("json-file"), options=st.just({"max-size": "10m", "max-file": 3})
        ),
    }
    if earlier:
        fields["depends_on"] = depends_on(earlier)
    body = draw(st.fixed_dictionaries({"image": image}, optional=fields))
    return {**body, **draw(extensions)}


# --- top-level declarations -------------------------------------------------------------------

network = st.one_of(
    st.none(),
    _optional(
        driver=st.just("bridge"),
        labels=labels,
        internal=st.booleans(),
        attachable=st.booleans(),
        driver_opts=st.just({"com.docker.network.bridge.name": "br-test"}),
    ),
    st.just({"external": True}),
    st.just({"name": "shared-net"}),
)
volume = st.one_of(
    st.none(),
    _optional(
        driver=st.just("local"),
        labels=labels,
        driver_opts=st.just({"type": "tmpfs", "device": "tmpfs", "o": "size=100m"}),
    ),
    st.just({"external": True}),
    st.just({"name": "shared-volume"}),
)
file_resource = st.fixed_dictionaries(
    {"file": st.sampled_from(["./secret.txt", "./conf/app.conf", "/etc/hostname", "~/token"])},
    optional={"name": st.sampled_from(["custom-name"])},
)


@st.composite
def declarations(draw: Draw) -> dict[str, Any]:
    """Top-level networks (some with a /24 subnet), volumes, secrets and configs."""
    networks: dict[str, Any] = {}
    for index, name in enumerate(_subset(draw, ["front", "back", "internal"])):
        with_subnet = {"ipam": {"config": [{"subnet": f"172.{28 + index}.5.0/24"}]}}
        networks[name] = draw(st.one_of(st.just(with_subnet), network))
    top = {
        "networks": networks,
        "volumes": {n: draw(volume) for n in _subset(draw, ["data", "cache", "logs"])},
        "secrets": {n: draw(file_resource) for n in _subset(draw, ["db_password", "api_key"])},
        "configs": {n: draw(file_resource) for n in _subset(draw, ["app_conf", "nginx_conf"])},
    }
    return {section: entries for section, entries in top.items() if entries}


@st.composite
def stacks(draw: Draw) -> dict[str, Any]:
    """A whole stack file: declarations, 1-4 services (acyclic dependencies), extensions."""
    top = draw(declarations())
    names = draw(
        st.lists(
            st.sampled_from(["web", "api", "db", "cache", "worker"]),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    services: dict[str, Any] = {}
    for index, name in enumerate(names):
        services[name] = draw(service(names[:index], top))
    stack: dict[str, Any] = {"services": services, **top}
    if draw(st.booleans()):
        stack["name"] = "roundtrip"
    stack.update(
        draw(st.dictionaries(st.sampled_from(["x-common", "x-defaults"]), text, max_size=1))
    )
    return stack


# --- writing and loading ----------------------------------------------------------------------


class _StackDumper(yaml.SafeDumper):
    """yaml.safe_dump's dumper, quoting also the strings that YAML 1.2 (which compose reads)
    takes for numbers, such as `0o17` and `1e3`, so that a generated string stays a string."""


_StackDumper.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^0o[0-7]+$"), list("0"))
_StackDumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def _write_stack(path: Path, stack: dict[str, Any]) -> None:
    path.write_text(yaml.dump(stack, Dumper=_StackDumper, allow_unicode=True), encoding="utf-8")


def _load(path: Path) -> Stack:
    return load_stack(
        LoadOptions(files=(path,), environ=ENVIRON, working_directory=path.parent, profiles=("*",))
    )


def _assert_reloads_unchanged(stack: Stack, directory: Path, name: str, printed: str) -> None:
    path = directory / name
    path.write_text(printed, encoding="utf-8")
    again = _load(path)
    assert project_to_dict(again.project) == project_to_dict(stack.project), printed
    for service_name in stack.project.services:
        assert service_hash(again.project, service_name) == service_hash(
            stack.project, service_name
        ), service_name


# --- the property -----------------------------------------------------------------------------


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stack=stacks())
@example(
    stack={"services": {"web": {"image": "nginx", "environment": ["PRICE=5$$", "HOME_DIR=$$HOME"]}}}
)
@example(stack={"services": {"web": {"image": "nginx", "command": "echo 1e3 0o17"}}})
@example(stack={"services": {"web": {"image": "nginx", "labels": {"note": "del\x7f nel\x85"}}}})
def test_printed_stack_loads_back_unchanged(stack: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="stack") as tmp:
        directory = Path(tmp)
        source = directory / "compose.yaml"
        _write_stack(source, stack)
        loaded = _load(source)
        normal = project_to_dict(loaded.project)
        _assert_reloads_unchanged(loaded, directory, "printed.yaml", to_yaml(normal))
        _assert_reloads_unchanged(loaded, directory, "printed.json", to_json(normal))
        json.loads(to_json(normal))  # the JSON printout is JSON, not only YAML
