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
    from composer.cli.logs_cmd import LogPrinter, LogReaders
    from composer.stackview import members, open_runtime

    runtime = open_runtime(settings)
    chosen = [m for m in members(runtime, stack.project.name) if m.name in names]
    printer = LogPrinter(chosen, stack.project.name, prefix, sys.stdout.isatty(), False)
    readers = LogReaders()
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
    try:
        while True:
            states = {m.name: runtime.get(m.name).state for m in chosen}
            ended = [n for n, s in states.items() if s.status == "exited"]
            for member in chosen:
                for line in readers.read(member, final=member.name in ended):
                    printer.write(member, line)
            if interrupted or (abort_on_exit and ended) or len(ended) == len(chosen):
                break
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, previous)
    running = [m.name for m in chosen if runtime.get(m.name).state.status in ("running", "paused")]
    if running and (interrupted or abort_on_exit):
        click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
        _stop(runtime, running, timeout)
    for member in chosen:
        for line in readers.read(member, final=True):
            printer.write(member, line)
    readers.close()
    if exit_code_from:
        for member in chosen:
            if member.service == exit_code_from:
                return runtime.get(member.name).state.exit_code or 0
    return 130 if interrupted else 0


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
