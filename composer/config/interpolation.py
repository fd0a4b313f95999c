"""Variable interpolation (`$VAR`, `${VAR:-default}`, ...) with the semantics of docker compose v2.

The rules are those of compose-go's `template` package, including its less obvious corners,
so that a stack file that interpolates one way under `docker compose` does so here too:

* `$$` is a literal `$`; a `$` followed by anything but `$`, `{` or a name start (`$1`, `$-`,
  a trailing `$`) is kept as it is, not an error.
* In `${NAME<op>ARG}` the argument runs to the first `}` that balances the opening brace; when
  the braces on the rest of the line do not balance, it runs to the last `}` on that line. The
  argument cannot span lines.
* The argument (default, alternate value or error message) is interpolated before the
  variable is looked at, so its own unset variables are reported and its own errors raised
  even when it ends up unused.
* Only `$NAME` and `${NAME}` report an unset variable; the operator forms never do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["InterpolationError", "Substitution", "substitute"]

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_BRACE = re.compile(r"[{}]")
_OPERATOR_CHARS = frozenset("-+?")


class InterpolationError(Exception):
    """A template is malformed or a required variable is missing.

    str(e) is a user-facing message (no file/line: the caller adds those).
    """


@dataclass(frozen=True)
class Substitution:
    """The interpolated text, and the unset variables compose would warn about.

    `unset` names the variables that were referenced as `$NAME` or `${NAME}` and had no value
    ('The "X" variable is not set. Defaulting to a blank string.'), in order of first
    appearance, without duplicates.
    """

    value: str
    unset: tuple[str, ...]


class _MalformedError(Exception):
    """Internal: the template has a syntax error; `substitute` names the whole template."""


def substitute(template: str, lookup: Callable[[str], str | None]) -> Substitution:
    """Interpolate `template`, resolving variables with `lookup` (None means unset)."""
    if "$" not in template:
        return Substitution(template, ())
    expander = _Expander(lookup)
    try:
        value = expander.expand(template)
    except _MalformedError:
        raise InterpolationError(
            f"invalid interpolation format for {_quote(template)}: "
            "you may need to escape any $ with another $"
        ) from None
    except RecursionError:
        raise InterpolationError(
            f"invalid interpolation format for {_quote(template)}: nested too deeply"
        ) from None
    return Substitution(value, tuple(expander.unset))


class _Expander:
    """One interpolation run: resolves variables and remembers which ones were unset."""

    __slots__ = ("_lookup", "_seen", "unset")

    def __init__(self, lookup: Callable[[str], str | None]) -> None:
        self._lookup = lookup
        self._seen: set[str] = set()
        self.unset: list[str] = []

    def expand(self, text: str) -> str:
        if "$" not in text:
            return text
        parts: list[str] = []
        pos = 0
        # A `${NAME<op>...}` runs at most to the last `}` of its line: found once per line.
        line_end = -1
        last_close = -1
        while True:
            dollar = text.find("$", pos)
            if dollar < 0:
                parts.append(text[pos:])
                return "".join(parts)
            parts.append(text[pos:dollar])
            following = text[dollar + 1 : dollar + 2]
            if following == "$":
                parts.append("$")
                pos = dollar + 2
            elif following == "{":
                if dollar > line_end:
                    line_end = text.find("\n", dollar)
                    if line_end < 0:
                        line_end = len(text)
                    last_close = text.rfind("}", dollar, line_end)
                value, pos = self._braced(text, dollar, last_close)
                parts.append(value)
            else:
                name = _NAME.match(text, dollar + 1)
                if name is None:
                    # compose leaves `$1`, `$-`, a trailing `$` and the like untouched.
                    parts.append("$")
                    pos = dollar + 1
                else:
                    parts.append(self._plain(name.group()))
                    pos = name.end()

    def _braced(self, text: str, start: int, last_close: int) -> tuple[str, int]:
        """Expand the `${...}` at `start`; return its value and the index just past it.

        `last_close` is the index of the last `}` on the line of `start` (-1 if none).
        """
        name_match = _NAME.match(text, start + 2)
        if name_match is None:
            raise _MalformedError
        name = name_match.group()
        cursor = name_match.end()
        operator = _operator_at(text, cursor)
        if operator is None:
            if text.startswith("}", cursor):
                return self._plain(name), cursor + 1
            raise _MalformedError
        argument_start = cursor + len(operator)
        if last_close < argument_start:
            raise _MalformedError
        close = _balanced_close(text, start, last_close + 1)
        if close < 0:
            close = last_close
        argument = self.expand(text[argument_start:close])
        return self._apply(name, operator, argument), close + 1

    def _apply(self, name: str, operator: str, argument: str) -> str:
        value = self._lookup(name)
        if operator == ":-":
            return value if value else argument
        if operator == "-":
            return argument if value is None else value
        if operator == ":+":
            return argument if value else ""
        if operator == "+":
            return "" if value is None else argument
        if value is None or (operator == ":?" and not value):
            raise InterpolationError(_missing_message(name, argument))
        return value

    def _plain(self, name: str) -> str:
        value = self._lookup(name)
        if value is not None:
            return value
        if name not in self._seen:
            self._seen.add(name)
            self.unset.append(name)
        return ""


def _operator_at(text: str, index: int) -> str | None:
    """The operator (`:-`, `-`, `:+`, `+`, `:?`, `?`) starting at `index`, if any."""
    first = text[index : index + 1]
    if first == ":":
        second = text[index + 1 : index + 2]
        return ":" + second if second in _OPERATOR_CHARS else None
    return first if first in _OPERATOR_CHARS else None


def _balanced_close(text: str, start: int, end: int) -> int:
    """Index of the `}` closing the `${` at `start`, looking no further than `end`; -1 if none.

    Like compose, every `{` opens a level and the character right after it is not examined.
    """
    depth = 0
    skipped = -1
    for brace in _BRACE.finditer(text, start, end):
        at = brace.start()
        if at == skipped:
            continue
        if text[at] == "{":
            depth += 1
            skipped = at + 1
        else:
            depth -= 1
            if depth == 0:
                return at
    return -1


def _missing_message(name: str, reason: str) -> str:
    if reason:
        return f"required variable {name} is missing a value: {reason}"
    return f"required variable {name} is missing a value"


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
