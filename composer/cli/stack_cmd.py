"""`composer ps` and `port`: a stack's containers and their published ports."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from composer.cli.context import Context
from composer.errors import ComposerError, UsageError

if TYPE_CHECKING:
    from composer.cli.target import Target
    from composer.stackview import Member
    from composer.state import NetworkRecord, PortRecord

__all__ = ["port", "ps"]

_STATES = ("created", "running", "restarting", "paused", "exited", "dead")


@click.command()
@click.argument("args", nargs=-1, metavar="[STACK_FILE] [SERVICE]...")
@click.option("-a", "--all", "show_all", is_flag=True, help="Stopped containers too.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")  # fmt: skip
@click.option("--services", "names_only", is_flag=True, help="Print the services only.")
@click.option("-q", "--quiet", is_flag=True, help="Print the container names only.")
@click.option("--status", multiple=True, type=click.Choice(_STATES),
              help="Only containers in this state (repeatable; implies -a).")  # fmt: skip
@click.option("--no-trunc", is_flag=True, help="Do not shorten the commands.")
@click.pass_obj
def ps(
    ctx: Context,
    args: tuple[str, ...],
    show_all: bool,
    fmt: str,
    names_only: bool,
    quiet: bool,
    status: tuple[str, ...],
    no_trunc: bool,
) -> None:
    """List the stack's containers (running ones, or all with -a): image, command, service,
    state, health, networks and published ports."""
    import json

    from composer.cli.target import open_target
    from composer.stackview import ACTIVE
    from composer.state import StateStore

    target = open_target(ctx, args)
    members = target.members()
    if status:
        members = [m for m in members if m.state.status in status]
    elif not show_all:
        members = [m for m in members if m.state.status in ACTIVE]
    if names_only or quiet:
        names = [m.service for m in members] if names_only else [m.name for m in members]
        for name in dict.fromkeys(names):
            click.echo(name)
        return
    with StateStore(target.settings.root) as store:
        ports, networks = store.ports(target.view.project), store.networks()
    rows = [_ps_row(target, m, ports, networks) for m in members]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from composer.cli.table import print_table

    print_table(("NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"), [
        (r["Name"], r["Image"], _quoted(r["Command"], no_trunc), r["Service"], r["RunningFor"],
         r["Status"], r["Ports"]) for r in rows
    ])  # fmt: skip


def _publisher(port: PortRecord) -> dict[str, Any]:
    return {"URL": port.host_ip or "0.0.0.0", "TargetPort": port.container_port,
            "PublishedPort": port.host_port, "Protocol": port.protocol}  # fmt: skip


def _quoted(command: str, whole: bool) -> str:
    """A command as `docker ps` shows it: quoted, cut at 20 characters with an ellipsis."""
    return f'"{command if whole or len(command) <= 20 else command[:19] + "…"}"'


def _ps_row(
    target: Target, member: Member, ports: list[PortRecord], networks: list[NetworkRecord]
) -> dict[str, Any]:
    """What `docker compose ps --format json` says of a container (Networks: name → IPv4
    address)."""
    from composer.cli.humanize import health_of, human_duration, status_text
    from composer.stackview import ACTIVE, attached_networks

    state = member.state
    created = member.created
    live = state.status in ACTIVE
    published = [p for p in ports if p.container == member.name and live]
    return {
        "ID": member.name,
        "Name": member.name,
        "Image": target.view.image(member, target.settings),
        "Command": " ".join(member.config.argv),
        "Project": target.view.project,
        "Service": member.service,
        "Created": int(created),
        "RunningFor": human_duration(time.time() - created) + " ago",
        "State": state.status,
        "Status": status_text(state),
        "Health": health_of(state),
        "ExitCode": state.exit_code or 0,
        "Pid": state.pid,
        "Networks": {name: str(a.address.ip) for name, a in attached_networks(member, networks)},
        "Publishers": [_publisher(p) for p in published],
        "Ports": ", ".join(
            f"{_host(p.host_ip)}:{p.host_port}->{p.container_port}/{p.protocol}" for p in published
        ),
    }


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
    from composer.planner import container_name
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
