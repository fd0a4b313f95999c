"""Variables a stack sees: `.env` and env files, and interpolation of a whole file's values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from composer.config.dotenv import DotenvError, parse_dotenv
from composer.config.interpolation import InterpolationError, substitute
from composer.config.yamlio import MarkedMap, MarkedSeq
from composer.errors import Location, Problem, StackError, format_key_path

__all__ = ["Interpolator", "read_env_file"]

Lookup = Callable[[str], str | None]


def read_env_file(
    path: Path, lookup: Lookup, *, referrer: Location | None = None
) -> dict[str, str]:
    """The variables of an env file; a malformed line is an error naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StackError.single(f"env file {path} does not exist", location=referrer) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StackError.single(f"cannot read env file {path}: {exc}", location=referrer) from None
    try:
        return parse_dotenv(text, lookup)
    except DotenvError as exc:
        raise StackError.single(exc.message, location=Location(str(path), exc.line, 1)) from None


class Interpolator:
    """Substitutes `${VAR}` in every string value of a file, collecting errors and unset names."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.variables = variables
        self.problems: list[Problem] = []
        self.unset: dict[str, Location | None] = {}

    def __call__(self, tree: Any) -> Any:
        self._walk(tree, ())
        return tree

    def _walk(self, node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, MarkedMap):
            for key, value in node.items():
                if isinstance(value, str):
                    node[key] = self._one(value, (*path, key), node.where(key))
                elif isinstance(value, dict | list):
                    self._walk(value, (*path, key))
        elif isinstance(node, MarkedSeq):
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = self._one(value, (*path, index), node.where(index))
                elif isinstance(value, dict | list):
                    self._walk(value, (*path, index))

    def _one(self, text: str, path: tuple[str | int, ...], where: Location | None) -> str:
        if "$" not in text:
            return text
        try:
            result = substitute(text, self.variables.get)
        except InterpolationError as exc:
            self.problems.append(Problem(str(exc), format_key_path(path), where))
            return text
        for name in result.unset:
            self.unset.setdefault(name, where)
        return result.value
