"""Which stack a verb acts on, and which of its services: the global options (-f, -p …), a
stack file given as the first argument (it works like -f), then service names. With `-p`
alone and no stack file around, the stack is found by its containers' labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from composer.cli.context import Context, warn
from composer.errors import UsageError
from composer.settings import Settings
from composer.stackview import Member, StackView, open_runtime, open_view

if TYPE_CHECKING:
    from engine.container.runtime import Runtime

__all__ = ["Target", "open_target"]


@dataclass(frozen=True)
class Target:
    """A stack on this host and the services a verb was given (none: all of them)."""

    settings: Settings
    runtime: Runtime
    view: StackView
    services: tuple[str, ...]

    def members(self) -> list[Member]:
        """The containers of the services given, in start order."""
        return self.view.select(self.services)


def open_target(ctx: Context, args: tuple[str, ...] = ()) -> Target:
    """The stack the options name, and the services in `args` (after an optional stack
    file)."""
    from composer.cli.up_cmd import split_stack_file
    from composer.config.loader import load_stack

    given, services = split_stack_file(ctx, args)
    by_name_only = ctx.project_name is not None and not given.files
    try:
        stack = load_stack(given.load_options())
    except UsageError:
        if not by_name_only:
            raise
        stack = None  # no stack file here: the project's containers say what it has
    if stack is not None:
        for problem in stack.warnings:
            warn(problem)
    project = stack.project.name if stack is not None else str(ctx.project_name)
    settings = Settings.load()
    runtime = open_runtime(settings)
    return Target(settings, runtime, open_view(settings, runtime, project, stack), services)
