"""Env files (`.env`, `env_file:`) parsed with the rules of docker compose v2's dotenv parser.

The grammar is compose-go's `dotenv` package, including its less obvious corners:

* A statement is `KEY=VALUE` or `KEY: VALUE`, optionally prefixed by `export `; the key ends at
  the first `=`, `:` or newline. A key may hold letters, digits, `_`, `.`, `-`, `[` and `]`;
  other blanks (tabs, for instance) are tolerated inside it, but not a space.
* A bare `KEY` takes its value from the lookup and is left out when the lookup has none.
* An unquoted value runs to the end of the line, stops at ` #` (a space then `#`; a tab then
  `#` does not start a comment, and neither does a `#` right after the `=`) and is trimmed.
* A single-quoted value is literal, except that `\\'` stands for `'`. A double-quoted value
  understands `\\"`, `\\\\`, `\\a \\b \\f \\n \\r \\t \\v`, `\\$` and octal `\\0ddd`; any
  other backslash is kept. Quoted values may span lines, and whatever follows the closing
  quote on its line is read as the next statement.
* Unquoted and double-quoted values are interpolated; a variable resolves from the lookup
  first, then from the keys the file defined before it.

Where compose misreads a file, this parser does not copy the mistake: a bare `KEY` on the last
line with no newline after it is a bare key (compose stores it as the value of an empty key),
an unterminated quote is reported at the line where it opens (compose names the last line of
the file), and line numbers stay right after a bare `KEY` followed by blanks (compose's count
falls one behind there).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable

from composer.config.interpolation import InterpolationError, substitute

__all__ = ["DotenvError", "parse_dotenv"]

# compose-go's isSpace: blanks that are not line breaks.
_BLANK = "\t\v\f\r \x85\xa0"
_BLANKS = re.compile(f"[{_BLANK}]*")
# Go's unicode.IsSpace (not Python's str.isspace, which also takes \x1c-\x1f).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(chr(code) for code in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
_SPACES = re.compile(f"[{re.escape(_GO_SPACE)}]*")
# `export` is a prefix only when Go's `\s` (ASCII, without \v) follows it.
_EXPORT = re.compile(r"export[\t\n\f\r ]")
_KEY_CHARS = re.compile(f"[A-Za-z0-9_.\\-\\[\\]{_BLANK}]*")
_ESCAPE = re.compile(r'\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})')
_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
    # `\$` becomes `$$` so that interpolation yields a literal `$`.
    "$": "$$",
}
_QUOTE_OR_BACKSLASH = {'"': re.compile(r'["\\]'), "'": re.compile(r"['\\]")}


class DotenvError(Exception):
    """An env file is malformed; `line` counts from 1, `message` says what is wrong."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"line {line}: {message}")
        self.message = message
        self.line = line


