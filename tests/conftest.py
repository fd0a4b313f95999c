"""A stack directory per test: write files into it, load them as composer would."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from composer.config.loader import LoadOptions, Stack, load_stack
from composer.errors import StackError

# The shared corpus lies beside the checkout; a clone elsewhere finds it where this kind of
# machine keeps it.
CORPUS = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[2] / "shared/corpus",
            Path("/work/shared/corpus"),
        )
        if p.is_dir()
    ),
    Path("/work/shared/corpus"),
)

Write = Callable[[str, str], Path]
Load = Callable[..., Stack]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """write("compose.yaml", text) puts a dedented file in the test's stack directory."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


@pytest.fixture
def load(tmp_path: Path) -> Load:
    """load("a.yaml", "b.yaml", environ={...}, **LoadOptions fields) loads from the directory."""

    def _load(*files: str, environ: dict[str, str] | None = None, **options: Any) -> Stack:
        return load_stack(
            LoadOptions(
                files=tuple(tmp_path / f for f in files),
                environ={"HOME": "/home/tester"} if environ is None else environ,
                working_directory=tmp_path,
                **options,
            )
        )

    return _load


def problems_of(load: Load, *files: str, **options: Any) -> list[str]:
    """The problems loading reports, as the lines the user sees."""
    with pytest.raises(StackError) as info:
        load(*files, **options)
    return [str(p) for p in info.value.problems]
