"""`composer pull`: pull the images of a stack's services, concurrently."""

from __future__ import annotations

import click

from composer.cli.context import Context, warn
from composer.cli.progress import pull_progress
from composer.errors import ComposerError, UsageError

__all__ = ["pull"]


@click.command()
@click.argument("services", nargs=-1)
@click.option("-f", "--file", "stack_file", help="Stack file (same as the global -f).")
@click.option("-q", "--quiet", is_flag=True, help="Print no progress.")
@click.option(
    "--policy",
    type=click.Choice(["missing", "always"]),
    default="always",
    show_default=True,
    help="missing: pull only images not in the store.",
)
@click.option("--ignore-pull-failures", is_flag=True, help="Pull what can be pulled; exit 0.")
@click.pass_obj
def pull(
    ctx: Context,
    services: tuple[str, ...],
    stack_file: str | None,
    quiet: bool,
    policy: str,
    ignore_pull_failures: bool,
) -> None:
    """Pull the images of the stack's services (all, or those named). Services whose
    pull_policy is `never` or `build` are not pulled."""
    import anyio

    from composer.config.loader import load_stack
    from composer.images import pull_images, stack_images
    from composer.settings import Settings

    stack = load_stack(ctx.with_stack_file(stack_file).load_options())
    for problem in stack.warnings:
        warn(problem)
    unknown = [s for s in services if s not in stack.project.services]
    if unknown:
        raise UsageError(f"no such service: {', '.join(unknown)}")
    needs = stack_images(stack, services or None)
    settings = Settings.load()
    with pull_progress(quiet) as progress:
        outcomes = anyio.run(
            lambda: pull_images(settings, needs, force=policy == "always", progress=progress)
        )
    failed = 0
    for outcome in outcomes:
        who = ", ".join(outcome.need.services)
        if outcome.error:
            failed += 1
            click.echo(f"error: {who}: {outcome.error}", err=True)
        elif not quiet:
            state = "pulled" if outcome.pulled else "already present"
            click.echo(f"{who}: {outcome.need.ref.familiar()} {state}", err=True)
    if failed and not ignore_pull_failures:
        raise ComposerError(f"{failed} of {len(outcomes)} images could not be pulled")
