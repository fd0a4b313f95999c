"""The `composer` command group: global options, error reporting, exit codes.

We use click for the command tree: subcommands with their own options, `--help` on each, and
exit code 2 for usage errors come with it, and it imports in a few milliseconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from composer import __version__
from composer.cli.config_cmd import config
from composer.cli.context import Context
from composer.cli.events_cmd import events
from composer.cli.exec_cmd import exec_
from composer.cli.image_cmd import image
from composer.cli.inspect_cmd import inspect
from composer.cli.lifecycle_cmd import kill, pause, restart, rm, start, stop, unpause
from composer.cli.listing_cmd import images, ls
from composer.cli.logs_cmd import logs
from composer.cli.process_cmd import stats, top
from composer.cli.pull_cmd import pull
from composer.cli.run_cmd import run
from composer.cli.serve_cmd import serve
from composer.cli.stack_cmd import port, ps
from composer.cli.up_cmd import down, up
from composer.errors import ComposerError, StackError, UsageError
from engine.errors import EngineError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


cli.add_command(config)
cli.add_command(exec_)
cli.add_command(image)
cli.add_command(pull)
cli.add_command(up)
cli.add_command(run)
cli.add_command(down)
cli.add_command(serve)
cli.add_command(ps)
cli.add_command(port)
cli.add_command(logs)
cli.add_command(start)
cli.add_command(stop)
cli.add_command(restart)
cli.add_command(kill)
cli.add_command(rm)
cli.add_command(pause)
cli.add_command(unpause)
cli.add_command(top)
cli.add_command(stats)
cli.add_command(events)
cli.add_command(inspect)
cli.add_command(images)
cli.add_command(ls)


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
