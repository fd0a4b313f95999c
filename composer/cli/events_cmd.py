"""`composer events`: what happens to a stack's containers, as `docker compose events` shows
it — a line per event (or a JSON object with --json) as it comes, until Ctrl-C."""

from __future__ import annotations

import datetime
import json
import time
from typing import Final

import click

from composer.cli.context import Context
from composer.cli.humanize import parse_time
from composer.cli.target import open_target
from composer.events import Event, EventFeed

__all__ = ["events"]

_POLL: Final = 0.25


def _render(event: Event, as_json: bool) -> str:
    attributes = dict(event.attributes)
    if as_json:
        return json.dumps({"time": event.time, "type": "container", "service": event.service,
                           "id": event.container, "action": event.action,
                           "attributes": attributes})  # fmt: skip
    when = datetime.datetime.fromtimestamp(event.seconds).strftime("%Y-%m-%d %H:%M:%S.%f")
    listed = ", ".join(f"{key}={value}" for key, value in attributes.items())
    return f"{when} container {event.action} {event.container} ({listed})"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="An event a line, as a JSON object.")
@click.option("--since", help="Show the events since this time (or for so long: 10m) first.")
@click.option("--until", help="Stop at this time (or so long ago: 10m).")
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@click.pass_obj
def events(
    ctx: Context, as_json: bool, since: str | None, until: str | None, services: tuple[str, ...]
) -> None:
    """Show the events of the services' containers as they happen (start, stop, die, kill,
    pause, destroy, heal …), until Ctrl-C."""
    started = time.time()
    first = parse_time(since, "--since") if since else started
    last = parse_time(until, "--until") if until else None
    target = open_target(ctx, services)
    target.view.select(target.services)  # unknown services are an error
    feed = EventFeed(target.settings, target.runtime, target.view.project)
    while True:
        for event in feed.read():
            if target.services and event.service not in target.services:
                continue
            if event.seconds >= first and (last is None or event.seconds <= last):
                click.echo(_render(event, as_json))
        if last is not None and time.time() > last:
            return
        time.sleep(_POLL)
