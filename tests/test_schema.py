"""specs/stack.schema.json is what the models generate."""

from __future__ import annotations

from composer.config.schema import SCHEMA_PATH, render_schema


def test_committed_schema_matches_the_models() -> None:
    assert SCHEMA_PATH.read_text() == render_schema(), (
        "specs/stack.schema.json is stale: run `python -m composer.config.schema`"
    )
