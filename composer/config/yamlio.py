"""Safe YAML 1.2 loading that remembers where every key and value came from.

Compose reads YAML 1.2 core-schema scalars (`no` and `on` are strings, `22:22` is a string, not
a sexagesimal number). We let libyaml compose the node tree, resolve scalars with the 1.2 core
rules, and build plain dicts and lists that carry the location of each entry, so that any later
stage can name the file, line and column of a bad value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import yaml

from composer.errors import Location, StackError

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MarkedMap",
    "MarkedSeq",
    "add_core_schema",
    "load_yaml",
    "locate",
]

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_NODES = 1_000_000

_TAG = "tag:yaml.org,2002:"
_RESET = "!reset"
_OVERRIDE = "!override"
_MERGE_TAGS = (_RESET, _OVERRIDE)


class MarkedMap(dict[str, Any]):
    """A mapping that knows its own location and the location of each of its values."""

    __slots__ = ("key_locations", "location", "locations", "tags")

    def __init__(self, location: Location | None = None) -> None:
        super().__init__()
        self.location = location
        self.locations: dict[str, Location] = {}
        self.key_locations: dict[str, Location] = {}
        self.tags: dict[str, str] = {}

    def put(
        self,
        key: str,
        value: Any,
        location: Location | None,
        tag: str | None = None,
        key_location: Location | None = None,
    ) -> None:
        self[key] = value
        if location is not None:
            self.locations[key] = location
        if tag is not None:
            self.tags[key] = tag
        if key_location is not None:
            self.key_locations[key] = key_location

    def put_from(self, source: MarkedMap, key: str, value: Any) -> None:
        """Set `key` to `value`, keeping the marks `source` has for that key."""
        self.put(
            key,
            value,
            source.locations.get(key),
            source.tags.get(key),
            source.key_locations.get(key),
        )

    def where(self, key: str) -> Location | None:
        return self.locations.get(key, self.location)


class MarkedSeq(list[Any]):
    """A sequence that knows its own location and the location of each item."""

    __slots__ = ("location", "locations")

    def __init__(self, location: Location | None = None) -> None:
        super().__init__()
        self.location = location
        self.locations: list[Location | None] = []

    def push(self, value: Any, location: Location | None) -> None:
        self.append(value)
        self.locations.append(location)

    def where(self, index: int) -> Location | None:
        if 0 <= index < len(self.locations) and self.locations[index] is not None:
            return self.locations[index]
        return self.location


def locate(root: Any, path: tuple[str | int, ...], *, key: bool = False) -> Location | None:
    """The location of the deepest entry of `path` that exists in the marked tree `root`;
    with `key`, of the last key itself rather than of its value (for "unknown key")."""
    found: Location | None = getattr(root, "location", None)
    node = root
    for index, step in enumerate(path):
        if isinstance(node, MarkedMap) and isinstance(step, str) and step in node:
            at_key = node.key_locations.get(step) if key and index == len(path) - 1 else None
            found = at_key or node.where(step) or found
            node = node[step]
        elif isinstance(node, MarkedSeq) and isinstance(step, int) and 0 <= step < len(node):
            found = node.where(step) or found
            node = node[step]
        else:
            break
    return found


# --- scalars: the YAML 1.2 core schema ------------------------------------------------------

_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_LEGACY_OCTAL = re.compile(r"[-+]?0[0-7]+")
_FLOAT = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)


def add_core_schema(cls: type[yaml.resolver.BaseResolver]) -> None:
    """Teach a loader or dumper class the YAML 1.2 core schema's implicit tags (a dumper that
    knows them quotes every string that a 1.2 reader would take for a number or null)."""
    for tag, regex, first in (
        ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
        ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
        ("int", rf"^(?:{_INT.pattern})$", list("-+0123456789")),
        ("float", rf"^(?:{_FLOAT.pattern})$", list("-+.0123456789")),
        ("merge", r"^(?:<<)$", ["<"]),
    ):
        cls.add_implicit_resolver(_TAG + tag, re.compile(regex), first)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser and composer with the YAML 1.2 core schema's implicit tags only."""

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {}


add_core_schema(_Loader)


def _plain_scalar(text: str) -> Any:
    """Resolve an untagged plain scalar by the core schema."""
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT.fullmatch(text):
        return _to_int(text)
    if _FLOAT.fullmatch(text):
        return _to_float(text)
    return text


def _to_int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    if _LEGACY_OCTAL.fullmatch(text):  # as compose's go-yaml reads it: `mode: 0440` is octal
        return int(text, 8)
    return int(text)


def _to_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".nan"):
        return math.nan
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    return float(text)


