"""`python -m composer` runs the CLI."""

from composer.cli.main import run

run()
