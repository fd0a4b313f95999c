"""The errors composer raises: each carries what a user needs to act on it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "ComposerError",
    "Location",
    "Problem",
    "StackError",
    "UsageError",
    "format_key_path",
]


class ComposerError(Exception):
    """Base of every error composer reports to its user; the CLI prints it without a traceback."""

    exit_code = 1


class UsageError(ComposerError):
    """The command line itself is wrong (a flag, a missing file)."""

    exit_code = 2


class Location(NamedTuple):
    """A place in a stack file; line and column count from 1 (a tuple: thousands are made
    per file, and a tuple is made several times faster than a frozen dataclass)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in a stack: where, which key, what, and a hint."""

    message: str
    path: str = ""
    location: Location | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{self.path}: " if self.path else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{key}{self.message}{hint}"


class StackError(ComposerError):
    """A stack is invalid; holds every problem found, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: Sequence[Problem] = sorted(problems, key=_problem_order)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(
        cls, message: str, path: str = "", location: Location | None = None, hint: str | None = None
    ) -> StackError:
        return cls([Problem(message, path, location, hint)])


def _problem_order(problem: Problem) -> tuple[int, str, int, int, str]:
    loc = problem.location
    if loc is None:
        return (1, "", 0, 0, problem.path)
    return (0, loc.file, loc.line, loc.column, problem.path)


def format_key_path(path: Sequence[str | int]) -> str:
    """`("services", "web", "ports", 1)` → `services.web.ports[1]`; odd keys are quoted."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif step and step.replace("_", "").replace("-", "").isalnum():
            text += f".{step}" if text else step
        else:
            text += f"[{step!r}]"
    return text
