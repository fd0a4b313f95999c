"""`composer top` and `composer stats`: the processes of a stack's containers, as `ps -ef`
lists them, and what each container uses (CPU, memory, network, disk, processes) as
`docker stats` shows it."""

from __future__ import annotations

import datetime
import json
import os
import pwd
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

import click

from composer.cli.context import Context
from composer.cli.progress import human_size
from composer.cli.table import print_table
from composer.cli.target import Target, open_target
from composer.stackview import ACTIVE, Member

if TYPE_CHECKING:
    from engine.container.processes import ProcessInfo

__all__ = ["stats", "top"]

_SAMPLE: Final = 0.5  # seconds over which CPU use is measured
_CONCURRENCY: Final = 8


@click.command()
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@click.pass_obj
def top(ctx: Context, services: tuple[str, ...]) -> None:
    """Show the processes of the services' running containers."""
    from engine.container.processes import processes

    target = open_target(ctx, services)
    for member in target.members():
        if member.state.status not in ACTIVE:
            continue
        pids = target.runtime.cgroups.pids(target.runtime.cgroup_of(member.name))
        rows = [_ps_ef(info) for info in processes(pids)]
        click.echo(member.name)
        print_table(("UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"), rows)
        click.echo()


def _ps_ef(info: ProcessInfo) -> tuple[str, ...]:
    """A process as `ps -ef` shows it."""
    try:
        user = pwd.getpwuid(info.uid).pw_name
    except KeyError:
        user = str(info.uid)
    elapsed = max(time.time() - info.started, 1e-9)
    started = datetime.datetime.fromtimestamp(info.started)
    now = datetime.datetime.now()
    if now - started < datetime.timedelta(days=1):
        stime = started.strftime("%H:%M")
    else:
        stime = started.strftime("%b%d" if started.year == now.year else "%Y")
    cpu = int(info.cpu_seconds)
    days, rest = divmod(cpu, 86400)
    clock = f"{rest // 3600:02}:{rest % 3600 // 60:02}:{rest % 60:02}"
    share = min(int(info.cpu_seconds / elapsed * 100), 99)  # ps's C: CPU use over its life
    return (user, str(info.pid), str(info.ppid), str(share), stime, info.tty,
            f"{days}-{clock}" if days else clock, info.command)  # fmt: skip


def _binary_size(size: float) -> str:
    """Memory as docker stats shows it: binary units, four significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}"
        size /= 1024
    return f"{size:.4g}TiB"


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _measure(target: Target, member: Member) -> dict[str, str]:
    """One container's use, as `docker stats --format json` gives it."""
    from engine.container.processes import network_bytes

    used = target.runtime.stats(member.name, _SAMPLE)
    group = used.cgroup
    limit = group.memory_limit if group.memory_limit else _host_memory()
    received, sent = network_bytes(member.state.pid) if member.state.pid else (0, 0)
    read, written = group.io_read_bytes or 0, group.io_write_bytes or 0
    return {
        "BlockIO": f"{human_size(read)} / {human_size(written)}",
        "CPUPerc": f"{used.cpu_percent:.2f}%",
        "Container": member.name,
        "ID": member.name,
        "MemPerc": f"{group.memory_usage / limit * 100:.2f}%",
        "MemUsage": f"{_binary_size(group.memory_usage)} / {_binary_size(limit)}",
        "Name": member.name,
        "NetIO": f"{human_size(received)} / {human_size(sent)}",
        "PIDs": str(group.pids),
    }


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Stopped containers too.")
@click.option("--no-stream", is_flag=True, help="Show the figures once, not every second.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format (json: an object a line).")  # fmt: skip
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@click.pass_obj
def stats(
    ctx: Context, show_all: bool, no_stream: bool, fmt: str, services: tuple[str, ...]
) -> None:
    """Show what the services' containers use: CPU, memory, network, disk, processes;
    refreshed every second until Ctrl-C, unless --no-stream."""
    target = open_target(ctx, services)
    redraw = not no_stream and sys.stdout.isatty()
    while True:
        view = target.view.refresh(target.runtime)
        members = [m for m in view.select(target.services) if show_all or m.state.status in ACTIVE]
        with ThreadPoolExecutor(max_workers=_CONCURRENCY) as pool:
            rows = list(pool.map(lambda m: _measure(target, m), members))
        if redraw:
            click.echo("\033[2J\033[H", nl=False)
        _show(rows, fmt)
        if no_stream:
            return


def _show(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return
    header = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
              "BLOCK I/O", "PIDS")  # fmt: skip
    keys = ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
    print_table(header, [[row[k] for k in keys] for row in rows])
