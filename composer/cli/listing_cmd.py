"""`composer ls` and `composer images`: the stacks on this host with a summary of their
containers' states, and the images a stack's containers run — as docker compose lists them."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import click

from composer.cli.context import Context
from composer.cli.progress import human_size
from composer.cli.table import print_table
from composer.cli.target import open_target

__all__ = ["images", "ls"]

_FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                       show_default=True, help="Output format.")  # fmt: skip


@click.command("ls")
@click.option("-a", "--all", "show_all", is_flag=True, help="Stopped stacks too.")
@_FORMAT
@click.option("-q", "--quiet", is_flag=True, help="Print the stacks' names only.")
def ls(show_all: bool, fmt: str, quiet: bool) -> None:
    """List the stacks on this host: their containers' states ("running(3)") and files."""
    from composer.settings import Settings
    from composer.stackview import LABEL_SERVICE, open_runtime
    from composer.state import StateStore
    from engine.errors import EngineError

    settings = Settings.load()
    runtime = open_runtime(settings)
    with StateStore(settings.root) as store:
        files = {record.project: ",".join(record.files) for record in store.stacks()}
    states: dict[str, Counter[str]] = {project: Counter() for project in files}
    for container_id in runtime.ids():
        try:
            container = runtime.get(container_id)
        except EngineError:
            continue  # removed meanwhile
        if container.config.group and LABEL_SERVICE in dict(container.config.labels):
            states.setdefault(container.config.group, Counter())[container.state.status] += 1
    rows = []
    for project in sorted(states):
        counted = {s: n for s, n in states[project].items() if show_all or s == "running"}
        if counted or (show_all and project in files):
            summary = ", ".join(f"{s}({n})" for s, n in sorted(counted.items()))
            rows.append({"Name": project, "Status": summary, "ConfigFiles": files.get(project, "")})
    if quiet:
        for row in rows:
            click.echo(row["Name"])
    elif fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(("NAME", "STATUS", "CONFIG FILES"), [list(row.values()) for row in rows])


@click.command()
@_FORMAT
@click.option("-q", "--quiet", is_flag=True, help="Print the image ids only.")
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@click.pass_obj
def images(ctx: Context, fmt: str, quiet: bool, services: tuple[str, ...]) -> None:
    """List the images the services' containers run."""
    from composer.images import open_store
    from engine.images.reference import Reference, parse_reference

    target = open_target(ctx, services)
    store = open_store(target.settings)
    rows: list[dict[str, Any]] = []
    for member in target.members():
        found = store.find(member.config.image_id)
        ref = parse_reference(target.view.image(member, target.settings)) if found else None
        repository = Reference(ref.domain, ref.path, None, None).familiar() if ref else "<none>"
        rows.append({"ID": member.config.image_id, "ContainerName": member.name,
                     "Repository": repository, "Tag": (ref.tag or "latest") if ref else "<none>",
                     "Size": found.size if found else 0})  # fmt: skip
    if quiet:
        for image_id in dict.fromkeys(row["ID"] for row in rows):
            click.echo(str(image_id).removeprefix("sha256:")[:12])
    elif fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(("CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"), [
            (str(r["ContainerName"]), str(r["Repository"]), str(r["Tag"]),
             str(r["ID"]).removeprefix("sha256:")[:12], human_size(int(r["Size"]))) for r in rows
        ])  # fmt: skip
