"""`composer logs`: the output of a stack's containers as docker compose shows it — each line
after a `service-1  | ` prefix (coloured per service on a terminal), what a container wrote to
stderr on stderr; with -f, new lines as they come until the containers are gone or Ctrl-C."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import click

from composer.cli.context import Context
from composer.cli.humanize import parse_time, timestamp
from composer.cli.target import Target, open_target
from composer.errors import UsageError
from composer.stackview import ACTIVE, Member

if TYPE_CHECKING:
    from engine.container.logs import LogLine, LogReader

__all__ = ["LogPrinter", "LogReaders", "logs"]

# docker compose's colours for prefixes, in the order it hands them out.
_COLOURS: Final = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91)
_POLL: Final = 0.2  # seconds between reads when following
_GRACE: Final = 1.0  # how long nothing may run before following ends (a restart is no end)


@dataclass(frozen=True)
class _Filter:
    """Which lines to show: those within [since, until], the last `tail` of each container."""

    since: float | None
    until: float | None
    tail: int | None

    def __call__(self, lines: list[LogLine], history: bool = False) -> list[LogLine]:
        kept = [line for line in lines if self._within(line.time)]
        if history and self.tail is not None:
            kept = kept[-self.tail :] if self.tail else []
        return kept

    def _within(self, when: str) -> bool:
        if self.since is None and self.until is None:
            return True
        seconds = timestamp(when)
        return (self.since is None or seconds >= self.since) and (
            self.until is None or seconds <= self.until
        )


class LogPrinter:
    """Writes lines with their container's prefix (and colour, and time)."""

    def __init__(self, members: list[Member], project: str, prefix: bool, colour: bool,
                 timestamps: bool) -> None:  # fmt: skip
        self.project, self.prefix, self.colour = project, prefix, colour
        self.timestamps = timestamps
        self.width = 0
        self.colours: dict[str, int] = {}
        for member in members:
            self.add(member)

    def label(self, member: Member) -> str:
        """The container's name without its project, as docker compose shows it (a
        `container_name` of its own is shown whole)."""
        default = f"{self.project}-{member.service}-{member.number}"
        return member.name[len(self.project) + 1 :] if member.name == default else member.name

    def add(self, member: Member) -> None:
        self.width = max(self.width, len(self.label(member)) + 1)
        if member.service not in self.colours:
            self.colours[member.service] = _COLOURS[len(self.colours) % len(_COLOURS)]

    def write(self, member: Member, line: LogLine) -> None:
        text = line.text if line.text.endswith("\n") else line.text + "\n"
        if self.timestamps:
            text = f"{line.time} {text}"
        if self.prefix:
            head = f"{self.label(member):<{self.width}} | "
            if self.colour:
                head = f"\033[{self.colours[member.service]}m{head}\033[0m"
            text = head + text
        click.echo(text, nl=False, err=line.stream == "stderr")


def _tail(text: str) -> int | None:
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        raise UsageError(f"--tail {text!r}: expected a number of lines or 'all'") from None
    return None if count < 0 else count


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow the output as it comes.")
@click.option("-n", "--tail", default="all", show_default=True,
              help="Lines to show from the end of each container's log.")  # fmt: skip
@click.option("-t", "--timestamps", is_flag=True, help="Show the time of each line.")
@click.option("--since", help="Lines since this time (2013-01-02T13:23:37Z) or for so long (42m).")
@click.option("--until", help="Lines before this time (2013-01-02T13:23:37Z) or so long ago (42m).")
@click.option("--no-log-prefix", is_flag=True, help="Do not print the container's name first.")
@click.option("--no-color", is_flag=True, help="Monochrome output.")
@click.option("--index", type=int, help="Only this replica of the service.")
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@click.pass_obj
def logs(
    ctx: Context,
    follow: bool,
    tail: str,
    timestamps: bool,
    since: str | None,
    until: str | None,
    no_log_prefix: bool,
    no_color: bool,
    index: int | None,
    services: tuple[str, ...],
) -> None:
    """Show the output of the services' containers."""
    selected = _Filter(parse_time(since, "--since") if since else None,
                       parse_time(until, "--until") if until else None, _tail(tail))  # fmt: skip
    target = open_target(ctx, services)
    members = _chosen(target, index)
    colour = not no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    printer = LogPrinter(members, target.view.project, not no_log_prefix, colour, timestamps)
    readers = LogReaders()
    try:
        history = []
        for member in members:
            lines = selected(readers.read(member), history=True)
            history += [(line, member) for line in lines]
        for line, member in sorted(history, key=lambda pair: timestamp(pair[0].time)):
            printer.write(member, line)
        if follow:
            for member, line in _followed(target, index, readers, selected):
                printer.add(member)
                printer.write(member, line)
    finally:
        readers.close()


def _chosen(target: Target, index: int | None) -> list[Member]:
    return [m for m in target.members() if index is None or m.number == index]


class LogReaders:
    """A log reader per container, made when first read."""

    def __init__(self) -> None:
        self._readers: dict[str, LogReader] = {}

    def read(self, member: Member, final: bool = False) -> list[LogLine]:
        from engine.container.logs import LogReader

        if member.name not in self._readers:
            keep = max(member.config.log_max_files - 1, 1)
            self._readers[member.name] = LogReader(member.container.directory, keep)
        return self._readers[member.name].read(final)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()


def _followed(
    target: Target, index: int | None, readers: LogReaders, selected: _Filter
) -> Iterator[tuple[Member, LogLine]]:
    """New lines of the services' containers (new containers too), until none has run for a
    moment, or the --until time has passed."""
    quiet_since: float | None = None
    while selected.until is None or time.time() <= selected.until:
        time.sleep(_POLL)
        view = target.view.refresh(target.runtime)
        members = [m for m in view.select(target.services) if index is None or m.number == index]
        for member in members:
            ended = member.state.status not in ACTIVE
            for line in selected(readers.read(member, final=ended)):
                yield member, line
        if any(m.state.status in ACTIVE for m in members):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > _GRACE:
            return
