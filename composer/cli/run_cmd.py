"""`composer run`: a one-off container of a service, with another command."""

from __future__ import annotations

import click

from composer.cli.context import Context, warn
from composer.errors import UsageError

__all__ = ["run"]


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it ends.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Set a variable.")
@click.option("--no-deps", is_flag=True, help="Do not start the services it needs.")
@click.option("-d", "--detach", is_flag=True, help="Print its name and return at once.")
@click.option("-T", "no_tty", is_flag=True, help="Accepted: output is not a terminal.")
@click.argument("service")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def run(
    ctx: Context,
    remove: bool,
    env: tuple[str, ...],
    no_deps: bool,
    detach: bool,
    no_tty: bool,
    service: str,
    command: tuple[str, ...],
) -> int:
    """Run COMMAND (or the service's command) in a new container of SERVICE, after starting
    what SERVICE needs; shows its output and exits with its exit code. Its standard input is
    not attached (as with -T)."""
    import anyio

    from composer.cli.attach import attach
    from composer.cli.up_cmd import waiting
    from composer.config.loader import load_stack
    from composer.converge import one_off, remove_one_off
    from composer.converge import up as bring_up
    from composer.images import ensure_images
    from composer.planner import PlanOptions
    from composer.settings import Settings

    for entry in env:
        if "=" not in entry:
            raise UsageError(f"--env {entry!r}: expected KEY=VALUE")
    stack = load_stack(ctx.load_options())
    for problem in stack.warnings:
        warn(problem)
    if service not in stack.project.services:
        known = ", ".join(sorted(stack.project.services))
        raise UsageError(f"no such service: {service} (the stack has: {known})")
    settings = Settings.load()
    images = anyio.run(ensure_images, settings, stack)
    needed = stack.graph.needs(service)
    if needed and not no_deps:
        bring_up(stack, settings, images, PlanOptions(services=tuple(needed)), waiting=waiting)
    name = one_off(stack, settings, images[service], service, command, env, waiting=waiting)
    if detach:
        click.echo(name)
        return 0
    try:
        code: int = attach(stack, settings, [name], True, service, None, prefix=False)
    finally:
        if remove:
            remove_one_off(settings, stack.project.name, name)
    return code
