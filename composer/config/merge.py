"""Compose's merge rules: how a later file (or an extending service) changes an earlier one.

Mappings merge key by key; most sequences are appended without duplicates; commands are
replaced; environment-like lists merge as maps; mounts, secrets and configs merge by target.
`!reset` removes a value, `!override` replaces it whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from composer.config.yamlio import MarkedMap, MarkedSeq

__all__ = ["key_value_map", "merge", "merge_services"]

Path = tuple[str, ...]


def merge(base: Any, override: Any, path: Path = ()) -> Any:
    """The value of `override` laid over `base` at key path `path`."""
    rule = _RULES.get(_shape(path))
    if rule is not None:
        return rule(base, override, path)
    if isinstance(base, dict) and isinstance(override, dict):
        return _merge_maps(base, override, path)
    if isinstance(base, list) and isinstance(override, list):
        return _append_unique(base, override, path)
    return override


def merge_services(base: MarkedMap, override: MarkedMap) -> MarkedMap:
    """One service definition laid over another (used by `extends`)."""
    result = merge(base, override, ("services", "*"))
    assert isinstance(result, MarkedMap)
    return result


def _shape(path: Path) -> Path:
    """`services.web.x` and `services.db.x` follow the same rule: name the service `*`."""
    if len(path) >= 2 and path[0] == "services":
        return ("services", "*", *path[2:])
    return path


def _copy(source: dict[str, Any]) -> MarkedMap:
    if isinstance(source, MarkedMap):
        result = MarkedMap(source.location)
        for key, value in source.items():
            result.put_from(source, key, value)
        return result
    result = MarkedMap()
    result.update(source)
    return result


def _merge_maps(base: dict[str, Any], override: dict[str, Any], path: Path) -> MarkedMap:
    result = _copy(base)
    marks = override if isinstance(override, MarkedMap) else MarkedMap()
    for key, value in override.items():
        where, key_where = marks.where(key), marks.key_locations.get(key)
        tag = marks.tags.get(key)
        if tag == "!reset":
            result.pop(key, None)
            result.tags.pop(key, None)
        elif tag == "!override" or key not in result or result[key] is None:
            result.put(key, value, where, key_location=key_where)
        else:
            merged = merge(result[key], value, (*path, key))
            result.put(key, merged, where, key_location=key_where)
    return result


def _items_of(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, MarkedSeq):
        return [(item, value.where(i)) for i, item in enumerate(value)]
    if isinstance(value, list):
        return [(item, None) for item in value]
    return [(value, None)]


def _append_by(key: Callable[[Any], Any]) -> Callable[[Any, Any, Path], Any]:
    """Append the override's items; an item with the same key as an earlier one replaces it."""

    def rule(base: Any, override: Any, path: Path) -> Any:
        if not isinstance(base, list) or not isinstance(override, list):
            return override
        merged: dict[Any, tuple[Any, Any]] = {}
        for item, where in _items_of(base) + _items_of(override):
            merged[_hashable(key(item))] = (item, where)
        result = MarkedSeq(getattr(base, "location", None))
        for item, where in merged.values():
            result.push(item, where)
        return result

    return rule


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


_append_unique = _append_by(lambda item: item)


def key_value_map(value: Any) -> Any:
    """A `KEY=VALUE` list as a marked map (a bare KEY maps to None); maps pass through."""
    if not isinstance(value, list):
        return value
    result = MarkedMap(getattr(value, "location", None))
    for item, where in _items_of(value):
        key, found, val = str(item).partition("=")
        result.put(key.strip(), val if found else None, where)
    return result


def _names_as_map(value: Any) -> Any:
    """`[a, b]` (depends_on, networks) as `{a: null, b: null}`."""
    if not isinstance(value, list):
        return value
    result = MarkedMap(getattr(value, "location", None))
    for item, where in _items_of(value):
        result.put(str(item), None, where)
    return result


def _as_map_merge(convert: Callable[[Any], Any]) -> Callable[[Any, Any, Path], Any]:
    def rule(base: Any, override: Any, path: Path) -> Any:
        base, override = convert(base), convert(override)
        if isinstance(base, dict) and isinstance(override, dict):
            return _merge_maps(base, override, path)
        return override

    return rule


def _replace(base: Any, override: Any, path: Path) -> Any:
    return override


def _replace_entries(base: Any, override: Any, path: Path) -> Any:
    """Maps whose entries are replaced whole, not merged (ulimits)."""
    if isinstance(base, dict) and isinstance(override, dict):
        result = _copy(base)
        for key, value in override.items():
            where = override.where(key) if isinstance(override, MarkedMap) else None
            result.put(key, value, where)
        return result
    return override


def _logging(base: Any, override: Any, path: Path) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        if base.get("driver") not in (None, override.get("driver", base.get("driver"))):
            return override
        return _merge_maps(base, override, path)
    return override


def _mount_target(item: Any) -> Any:
    if isinstance(item, str):
        parts = item.split(":")
        return parts[1] if len(parts) > 1 else parts[0]
    if isinstance(item, dict):
        return item.get("target", _hashable(item))
    return item


def _file_reference(item: Any) -> Any:
    if isinstance(item, dict):
        return item.get("target") or item.get("source")
    return item


def _extra_hosts(value: Any) -> Any:
    if isinstance(value, dict):
        seq = MarkedSeq(getattr(value, "location", None))
        for host, address in value.items():
            for one in address if isinstance(address, list) else [address]:
                seq.push(
                    f"{host}={one}", value.where(host) if isinstance(value, MarkedMap) else None
                )
        return seq
    return value


def _merge_extra_hosts(base: Any, override: Any, path: Path) -> Any:
    return _append_unique(_extra_hosts(base), _extra_hosts(override), path)


_map_rule = _as_map_merge(key_value_map)
_RULES: dict[Path, Callable[[Any, Any, Path], Any]] = {
    ("services", "*", "command"): _replace,
    ("services", "*", "entrypoint"): _replace,
    ("services", "*", "healthcheck", "test"): _replace,
    ("services", "*", "environment"): _map_rule,
    ("services", "*", "labels"): _map_rule,
    ("services", "*", "annotations"): _map_rule,
    ("services", "*", "sysctls"): _map_rule,
    ("services", "*", "build", "args"): _map_rule,
    ("services", "*", "build", "labels"): _map_rule,
    ("services", "*", "build", "additional_contexts"): _map_rule,
    ("services", "*", "deploy", "labels"): _map_rule,
    ("services", "*", "depends_on"): _as_map_merge(_names_as_map),
    ("services", "*", "networks"): _as_map_merge(_names_as_map),
    ("services", "*", "ulimits"): _replace_entries,
    ("services", "*", "logging"): _logging,
    ("services", "*", "volumes"): _append_by(_mount_target),
    ("services", "*", "secrets"): _append_by(_file_reference),
    ("services", "*", "configs"): _append_by(_file_reference),
    ("services", "*", "extra_hosts"): _merge_extra_hosts,
}
