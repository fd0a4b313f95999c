"""`composer exec`: run a command in a service's running container; its exit code is ours."""

from __future__ import annotations

import sys

import click

from composer.cli.context import Context
from composer.errors import ComposerError, UsageError

__all__ = ["exec_"]


@click.command(
    "exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.option("-T", "no_tty", is_flag=True, help="Do not allocate a terminal.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Set a variable.")
@click.option("-u", "--user", help="Run as this user (name or uid[:gid]).")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("--index", default=1, show_default=True, help="Which replica of the service.")
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(
    ctx: Context,
    no_tty: bool,
    env: tuple[str, ...],
    user: str | None,
    workdir: str | None,
    index: int,
    service: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND inside SERVICE's running container (its namespaces, cgroup, user,
    capabilities and seccomp filter); exits with COMMAND's exit code. A terminal is given
    when ours is one, unless -T."""
    from composer.config.loader import load_stack
    from composer.planner import container_name
    from composer.settings import Settings
    from engine.cgroups import detect
    from engine.container.runtime import Runtime
    from engine.errors import EngineError

    for entry in env:
        if "=" not in entry:
            raise UsageError(f"--env {entry!r}: expected KEY=VALUE")
    stack = load_stack(ctx.load_options())
    if service not in stack.project.services:
        raise UsageError(f"no such service: {service}")
    own = stack.project.services[service].container_name
    name = container_name(stack.project.name, service, index, own)
    runtime = Runtime(Settings.load().root, detect())
    try:
        state = runtime.get(name).state
    except EngineError as exc:
        raise ComposerError(f"service {service!r} has no container {name}: {exc}") from exc
    if state.status != "running":
        raise ComposerError(f"service {service!r}: container {name} is {state.status}")
    sys.stdout.flush()
    if not no_tty and sys.stdin.isatty() and sys.stdout.isatty():
        from composer.cli.terminal import interactive

        code = interactive(
            lambda slave: runtime.exec(
                name,
                command,
                env=env,
                user=user,
                working_dir=workdir,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                tty=True,
            )
        )
    else:
        code = runtime.exec(name, command, env=env, user=user, working_dir=workdir)
    raise click.exceptions.Exit(code)
