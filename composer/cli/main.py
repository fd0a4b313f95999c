"""The `composer` command group: global options, error reporting, exit codes.

We use click for the command tree: subcommands with their own options, `--help` on each, and
exit code 2 for usage errors come with it, and it imports in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from composer import __version__
from composer.cli.context import Context
from composer.errors import ComposerError, StackError, UsageError
from engine.errors import EngineError

__all__ = ["cli", "main"]

# Each verb's module is imported only when that verb runs (or --help lists them): `composer
# ps` need not load the image store, the serve loop or the port proxy.
_VERBS = {
    "config": "config_cmd:config", "exec": "exec_cmd:exec_", "image": "image_cmd:image",
    "pull": "pull_cmd:pull", "up": "up_cmd:up", "run": "run_cmd:run", "down": "up_cmd:down",
    "serve": "serve_cmd:serve", "ps": "stack_cmd:ps", "port": "stack_cmd:port",
    "logs": "logs_cmd:logs", "start": "lifecycle_cmd:start", "stop": "lifecycle_cmd:stop",
    "restart": "lifecycle_cmd:restart", "kill": "lifecycle_cmd:kill", "rm": "lifecycle_cmd:rm",
    "pause": "lifecycle_cmd:pause", "unpause": "lifecycle_cmd:unpause",
    "top": "process_cmd:top", "stats": "process_cmd:stats", "events": "events_cmd:events",
    "inspect": "inspect_cmd:inspect", "images": "listing_cmd:images", "ls": "listing_cmd:ls",
}  # fmt: skip


class _Verbs(click.Group):
    """The command group, loading each verb's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *_VERBS]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _VERBS:
            return super().get_command(ctx, name)
        import importlib

        module, _, attr = _VERBS[name].partition(":")
        command: click.Command = getattr(importlib.import_module(f"composer.cli.{module}"), attr)
        return command


@click.group(cls=_Verbs, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Stack file (repeat to merge several, later ones win).",
)
@click.option("-p", "--project-name", help="Project name (default: `name:` or the directory).")
@click.option(
    "--project-directory",
    type=click.Path(path_type=Path),
    help="Directory relative paths are resolved against (default: the first file's).",
)
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Variables file used instead of the project's .env.",
)
@click.option("--profile", "profiles", multiple=True, help="Profile to enable (repeatable).")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(__version__, "--version", prog_name="composer")
@click.pass_context
def cli(
    ctx: click.Context,
    files: tuple[Path, ...],
    project_name: str | None,
    project_directory: Path | None,
    env_files: tuple[Path, ...],
    profiles: tuple[str, ...],
    debug: bool,
) -> None:
    """composer: run compose stacks without a daemon."""
    ctx.obj = Context(files, project_name, project_directory, env_files, profiles, debug)


@cli.command()
def version() -> None:
    """Show the composer version."""
    click.echo(f"composer version {__version__}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every ComposerError becomes a message and its exit code, never a traceback."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = cli.main(args=argv, prog_name="composer", standalone_mode=False)
        if isinstance(result, int):  # a verb that exits with a code of its own (exec)
            return result
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except StackError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        count = len(exc.problems)
        if count > 1:
            click.echo(f"{count} errors", err=True)
        return exc.exit_code
    except (UsageError, ComposerError) as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except EngineError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # an internal error: a bug, reported without a traceback
        if debug:
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> NoReturn:
    """The `composer` program: `main`, then the process ends without the interpreter's
    teardown (freeing ~600 modules, joining idle worker threads: 65-80 ms after every
    command), its output flushed first. Nothing of ours needs that teardown: files and the
    state store are written and closed by the commands themselves."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`composer ps | head`)
            stream.flush()
    os._exit(code)