def parse_dotenv(text: str, lookup: Callable[[str], str | None]) -> dict[str, str]:
    """Parse an env file's text into its variables, in file order.

    `lookup` resolves bare `KEY` lines and the variables that values interpolate (it wins
    over the file's own earlier definitions, as in compose); None means unset.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    out: dict[str, str] = {}
    pos = 0
    while True:
        start = _statement_start(text, pos)
        if start < 0:
            return out
        pos = _statement(text, start, lookup, out)


def _statement_start(text: str, pos: int) -> int:
    """Index of the next statement at or after `pos`, skipping blanks and comments; -1 at EOF."""
    while True:
        pos = _skip(_SPACES, text, pos)
        if pos >= len(text):
            return -1
        if text[pos] != "#":
            return pos
        pos = text.find("\n", pos)
        if pos < 0:
            return -1


def _statement(
    text: str, start: int, lookup: Callable[[str], str | None], out: dict[str, str]
) -> int:
    """Parse the statement at `start` into `out`; return the index where the next one may start."""
    key_start = start
    if _EXPORT.match(text, start):
        key_start = _skip(_BLANKS, text, start + len("export"))
        if key_start >= len(text):
            raise DotenvError("no variable name after export", _line_of(text, start))
    key_end = _key_end(text, key_start, start)
    key = text[key_start:key_end].rstrip(_GO_SPACE)
    if " " in key:
        raise DotenvError(f"key cannot contain a space: {_quote(key)}", _line_of(text, start))
    if key_end >= len(text) or text[key_end] == "\n":
        value = lookup(key)
        if value is not None:
            out[key] = value
        return min(key_end + 1, len(text))

    value_start = _skip(_BLANKS, text, key_end + 1)
    quote = text[value_start : value_start + 1]
    if quote in ('"', "'"):
        raw, after = _quoted(text, value_start, start)
        if quote == "'":
            out[key] = raw
            return after
        out[key] = _interpolate(_ESCAPE.sub(_unescape, raw), lookup, out, text, start)
        return after

    line_end = text.find("\n", value_start)
    if line_end < 0:
        line_end = len(text)
    raw = text[value_start:line_end]
    comment = raw.find(" #")
    if comment >= 0:
        raw = raw[:comment]
    raw = raw.rstrip(_GO_SPACE)
    out[key] = _interpolate(raw, lookup, out, text, start)
    return min(line_end + 1, len(text))


def _key_end(text: str, pos: int, statement: int) -> int:
    """Index of the `=`, `:` or newline ending the key at `pos` (len(text) at EOF)."""
    size = len(text)
    while True:
        pos = _skip(_KEY_CHARS, text, pos)
        if pos >= size:
            return pos
        char = text[pos]
        if char in "=:\n":
            return pos
        if unicodedata.category(char)[0] not in "LN":
            first_line = text[statement:].split("\n", 1)[0]
            raise DotenvError(
                f"unexpected character {_quote(char)} in variable name {_quote(first_line)}",
                _line_of(text, statement),
            )
        pos += 1


def _quoted(text: str, opening: int, statement: int) -> tuple[str, int]:
    """The raw content of the quoted value opening at `opening`, and the index past its end.

    A backslash before the quote character stands for the quote; any other backslash is kept
    along with the character after it.
    """
    quote = text[opening]
    stops = _QUOTE_OR_BACKSLASH[quote]
    chunks: list[str] = []
    pos = opening + 1
    while True:
        stop = stops.search(text, pos)
        if stop is None or (text[stop.start()] == "\\" and stop.start() + 1 >= len(text)):
            break
        at = stop.start()
        chunks.append(text[pos:at])
        if text[at] == quote:
            return "".join(chunks), at + 1
        escaped = text[at + 1]
        chunks.append(escaped if escaped == quote else "\\" + escaped)
        pos = at + 2
    shown = text[opening:].split("\n", 1)[0]
    raise DotenvError(f"unterminated quoted value {shown}", _line_of(text, opening))


def _unescape(match: re.Match[str]) -> str:
    sequence = match.group()
    body = sequence[1:]
    if body[0] == "0":
        digits = body[1:]
        # `\0ddd` is the octal escape `\ddd`; anything shorter or out of range stays as written.
        if len(digits) == 3 and all(d in "01234567" for d in digits):
            code = int(digits, 8)
            if code <= 0xFF:
                return chr(code)
        return sequence
    # `\c` matches compose's pattern but is no escape, so it stays as written.
    return _ESCAPES.get(body, sequence)


def _interpolate(
    raw: str,
    lookup: Callable[[str], str | None],
    defined: dict[str, str],
    text: str,
    statement: int,
) -> str:
    def resolve(name: str) -> str | None:
        value = lookup(name)
        return defined.get(name) if value is None else value

    try:
        return substitute(raw, resolve).value
    except InterpolationError as error:
        raise DotenvError(str(error), _line_of(text, statement)) from None


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Index just past the run of `pattern` (which matches the empty string) at `pos`."""
    match = pattern.match(text, pos)
    return pos if match is None else match.end()


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
