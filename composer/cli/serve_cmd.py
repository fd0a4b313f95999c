"""`composer serve [DIR]`: keep stacks equal to their files, as a long-running service."""

from __future__ import annotations

import time
from pathlib import Path

import click

from composer.cli.context import Context
from composer.errors import UsageError

__all__ = ["serve"]


def _log(line: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
    click.echo(f"{stamp} {line}", err=True)


@click.command()
@click.argument(
    "directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--keep-removed",
    is_flag=True,
    help="A removed stack file leaves its stack running (default: it is brought down).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9464,
    show_default=True,
    help="Serve Prometheus metrics on 127.0.0.1:PORT (0: no metrics).",
)
@click.option(
    "--rescan",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Look at every file this often even when no change is notified.",
)
@click.pass_obj
def serve(
    ctx: Context, directory: Path | None, keep_removed: bool, metrics_port: int, rescan: float
) -> None:
    """Apply every stack file of DIR (each *.yaml / *.yml, and each subdirectory with a
    compose.yaml) whenever it changes, bring down the stack of a removed one, and keep each
    stack's supervisor running — until SIGTERM or Ctrl-C; the stacks keep running. Without
    DIR: the stacks up on this host, each from the files it was brought up from. State on
    $COMPOSER_ROOT/run/serve.sock (one JSON line in, one out: {"get": "stacks"})."""
    import anyio

    from composer.serve import Serve, ServeOptions
    from composer.settings import Settings

    if ctx.files or ctx.project_name or ctx.project_directory:
        raise UsageError("serve takes a directory of stack files, not -f, -p or "
                         "--project-directory")  # fmt: skip
    options = ServeOptions(directory.absolute() if directory else None, keep_removed,
                           metrics_port, rescan)  # fmt: skip
    anyio.run(Serve(Settings.load(), options, _log).run)
