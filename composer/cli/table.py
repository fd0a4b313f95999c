"""Tables as docker prints them: a header of upper-case names, each column as wide as its
widest cell, three spaces apart, no trailing blanks."""

from __future__ import annotations

from collections.abc import Sequence

import click

__all__ = ["print_table"]


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
