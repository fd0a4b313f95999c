"""Value syntaxes of the compose format: durations, byte sizes, ports, volume strings, lists.

Each parser takes what a user may write and returns the one normal form docker compose prints;
each raises ValueError with a message that says what was expected.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

__all__ = [
    "PROJECT_NAME",
    "format_duration",
    "list_or_dict",
    "parse_bytes",
    "parse_duration",
    "parse_port",
    "parse_volume",
    "shell_words",
    "to_str",
]

PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")  # what a project (stack) may be called

# --- durations (Go's time.ParseDuration, which compose uses) -------------------------------

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: Any) -> float:
    """Seconds from a Go duration (`1m30s`, `500ms`, `1.5h`); a bare number counts seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '1m30s', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '1m30s', got {value!r}")
    text = value.strip()
    if text in ("0", ""):
        if text == "":
            raise ValueError("expected a duration like '1m30s', got an empty string")
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration: write a number with a unit "
                "(ns, us, ms, s, m, h), e.g. '1m30s' or '500ms'"
            )
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Go's time.Duration.String(): `1m30s`, `1h0m0s`, `500ms`, `1.5s`, `0s`."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    if nanos < 1_000:
        return f"{nanos}ns"
    if nanos < 1_000_000:
        return f"{_trim(nanos / 1_000)}µs"
    if nanos < 1_000_000_000:
        return f"{_trim(nanos / 1_000_000)}ms"
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    secs = _trim(rest / 1e9) + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs


def _trim(number: float) -> str:
    return f"{number:.9f}".rstrip("0").rstrip(".")


# --- byte sizes (docker's RAMInBytes: binary units) ------------------------------------------

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(value: Any) -> int:
    """Bytes from a size (`512m`, `1g`, `1.5GB`, `64k`, 1024); units are powers of 1024."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '512m', got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    raise ValueError(
        f"{value!r} is not a size: write a number of bytes or a number with a unit "
        "(b, k, m, g, t), e.g. '512m'"
    )


# --- plain shapes -----------------------------------------------------------------------------


def to_str(value: Any) -> str:
    """A scalar as compose prints it: booleans lower-case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"expected a string, number or boolean, got a {type(value).__name__}")


def shell_words(value: Any) -> Any:
    """A command given as one string becomes its words, split as a POSIX shell would."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split {value!r} into words: {exc}") from None
    return value


def list_or_dict(value: Any, sep: str = "=", *, allow_null: bool = True) -> Any:
    """`["K=V", "K2"]` or `{K: V}` → `{K: "V"}`; a key without a value maps to None."""
    if isinstance(value, Mapping):
        return {
            str(k): (None if v is None and allow_null else to_str("" if v is None else v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        result: dict[str, str | None] = {}
        for item in value:
            if not isinstance(item, str | int | float) or isinstance(item, bool):
                raise ValueError(f"expected 'KEY{sep}VALUE' strings, got {item!r}")
            key, found, val = str(item).partition(sep)
            key = key.strip()
            if not key:
                raise ValueError(f"{item!r} has no key before '{sep}'")
            result[key] = val if found else (None if allow_null else "")
        return result
    return value


# --- ports ------------------------------------------------------------------------------------

_PORT = re.compile(
    r"^(?:(?:\[?(?P<ip>[0-9a-fA-F.:]*?)\]?:)??(?P<published>[0-9]+(?:-[0-9]+)?)?:)?"
    r"(?P<target>[0-9]+(?:-[0-9]+)?)(?:/(?P<protocol>[a-zA-Z]+))?$"
)


def _port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    start, end = int(low), int(high or low)
    if not 0 <= start <= 65535 or not 0 <= end <= 65535:
        raise ValueError(f"port {text!r} is out of range 0-65535")
    if end < start:
        raise ValueError(f"port range {text!r} ends before it starts")
    return start, end


def parse_port(value: Any) -> list[dict[str, Any]]:
    """Short port syntax (`[HOST_IP:][HOST[-HOST]:]CONTAINER[-CONTAINER][/PROTO]`) → long form.

    A range publishes one entry per port, as compose does.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a port like '8080:80', got {value!r}")
    text = str(value).strip()
    match = _PORT.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a port mapping: "
            "expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"
        )
    t_start, t_end = _port_range(match.group("target"))
    protocol = (match.group("protocol") or "tcp").lower()
    if protocol not in ("tcp", "udp", "sctp"):
        raise ValueError(f"{text!r}: unknown protocol {protocol!r} (expected tcp, udp or sctp)")
    host_ip = match.group("ip") or None
    published = match.group("published")
    count = t_end - t_start + 1
    hosts: list[str | None] = [None] * count
    if published:
        p_start, p_end = _port_range(published)
        if p_end - p_start + 1 == count:
            hosts = [str(p_start + i) for i in range(count)]
        elif count == 1:
            hosts = [published if p_start != p_end else str(p_start)]
        else:
            raise ValueError(
                f"{text!r}: the host range has {p_end - p_start + 1} ports "
                f"and the container range {count}"
            )
    entries = []
    for i in range(count):
        entry: dict[str, Any] = {"mode": "ingress", "target": t_start + i, "protocol": protocol}
        if hosts[i] is not None:
            entry["published"] = hosts[i]
        if host_ip:
            entry["host_ip"] = host_ip
        entries.append(entry)
    return entries


# --- volumes ----------------------------------------------------------------------------------

_PROPAGATION = {"shared", "rshared", "slave", "rslave", "private", "rprivate"}


def _is_path(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or (len(source) > 1 and source[1] == ":")


def parse_volume(value: Any) -> dict[str, Any]:
    """Short volume syntax (`[SOURCE:]TARGET[:MODE]`) → the long form compose prints."""
    if not isinstance(value, str):
        raise ValueError(f"expected a volume like 'data:/var/lib/data', got {value!r}")
    parts = value.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise ValueError(f"{value!r} is not a volume: expected [SOURCE:]TARGET[:MODE]")
    source, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    entry: dict[str, Any] = {"source": source, "target": target}
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    if _is_path(source):
        entry["type"] = "bind"
        bind["create_host_path"] = True
    else:
        entry["type"] = "volume"
    for mode in modes:
        if mode == "ro":
            entry["read_only"] = True
        elif mode == "rw":
            pass
        elif mode in ("z", "Z"):
            bind["selinux"] = mode
        elif mode in _PROPAGATION:
            bind["propagation"] = mode
        elif mode == "nocopy":
            volume["nocopy"] = True
        else:
            raise ValueError(
                f"{value!r}: unknown mode {mode!r} (expected ro, rw, z, Z, nocopy "
                "or a propagation: shared, slave, private, rshared, rslave, rprivate)"
            )
    if bind and entry["type"] == "bind":
        entry["bind"] = bind
    elif bind:
        raise ValueError(f"{value!r}: {', '.join(bind)} only applies to a bind mount")
    if volume:
        entry["volume"] = volume
    return entry
