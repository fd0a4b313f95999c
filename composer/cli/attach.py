"""`composer up` in the foreground: the containers' output with coloured `service-1  | `
prefixes until Ctrl-C, which stops the stack gracefully (a second Ctrl-C kills it), or until
a container exits with --abort-on-container-exit."""

from __future__ import annotations

import signal
import sys
import time
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from composer.config.loader import Stack
    from composer.settings import Settings
    from engine.container.runtime import Runtime

__all__ = ["attach"]

_COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "red")


def attach(
    stack: Stack,
    settings: Settings,
    names: list[str],
    abort_on_exit: bool,
    exit_code_from: str | None,
    timeout: float | None,
    prefix: bool = True,
) -> int:
    """Show the output of `names` until they all end, Ctrl-C, or (with `abort_on_exit`) the
    first ends; the exit code docker compose gives. `prefix`: each line says whose it is."""
    from engine.cgroups import detect
    from engine.container.runtime import Runtime

    runtime = Runtime(settings.root, detect())
    colour = sys.stdout.isatty()
    width = max((len(_short(stack, n)) for n in names), default=0)
    prefixes = {}
    for index, name in enumerate(names):
        text = f"{_short(stack, name):<{width}}  | "
        if not prefix:
            text = ""
        prefixes[name] = click.style(text, fg=_COLOURS[index % len(_COLOURS)]) if colour else text
    shown = dict.fromkeys(names, 0)
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
    try:
        while True:
            for name in names:
                shown[name] = _show(runtime, name, shown[name], prefixes[name])
            states = {n: runtime.get(n).state for n in names}
            ended = [n for n, s in states.items() if s.status == "exited"]
            if interrupted or (abort_on_exit and ended) or len(ended) == len(names):
                break
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, previous)
    running = [n for n in names if runtime.get(n).state.status in ("running", "paused")]
    if running and (interrupted or abort_on_exit):
        click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
        _stop(runtime, running, timeout)
    for name in names:
        _show(runtime, name, shown[name], prefixes[name])
    if exit_code_from:
        for name in names:
            if _service(runtime, name) == exit_code_from:
                return runtime.get(name).state.exit_code or 0
    return 130 if interrupted else 0


def _short(stack: Stack, name: str) -> str:
    prefix = f"{stack.project.name}-"
    return name[len(prefix) :] if name.startswith(prefix) else name


def _service(runtime: Runtime, name: str) -> str:
    return dict(runtime.get(name).config.labels).get("composer.service", "")


def _show(runtime: Runtime, name: str, shown: int, prefix: str) -> int:
    """Print the container's lines after the first `shown`; how many there are now."""
    from engine.container.logs import read_log

    lines = list(read_log(runtime.containers / name))
    if len(lines) < shown:  # rotated away: go on from the end
        return len(lines)
    for line in lines[shown:]:
        click.echo(prefix + line.text.rstrip("\n"))
    return len(lines)


def _stop(runtime: Runtime, names: list[str], timeout: float | None) -> None:
    """Stop every container at once; a second Ctrl-C kills them."""
    from concurrent.futures import ThreadPoolExecutor

    from engine.errors import EngineError

    def kill_all(*_: object) -> None:
        for name in names:
            try:
                runtime.kill(name)
            except EngineError:
                continue

    previous = signal.signal(signal.SIGINT, kill_all)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: _quietly(runtime, n, timeout), names))
    finally:
        signal.signal(signal.SIGINT, previous)


def _quietly(runtime: Runtime, name: str, timeout: float | None) -> None:
    from engine.errors import EngineError

    try:
        runtime.stop(name, timeout)
    except EngineError:
        return
