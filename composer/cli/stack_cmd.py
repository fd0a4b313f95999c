"""`composer ps` and `port`: a stack's containers and their published ports."""

from __future__ import annotations

from typing import Any

import click

from composer.cli.context import Context
from composer.errors import ComposerError, UsageError

__all__ = ["port", "ps"]


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
