"""What every verb shares: the global options, and how warnings are shown."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from composer.errors import Problem

if TYPE_CHECKING:
    from composer.config.loader import LoadOptions

__all__ = ["Context", "warn"]


@dataclass(frozen=True)
class Context:
    """The global options, shared by every verb."""

    files: tuple[Path, ...]
    project_name: str | None
    project_directory: Path | None
    env_files: tuple[Path, ...]
    profiles: tuple[str, ...]
    debug: bool

    def with_stack_file(self, stack_file: str | None) -> Context:
        """A stack file given as a verb's first argument works like -f."""
        if stack_file is None:
            return self
        return replace(self, files=(*self.files, Path(stack_file)))

    def load_options(self, profiles: tuple[str, ...] | None = None) -> LoadOptions:
        from composer.config.loader import LoadOptions

        return LoadOptions(
            files=self.files,
            project_name=self.project_name,
            project_directory=self.project_directory,
            env_files=self.env_files,
            profiles=self.profiles if profiles is None else profiles,
        )


def warn(problem: Problem) -> None:
    click.echo(f"warning: {problem}", err=True)