# --- the tree -------------------------------------------------------------------------------


class _Builder:
    """Turns one document's node graph into marked dicts and lists, refusing alias bombs."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[str] = []

    def where(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        return Location(self.file, mark.line + 1, mark.column + 1)

    def fail(self, node: yaml.Node, message: str) -> StackError:
        return StackError.single(message, location=self.where(node))

    def check_size(self, root: yaml.Node) -> None:
        """Refuse documents whose aliases expand beyond MAX_NODES (the 'billion laughs')."""
        sizes: dict[int, int] = {}
        active: set[int] = set()

        def size(node: yaml.Node) -> int:
            key = id(node)
            if key in sizes:
                return sizes[key]
            if key in active:
                raise self.fail(
                    node, "an alias refers to a node that contains it (recursive alias)"
                )
            active.add(key)
            total = 1
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    total += size(k) + size(v)
                    if total > MAX_NODES:
                        break
            elif isinstance(node, yaml.SequenceNode):
                for v in node.value:
                    total += size(v)
                    if total > MAX_NODES:
                        break
            active.discard(key)
            sizes[key] = total
            if total > MAX_NODES:
                raise self.fail(
                    node,
                    f"the document expands to more than {MAX_NODES:,} nodes through its aliases; "
                    "refusing it (an alias bomb?)",
                )
            return total

        size(root)

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            seq = MarkedSeq(self.where(node))
            for item in node.value:
                seq.push(self.build(item), self.where(item))
            return seq
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node)
        raise self.fail(node, f"unsupported YAML node {type(node).__name__}")

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        text: str = node.value
        if tag in _MERGE_TAGS or tag == "!":
            return _plain_scalar(text) if node.style is None else text
        if not tag.startswith(_TAG):
            raise self.fail(node, f"unsupported YAML tag {tag!r}")
        kind = tag[len(_TAG) :]
        if kind == "str":
            return text
        try:
            if kind == "null":
                return None
            if kind == "bool":
                return text.lower() == "true"
            if kind == "int":
                return _to_int(text)
            if kind == "float":
                return _to_float(text)
        except ValueError:
            raise self.fail(node, f"{text!r} is not a valid {kind}") from None
        if kind == "merge":
            return text
        raise self.fail(node, f"unsupported YAML tag {tag!r}")

    def key(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "a mapping key must be a plain value, not a mapping or a list")
        return str(node.value)

    def mapping(self, node: yaml.MappingNode) -> MarkedMap:
        result = MarkedMap(self.where(node))
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                merged.append(value_node)
                continue
            key = self.key(key_node)
            if key in result:
                raise self.fail(key_node, f"key {key!r} is already defined in this mapping")
            tag = value_node.tag if value_node.tag in _MERGE_TAGS else None
            # a scalar is shown where it is written; a mapping or list where its key is
            where = self.where(value_node if isinstance(value_node, yaml.ScalarNode) else key_node)
            result.put(key, self.build(value_node), where, tag, self.where(key_node))
        for source in merged:
            for item in self.merge_sources(source):
                built = self.mapping(item)
                for key, value in built.items():
                    if key not in result:
                        result.put_from(built, key, value)
        return result

    def merge_sources(self, node: yaml.Node) -> Iterator[yaml.MappingNode]:
        """The mappings a `<<` key merges: one mapping, or a list of them (earlier wins)."""
        if isinstance(node, yaml.MappingNode):
            yield node
        elif isinstance(node, yaml.SequenceNode) and all(
            isinstance(item, yaml.MappingNode) for item in node.value
        ):
            yield from node.value
        else:
            raise self.fail(node, "a '<<' merge key takes a mapping or a list of mappings")


def load_yaml(text: str | bytes, file: str) -> Any:
    """Parse one YAML document into marked dicts/lists; an empty document gives None."""
    if len(text) > MAX_FILE_BYTES:
        raise StackError.single(
            f"the file is {len(text):,} bytes; "
            f"stack files over {MAX_FILE_BYTES:,} bytes are refused",
            location=Location(file, 1, 1),
        )
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
            what = " ".join(part for part in (exc.context, exc.problem) if part)
            raise StackError.single(f"invalid YAML: {what}", location=loc) from None
        except yaml.YAMLError as exc:
            raise StackError.single(f"invalid YAML: {exc}", location=Location(file, 1, 1)) from None
    finally:
        loader.dispose()
    if node is None:
        return None
    builder = _Builder(file)
    if ("*" in text) if isinstance(text, str) else (b"*" in text):  # only aliases can expand
        builder.check_size(node)
    return builder.build(node)
