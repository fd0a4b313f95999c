"""The JSON Schema of a stack file, generated from the models.

Run `python -m composer.config.schema` to rewrite specs/stack.schema.json; a test fails when the
committed file differs from what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from composer.config.project import Project

__all__ = ["SCHEMA_PATH", "render_schema", "stack_schema"]

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "specs" / "stack.schema.json"


def stack_schema() -> dict[str, Any]:
    """The schema of what a user writes: the Project model plus the keys the loader consumes
    (`version`, `include`, a service's `extends`) and with `name` optional."""
    schema = Project.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "composer stack file"
    schema["required"] = []
    props = schema["properties"]
    props["version"] = {"type": "string", "deprecated": True, "description": "Obsolete; ignored."}
    props["include"] = {
        "type": "array",
        "description": "Other stack files whose resources join this one.",
        "items": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {
                        "path": {
                            "anyOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}},
                            ]
                        },
                        "project_directory": {"type": "string"},
                        "env_file": {
                            "anyOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}},
                            ]
                        },
                    },
                    "required": ["path"],
                    "additionalProperties": False,
                },
            ]
        },
    }
    service = schema["$defs"]["Service"]
    for key, short in (
        ("depends_on", {"type": "array", "items": {"type": "string"}}),
        ("networks", {"type": "array", "items": {"type": "string"}}),
        ("env_file", {"type": "string"}),
    ):
        service["properties"][key] = {"anyOf": [short, service["properties"][key]]}
    service["properties"]["extends"] = {
        "description": "A service (in this file or `file`) this one is based on.",
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {"service": {"type": "string"}, "file": {"type": "string"}},
                "required": ["service"],
                "additionalProperties": False,
            },
        ],
    }
    return schema


def render_schema() -> str:
    return json.dumps(stack_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if SCHEMA_PATH.read_text() == render_schema() else 1)
    SCHEMA_PATH.write_text(render_schema())
    print(f"wrote {SCHEMA_PATH}")
