"""`composer up`, `down`, `ps` and `port`: a stack's containers, networks and ports."""

from __future__ import annotations

from typing import Any

import click

from composer.cli.context import Context, warn
from composer.errors import ComposerError, UsageError

__all__ = ["down", "port", "ps", "up"]


def _waiting() -> None:
    click.echo("waiting: another composer command is acting on this stack", err=True)


@click.command()
@click.argument("stack_file", required=False)
@click.option("-d", "--detach", is_flag=True, help="Return once it runs (the only mode yet).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_obj
def up(ctx: Context, stack_file: str | None, detach: bool, quiet: bool) -> None:
    """Create and start the stack's networks and containers, and publish its ports.
    Containers keep running after this command returns."""
    import anyio

    from composer.config.loader import load_stack
    from composer.converge import up as bring_up
    from composer.images import ensure_images
    from composer.settings import Settings

    stack = load_stack(ctx.with_stack_file(stack_file).load_options())
    for problem in stack.warnings:
        warn(problem)
    settings = Settings.load()
    images = anyio.run(ensure_images, settings, stack)
    planned = bring_up(stack, settings, images, waiting=_waiting)
    if not quiet:
        for item in planned:
            click.echo(f"{item.name}: started", err=True)


@click.command()
@click.argument("stack_file", required=False)
@click.option("-t", "--timeout", type=float, help="Seconds to wait for each container to stop.")
@click.pass_obj
def down(ctx: Context, stack_file: str | None, timeout: float | None) -> None:
    """Stop and remove the stack's containers, networks and published ports."""
    from composer.converge import down as bring_down
    from composer.settings import Settings

    project = _project_name(ctx, stack_file)
    for name in bring_down(project, Settings.load(), timeout=timeout, waiting=_waiting):
        click.echo(f"{name}: removed", err=True)


def _project_name(ctx: Context, stack_file: str | None) -> str:
    from composer.config.loader import load_stack

    if ctx.project_name and not ctx.files and stack_file is None:
        return ctx.project_name
    return load_stack(ctx.with_stack_file(stack_file).load_options()).project.name


@click.command()
@click.argument("stack_file", required=False)
@click.option("-a", "--all", "show_all", is_flag=True, help="Stopped containers too.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def ps(ctx: Context, stack_file: str | None, show_all: bool, fmt: str) -> None:
    """List the stack's containers: service, state, addresses and published ports."""
    import json

    from composer.settings import Settings
    from composer.state import StateStore
    from engine.cgroups import detect
    from engine.container.runtime import Runtime
    from engine.errors import EngineError

    project = _project_name(ctx, stack_file)
    settings = Settings.load()
    runtime = Runtime(settings.root, detect())
    rows: list[dict[str, Any]] = []
    with StateStore(settings.root) as store:
        ports = store.ports(project)
        for record in store.containers(project):
            try:
                state = runtime.get(record.id).state
            except EngineError:
                continue
            if state.status != "running" and not show_all:
                continue
            published = [
                f"{_host(p.host_ip)}:{p.host_port}->{p.container_port}/{p.protocol}"
                for p in ports
                if p.container == record.id
            ]
            addresses = [a.address for a in store.addresses(container=record.id)]
            status = state.status if state.status != "exited" else f"exited ({state.exit_code})"
            rows.append({"Name": record.id, "Service": record.service, "State": status,
                         "Addresses": addresses, "Ports": published})  # fmt: skip
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "SERVICE", "STATE", "ADDRESSES", "PORTS"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["Name"], row["Service"], row["State"], ", ".join(row["Addresses"]),
                      ", ".join(row["Ports"]))  # fmt: skip
    Console(soft_wrap=True).print(table)


def _host(ip: str) -> str:
    ip = ip or "0.0.0.0"
    return f"[{ip}]" if ":" in ip else ip


@click.command()
@click.argument("service")
@click.argument("private_port")
@click.option("--protocol", type=click.Choice(["tcp", "udp"]), default="tcp")
@click.option("--index", default=1, show_default=True, help="Which replica of the service.")
@click.pass_obj
def port(ctx: Context, service: str, private_port: str, protocol: str, index: int) -> None:
    """Print the host address a container port of SERVICE is published on."""
    from composer.config.loader import load_stack
    from composer.containers import container_name
    from composer.settings import Settings
    from composer.state import StateStore

    stack = load_stack(ctx.load_options())
    if service not in stack.project.services:
        raise UsageError(f"no such service: {service}")
    own = stack.project.services[service].container_name
    name = container_name(stack.project.name, service, index, own)
    number, _, proto = private_port.partition("/")
    with StateStore(Settings.load().root) as store:
        for p in store.ports(stack.project.name):
            if p.container == name and str(p.container_port) == number:
                if p.protocol == (proto or protocol):
                    click.echo(f"{_host(p.host_ip)}:{p.host_port}")
                    return
    raise ComposerError(f"no port {private_port} of service {service} is published")
