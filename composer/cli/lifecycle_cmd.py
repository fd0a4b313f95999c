"""`composer start`, `stop`, `restart`, `kill`, `rm`, `pause` and `unpause`: acting on the
existing containers of a stack's services, with docker compose's flags and messages."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from composer.cli.context import Context
from composer.cli.progress import stack_progress
from composer.cli.target import Target, open_target
from composer.errors import ComposerError, UsageError

if TYPE_CHECKING:
    from composer.lifecycle import Actions

__all__ = ["kill", "pause", "restart", "rm", "start", "stop", "unpause"]

_SERVICES = click.argument("services", nargs=-1, metavar="[SERVICE]...")
_TIMEOUT = click.option(
    "-t", "--timeout", type=int, help="Seconds to wait for a container to stop before killing it."
)


@contextlib.contextmanager
def _acting(ctx: Context, services: tuple[str, ...]) -> Iterator[tuple[Target, Actions]]:
    """The stack and services named, and its actions, their progress shown as `up` shows it."""
    from composer.lifecycle import Actions

    target = open_target(ctx, services)
    with stack_progress("auto") as progress:
        yield target, Actions(target.settings, target.runtime, target.view, progress)


@click.command()
@_SERVICES
@click.pass_obj
def start(ctx: Context, services: tuple[str, ...]) -> None:
    """Start the existing containers of the services (what they depend on first)."""
    with _acting(ctx, services) as (target, actions):
        members = target.members()
        for service in target.services:
            if not any(m.service == service for m in members):
                raise ComposerError(f"service {service!r} has no container to start (run `up`)")
        if not members:
            raise ComposerError(f"no containers to start in {target.view.project} (run `up`)")
        actions.start(members)


@click.command()
@_TIMEOUT
@_SERVICES
@click.pass_obj
def stop(ctx: Context, timeout: int | None, services: tuple[str, ...]) -> None:
    """Stop the running containers of the services (what depends on others first); they
    can be started again."""
    with _acting(ctx, services) as (target, actions):
        actions.stop(target.members(), timeout)


@click.command()
@_TIMEOUT
@_SERVICES
@click.pass_obj
def restart(ctx: Context, timeout: int | None, services: tuple[str, ...]) -> None:
    """Restart the containers of the services (stopped ones are started)."""
    with _acting(ctx, services) as (target, actions):
        actions.restart(target.members(), timeout)


def _signal(text: str) -> int:
    name = text.upper()
    if name.isdigit() and int(name) in {int(s) for s in signal.Signals}:
        return int(name)
    try:
        return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise UsageError(f"--signal {text!r}: no such signal (e.g. SIGTERM, HUP, 9)") from None


@click.command()
@click.option("-s", "--signal", "sig", default="SIGKILL", show_default=True,
              help="Signal to send (a name such as SIGHUP or HUP, or a number).")  # fmt: skip
@_SERVICES
@click.pass_obj
def kill(ctx: Context, sig: str, services: tuple[str, ...]) -> None:
    """Send a signal to the first process of the services' running containers."""
    number = _signal(sig)
    with _acting(ctx, services) as (target, actions):
        killed = actions.kill(target.members(), number)
    if not killed:
        click.echo("no container to kill", err=True)


@click.command()
@_SERVICES
@click.pass_obj
def pause(ctx: Context, services: tuple[str, ...]) -> None:
    """Pause the services' running containers (their processes are frozen)."""
    with _acting(ctx, services) as (target, actions):
        actions.pause(target.members())


@click.command()
@_SERVICES
@click.pass_obj
def unpause(ctx: Context, services: tuple[str, ...]) -> None:
    """Unpause the services' paused containers."""
    with _acting(ctx, services) as (target, actions):
        actions.unpause(target.members())


def _confirmed(question: str) -> bool:
    """The user's yes to `question` (no when stdin is closed)."""
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:
        return False


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("-s", "--stop", "stop_first", is_flag=True, help="Stop the containers first.")
@click.option("-v", "--volumes", is_flag=True, help="Remove their anonymous volumes too.")
@_SERVICES
@click.pass_obj
def rm(
    ctx: Context, force: bool, stop_first: bool, volumes: bool, services: tuple[str, ...]
) -> None:
    """Remove the services' stopped containers (with -s, stop them first). Named volumes
    stay; anonymous ones go with -v."""
    from composer.lifecycle import Actions, removable

    with _acting(ctx, services) as (target, actions):
        if stop_first:
            actions.stop(target.members())
    view = target.view.refresh(target.runtime) if stop_first else target.view
    gone = removable(view.select(target.services))
    if not gone:
        click.echo("No stopped containers", err=True)
        return
    names = ", ".join(m.name for m in gone)
    if not force and not _confirmed(f"Going to remove {names}\n? Are you sure?"):
        return
    with stack_progress("auto") as progress:
        Actions(target.settings, target.runtime, view, progress).remove(gone, volumes)
