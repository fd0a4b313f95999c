"""`composer up` and `composer down`: converge a stack to its file, and take it away."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from composer.cli.context import Context, warn
from composer.errors import ComposerError, UsageError

if TYPE_CHECKING:
    from composer.settings import Settings

__all__ = ["down", "up"]

_STACK_SUFFIXES = (".yaml", ".yml", ".json")


def waiting() -> None:
    click.echo("waiting: another composer command, or the stack's reconciler, is acting on "
               "this stack", err=True)  # fmt: skip


def split_stack_file(ctx: Context, args: tuple[str, ...]) -> tuple[Context, tuple[str, ...]]:
    """`composer up stack.yaml web`: a first argument that is a stack file works like -f; the
    rest are services."""
    if args and (args[0].endswith(_STACK_SUFFIXES) or Path(args[0]).is_file()):
        return ctx.with_stack_file(args[0]), args[1:]
    return ctx, args


def _scale(values: tuple[str, ...]) -> dict[str, int]:
    result = {}
    for value in values:
        service, sep, count = value.partition("=")
        if not sep or not count.isdigit():
            raise UsageError(f"--scale {value}: expected SERVICE=NUMBER")
        result[service] = int(count)
    return result


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1)
@click.option("-d", "--detach", is_flag=True, help="Return once the stack runs.")
@click.option("--wait", is_flag=True, help="Wait until services run (and are healthy).")
@click.option("--wait-timeout", type=float, help="Seconds --wait waits at most.")
@click.option("--force-recreate", is_flag=True, help="Recreate every container.")
@click.option("--no-recreate", is_flag=True, help="Keep existing containers as they are.")
@click.option(
    "--remove-orphans", is_flag=True, help="Remove containers of services not in the file."
)
@click.option("--no-deps", is_flag=True, help="Do not start the services the named ones need.")
@click.option(
    "--scale", "scales", multiple=True, metavar="SERVICE=NUM", help="Replicas of a service."
)
@click.option(
    "--abort-on-container-exit", is_flag=True, help="Stop the stack when a container exits."
)
@click.option("--exit-code-from", metavar="SERVICE", help="Exit with this service's exit code.")
@click.option("-t", "--timeout", type=float, help="Seconds to wait for containers to stop.")
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "quiet"]), default="auto")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_obj
def up(
    ctx: Context,
    args: tuple[str, ...],
    detach: bool,
    wait: bool,
    wait_timeout: float | None,
    force_recreate: bool,
    no_recreate: bool,
    remove_orphans: bool,
    no_deps: bool,
    scales: tuple[str, ...],
    abort_on_container_exit: bool,
    exit_code_from: str | None,
    timeout: float | None,
    progress: str,
    quiet: bool,
) -> int:
    """Create and start the stack's networks and containers, and publish its ports:
    `composer up [STACK_FILE] [SERVICE...]`. Only services whose definition changed are
    recreated. Without -d, shows the containers' output until Ctrl-C, which stops them."""
    import anyio

    from composer.cli.progress import stack_progress
    from composer.config.loader import load_stack
    from composer.converge import up as bring_up
    from composer.images import ensure_images
    from composer.planner import PlanOptions
    from composer.settings import Settings

    if exit_code_from:
        abort_on_container_exit = True
    if detach and abort_on_container_exit:
        raise UsageError("-d cannot be combined with --abort-on-container-exit or --exit-code-from")
    ctx, services = split_stack_file(ctx, args)
    stack = load_stack(ctx.load_options())
    for problem in stack.warnings:
        warn(problem)
    if exit_code_from and exit_code_from not in stack.project.services:
        raise UsageError(f"--exit-code-from {exit_code_from}: no such service")
    options = PlanOptions(force_recreate, no_recreate, remove_orphans, _scale(scales),
                          services, no_deps)  # fmt: skip
    settings = Settings.load()
    images = anyio.run(ensure_images, settings, stack)
    mode = "tty" if progress == "tty" else "plain" if progress == "plain" else "auto"
    with stack_progress(mode, quiet or progress == "quiet") as report:
        result = bring_up(stack, settings, images, options, waiting=waiting, progress=report)
    names = [a.name for a in result.plan.wanted]
    if wait:
        _wait(settings, names, wait_timeout)
    if detach or wait:
        return 0
    from composer.cli.attach import attach

    code: int = attach(stack, settings, names, abort_on_container_exit, exit_code_from, timeout)
    return code


def _wait(settings: Settings, names: list[str], timeout: float | None) -> None:
    """Until every container runs, and is healthy when it has a healthcheck (one that ran to
    completion successfully counts too); ComposerError on an unhealthy or failed one."""
    import time

    from engine.cgroups import detect
    from engine.container.runtime import Runtime

    runtime = Runtime(settings.root, detect())
    deadline = time.monotonic() + timeout if timeout else None
    pending = list(names)
    while pending:
        for name in list(pending):
            state = runtime.get(name).state
            health = getattr(state, "health", "")
            if health == "unhealthy":
                raise ComposerError(f"container {name} is unhealthy")
            if state.status == "exited" and state.exit_code not in (0, None):
                raise ComposerError(f"container {name} exited ({state.exit_code})")
            if health in ("", "healthy") and state.status in ("running", "exited"):
                pending.remove(name)
        if pending and deadline is not None and time.monotonic() > deadline:
            raise ComposerError(f"timeout waiting for {', '.join(pending)}")
        if pending:
            time.sleep(0.05)


@click.command()
@click.argument("stack_file", required=False)
@click.option("-t", "--timeout", type=float, help="Seconds to wait for each container to stop.")
@click.option("-v", "--volumes", is_flag=True, help="Remove the stack's named volumes too.")
@click.option("--remove-orphans", is_flag=True, help="Accepted: orphans are always removed.")
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "quiet"]), default="auto")
@click.pass_obj
def down(
    ctx: Context,
    stack_file: str | None,
    timeout: float | None,
    volumes: bool,
    remove_orphans: bool,
    progress: str,
) -> None:
    """Stop and remove the stack's containers, networks and published ports (and its named
    volumes with -v)."""
    from composer.cli.progress import stack_progress
    from composer.config.loader import load_stack, stack_name
    from composer.converge import down as bring_down
    from composer.settings import Settings

    named: tuple[str, ...] = ()
    if ctx.project_name and not ctx.files and stack_file is None:
        project = ctx.project_name
    elif volumes:  # the stack's named volumes: its models
        stack = load_stack(ctx.with_stack_file(stack_file).load_options())
        project = stack.project.name
        named = tuple(v.name or k for k, v in stack.project.volumes.items() if not v.external)
    else:
        project = stack_name(ctx.with_stack_file(stack_file).load_options())
    mode = "tty" if progress == "tty" else "plain" if progress == "plain" else "auto"
    with stack_progress(mode, progress == "quiet") as report:
        bring_down(project, Settings.load(), timeout=timeout, volumes=named, waiting=waiting,
                   progress=report)  # fmt: skip
