"""`composer config`: validate a stack and print it in normal form, or parts of it."""

from __future__ import annotations

import click

from composer.cli.context import Context, warn

__all__ = ["config"]


@click.command()
@click.argument("stack_file", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="Output format.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only validate; print nothing but problems.")
@click.option("--services", is_flag=True, help="Print the service names, in start order.")
@click.option("--volumes", is_flag=True, help="Print the volume names.")
@click.option("--profiles", "list_profiles", is_flag=True, help="Print every profile in use.")
@click.option("--images", is_flag=True, help="Print the image of each service.")
@click.option(
    "--hash",
    "hash_of",
    metavar="SERVICE|*",
    help="Print the configuration hash of services (comma-separated, or *).",
)
@click.pass_obj
def config(
    ctx: Context,
    stack_file: str | None,
    fmt: str,
    quiet: bool,
    services: bool,
    volumes: bool,
    list_profiles: bool,
    images: bool,
    hash_of: str | None,
) -> None:
    """Validate the stack file(s) and print the normalised stack."""
    from composer.config.loader import load_stack
    from composer.config.serialize import project_to_dict, service_hash, to_json, to_yaml
    from composer.errors import UsageError

    ctx = ctx.with_stack_file(stack_file)
    stack = load_stack(ctx.load_options(("*",) if list_profiles else None))
    for problem in stack.warnings:
        warn(problem)
    project = stack.project
    if quiet:
        return
    if services:
        for generation in stack.graph.start_order():
            for name in generation:
                click.echo(name)
    elif volumes:
        for name in project.volumes:
            click.echo(name)
    elif list_profiles:
        seen = sorted({p for s in project.services.values() for p in s.profiles or []})
        for name in seen:
            click.echo(name)
    elif images:
        for name, service in project.services.items():
            click.echo(service.image or f"{project.name}-{name}")
    elif hash_of is not None:
        wanted = list(project.services) if hash_of == "*" else hash_of.split(",")
        for name in wanted:
            if name not in project.services:
                raise UsageError(f"no service {name!r} in the stack")
            click.echo(f"{name} {service_hash(project, name)}")
    else:
        data = project_to_dict(project)
        click.echo(to_json(data) if fmt == "json" else to_yaml(data), nl=False)
