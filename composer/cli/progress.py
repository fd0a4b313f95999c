"""Pull progress for a terminal (rich bars, one per image) or for a log (a line per layer)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

import click

if TYPE_CHECKING:
    from engine.images.registry import PullProgress

__all__ = ["human_size", "pull_progress", "stack_progress"]


class Sink(Protocol):
    def __call__(self, event: PullProgress, /) -> None: ...


def human_size(size: float) -> str:
    """Sizes as docker prints them: decimal units, three significant digits."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1000
    return f"{size:.3g}TB"


@contextmanager
def pull_progress(quiet: bool) -> Iterator[Sink]:
    """A callback for PullProgress events that shows them; nothing at all when `quiet`."""
    if quiet:
        yield lambda _event: None
        return
    if not sys.stderr.isatty():

        def log(event: PullProgress) -> None:
            if event.status in ("done", "exists"):
                what = "already present" if event.status == "exists" else human_size(event.total)
                click.echo(f"{event.image}: layer {event.digest[7:19]} {what}", err=True)

        yield log
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    layers: dict[str, dict[str, tuple[int, int]]] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
    ) as bars:
        tasks: dict[str, int] = {}

        def show(event: PullProgress) -> None:
            image = layers.setdefault(event.image, {})
            image[event.digest] = (event.done, event.total)
            if event.image not in tasks:
                tasks[event.image] = int(bars.add_task(event.image, total=None))
            bars.update(
                tasks[event.image],  # type: ignore[arg-type]
                completed=sum(done for done, _ in image.values()),
                total=sum(total for _, total in image.values()),
            )

        yield show


_DONE = frozenset({"Started", "Running", "Removed", "Created", "Healthy", "Stopped", "Exited"})


@contextmanager
def stack_progress(mode: str, quiet: bool = False) -> Iterator[Callable[[str, str], None]]:
    """A callback (name, status) that shows what happens to each container as docker compose
    v2 does: on a terminal one line per container, updated in place, ✔ when done; with
    `mode` "plain" (or when stderr is not a terminal) a line per change, no colour."""
    if quiet:
        yield lambda _name, _status: None
        return
    if mode == "plain" or (mode == "auto" and not sys.stderr.isatty()):

        def log(name: str, status: str) -> None:
            click.echo(f" Container {name}  {status}", err=True)

        yield log
        return
    import threading
    import time

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    rows: dict[str, tuple[str, float, float]] = {}  # name → status, since, last change
    lock = threading.Lock()

    def render() -> Table:
        table = Table.grid(padding=(0, 1))
        for name, (status, since, changed) in list(rows.items()):
            mark = ("[green]✔[/]" if status in _DONE else "[red]✘[/]" if status == "Error"
                    else "[cyan]⠿[/]")  # fmt: skip
            end = changed if status in _DONE or status == "Error" else time.monotonic()
            table.add_row(mark, f"Container {name}", status, f"[blue]{end - since:.1f}s[/]")
        return table

    with Live(render(), console=Console(stderr=True), refresh_per_second=10,
              transient=False) as live:  # fmt: skip

        def show(name: str, status: str) -> None:
            with lock:
                now = time.monotonic()
                since = rows[name][1] if name in rows else now
                rows[name] = (status, since, now)
                live.update(render())

        yield show
        live.update(render())
