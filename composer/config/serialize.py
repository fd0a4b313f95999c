"""A Project printed as `docker compose config` prints it, and the per-service config hash."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import yaml
from pydantic import BaseModel

from composer.config.project import Project
from composer.config.yamlio import add_core_schema

__all__ = ["HASH_EXCLUDED", "project_to_dict", "service_hash", "to_json", "to_yaml"]

_SECTIONS = ("services", "networks", "volumes", "configs", "secrets")

HASH_EXCLUDED = frozenset({"build", "depends_on", "profiles", "pull_policy", "scale"})
"""Service keys that do not change what a container is: changing them recreates nothing
(replicas are added or removed, dependencies are the planner's business, as in compose)."""


_KEPT_EMPTY = frozenset({"command", "entrypoint"})
"""An empty command or entrypoint means something (clear the image's): it is printed and hashed."""


def project_to_dict(project: Project) -> dict[str, Any]:
    """The normal form: long syntaxes, maps for lists of KEY=VALUE, sizes in bytes,
    durations as Go prints them, absolute paths, sorted names, no empty or unset keys."""
    dumped = project.model_dump(mode="json", by_alias=True, exclude_none=True)
    result: dict[str, Any] = {"name": project.name}
    for section in _SECTIONS:
        entries = getattr(project, section)
        if entries:
            result[section] = {
                key: _model(entries[key], dumped[section][key]) or None for key in sorted(entries)
            }
    result.update(_plain(project.extensions))
    return result


def _model(model: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        if key not in dumped:
            continue
        value = _value(getattr(model, name), dumped[key])
        if value not in ({}, []) or key in _KEPT_EMPTY:
            out[key] = value
    out = dict(sorted(out.items()))
    out.update(_plain(getattr(model, "extensions", {})))
    return out


def _value(attr: Any, dumped: Any) -> Any:
    if isinstance(attr, BaseModel):
        return _model(attr, dumped)
    if isinstance(attr, dict):
        return {
            k: (_model(v, dumped[k]) or None) if isinstance(v, BaseModel) else _value(v, dumped[k])
            for k, v in attr.items()
        }
    if isinstance(attr, list):
        return [_value(a, d) for a, d in zip(attr, dumped, strict=True)]
    return dumped


def _plain(value: Any) -> Any:
    """Marked YAML containers as plain dicts and lists, for the dumpers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter; strings of several lines as literal blocks, as compose prints them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # a printed stack repeats values rather than anchoring them


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
add_core_schema(_Dumper)  # quote what either YAML 1.1 or 1.2 would read as a number


def _escaped(data: Any) -> Any:
    """Every `$` doubled, as compose prints it, so that printed values load back unchanged."""
    if isinstance(data, str):
        return data.replace("$", "$$")
    if isinstance(data, dict):
        return {k: _escaped(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_escaped(v) for v in data]
    return data


# JSON leaves C1 controls and non-characters raw; YAML readers refuse them or read U+0085 as a
# line break.
_UNPRINTABLE = re.compile("[\x7f-\x9f\ufffe\uffff]")


def to_yaml(data: dict[str, Any]) -> str:
    """The normal form as YAML that loads back to the same stack."""
    return yaml.dump(
        _escaped(data),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1000,
    )


def to_json(data: Any) -> str:
    """The normal form as JSON (which is YAML too) that loads back to the same stack."""
    text = json.dumps(_escaped(data), indent=2, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def service_hash(project: Project, service: str, normal: dict[str, Any] | None = None) -> str:
    """A stable digest of what makes `service`'s containers what they are; equal stacks give
    equal hashes on any machine, and a change to any key outside HASH_EXCLUDED changes it.
    `normal`: project_to_dict(project), when the caller has it already."""
    config = (normal or project_to_dict(project))["services"][service] or {}
    relevant = {
        k: v for k, v in config.items() if k not in HASH_EXCLUDED and not k.startswith("x-")
    }
    deploy = relevant.get("deploy")
    if isinstance(deploy, dict) and "replicas" in deploy:
        relevant["deploy"] = {k: v for k, v in deploy.items() if k != "replicas"}
        if not relevant["deploy"]:
            del relevant["deploy"]  # replicas alone: as if deploy were not there
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
