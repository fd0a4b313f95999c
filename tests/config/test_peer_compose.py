"""Composer reads the awesome-compose files as docker-compose does (`docker-compose config`).

Per file and per service, every key both tools print is brought to a normal form defined here
and compared. docker-compose 1.29 (Debian's package) is the peer: where it differs from
compose v2, which composer follows, the difference is normalised away below, with the reason.
Files docker-compose itself cannot read (mostly for missing build contexts) are skipped.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from composer.config.loader import LoadOptions, load_stack
from composer.config.serialize import project_to_dict
from tests.conftest import CORPUS as SHARED_CORPUS

DOCKER_COMPOSE = shutil.which("docker-compose")
CORPUS = SHARED_CORPUS / "awesome-compose"
FILES = sorted(CORPUS.glob("*/compose.y*ml"))

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        DOCKER_COMPOSE is None,
        reason="docker-compose is not installed (apt-get install docker-compose)",
    ),
]


# --- normal forms -----------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A scalar as a string: 1.29 prints `PORT: 8000` where v2 prints `PORT: "8000"`."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(value: Any) -> Any:
    """Any value with its scalars as strings, for keys that need no more than that."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return _text(value)


def _words(value: Any) -> list[str]:
    """1.29 keeps a command written as one string as it is; v2 splits it into words."""
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _key_values(value: Any) -> dict[str, str | None]:
    if isinstance(value, list):
        pairs = (str(item).partition("=") for item in value)
        return {k: (v if sep else None) for k, sep, v in pairs}
    return {str(k): _text(v) for k, v in value.items()}


def _ports(value: list[Any]) -> set[tuple[str | None, str | None, int, str]]:
    """(host_ip, published, target, protocol); 1.29 omits the default protocol, tcp."""
    result = set()
    for port in value:
        assert isinstance(port, dict), f"unexpected short port {port!r}"
        result.add(
            (
                port.get("host_ip"),
                _text(port.get("published")),
                int(port["target"]),
                port.get("protocol") or "tcp",
            )
        )
    return result


def _mount(entry: Any) -> tuple[str, str | None, str, bool]:
    """(type, source, target, read_only) of a long-syntax mount or 1.29's `SOURCE:TARGET:MODE`."""
    if isinstance(entry, dict):
        return (
            entry["type"],
            entry.get("source"),
            entry["target"],
            bool(entry.get("read_only", False)),
        )
    parts = entry.split(":")
    if len(parts) == 1:
        return ("volume", None, parts[0], False)
    source, target, *mode = parts
    kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
    return (kind, source, target, "ro" in ",".join(mode).split(","))


def _volumes(value: list[Any]) -> set[tuple[str, str | None, str | None, bool]]:
    """1.29 drops a trailing `/` from absolute paths; v2 keeps them as written (compose-go
    joins only relative paths to the project directory), so both are compared without it."""
    return {
        (kind, _no_slash(source), _no_slash(target), read_only)
        for kind, source, target, read_only in map(_mount, value)
    }


def _no_slash(path: str | None) -> str | None:
    return (path.rstrip("/") or "/") if path else path


def _depends_on(value: Any) -> dict[str, str]:
    """Each dependency's condition; the list form means `service_started`."""
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def _networks(value: Any) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Each network's (ipv4_address, aliases)."""
    if isinstance(value, list):
        value = dict.fromkeys(value)
    return {
        name: ((spec or {}).get("ipv4_address"), tuple(sorted((spec or {}).get("aliases") or [])))
        for name, spec in value.items()
    }


_SIZE = re.compile(r"([0-9.]+)\s*([kmgt]?)i?b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(value: Any) -> int:
    """1.29 prints a size as written (`1.5G`); v2 in bytes."""
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(str(value).strip())
    assert match, f"unexpected size {value!r}"
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _deploy(value: dict[str, Any]) -> Any:
    resources = value.get("resources") or {}
    sized = {
        kind: {k: _bytes(v) if k == "memory" else _text(v) for k, v in (limits or {}).items()}
        for kind, limits in resources.items()
    }
    return _plain({k: v for k, v in value.items() if k != "resources"}) | {"resources": sized}


_DURATION = re.compile(r"([0-9.]+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _seconds(value: Any) -> float:
    """1.29 prints a duration as written (`90s`); v2 as Go prints it (`1m30s`)."""
    if isinstance(value, int | float):
        return float(value)
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(value))


def _healthcheck(value: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key == "test":
            result[key] = ["CMD-SHELL", item] if isinstance(item, str) else [str(i) for i in item]
        elif key in ("interval", "timeout", "start_period", "start_interval"):
            result[key] = _seconds(item)
        else:
            result[key] = _text(item)
    return result


NORMAL_FORMS: dict[str, Callable[[Any], Any]] = {
    "command": _words,
    "entrypoint": _words,
    "environment": _key_values,
    "labels": _key_values,
    "sysctls": _key_values,
    "ports": _ports,
    "expose": lambda value: {str(port) for port in value},
    "volumes": _volumes,
    "depends_on": _depends_on,
    "networks": _networks,
    "healthcheck": _healthcheck,
    "deploy": _deploy,
}
"""How each key is compared; any other key both tools print is compared as `_plain` values."""


def _normal(key: str, value: Any) -> Any:
    if key == "build":
        # composer keeps `build` for a later release; 1.29 adds defaults of its own: compare
        # where the build happens only.
        context = value if isinstance(value, str) else value.get("context")
        return os.path.normpath(str(context))
    return NORMAL_FORMS.get(key, _plain)(value)


# --- running the two loaders ------------------------------------------------------------------


def _peer_config(path: Path) -> dict[str, Any]:
    """`docker-compose -f FILE config`, run beside the file so that it reads the `.env` there."""
    assert DOCKER_COMPOSE is not None
    result = subprocess.run(
        [DOCKER_COMPOSE, "-f", path.name, "config"],
        cwd=path.parent,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        pytest.skip(f"docker-compose cannot read it: {' '.join(lines[:2]) or result.returncode}")
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def _our_config(path: Path) -> dict[str, Any]:
    stack = load_stack(
        LoadOptions(files=(path,), environ=dict(os.environ), working_directory=path.parent)
    )
    return project_to_dict(stack.project)


def _differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Each key of each service that both print with different normal forms."""
    found = []
    our_services = ours.get("services") or {}
    their_services = theirs.get("services") or {}
    if set(our_services) != set(their_services):
        found.append(f"services: ours {sorted(our_services)}, theirs {sorted(their_services)}")
    for name in sorted(set(our_services) & set(their_services)):
        mine, peer = our_services[name] or {}, their_services[name] or {}
        for key in sorted(set(mine) & set(peer)):
            a, b = _normal(key, mine[key]), _normal(key, peer[key])
            if a != b:
                found.append(f"services.{name}.{key}: ours {a!r}, theirs {b!r}")
    return found


@pytest.mark.parametrize("path", FILES, ids=[p.parent.name for p in FILES])
def test_composer_reads_the_file_as_docker_compose_does(path: Path) -> None:
    theirs = _peer_config(path)
    ours = _our_config(path)
    assert _differences(ours, theirs) == []


def test_the_corpus_is_there() -> None:
    assert len(FILES) == 39, f"expected the 39 awesome-compose files under {CORPUS}"
