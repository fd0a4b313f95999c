"""The base of every stack model and the annotated value types they share."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue, SkipJsonSchema
from pydantic_core import CoreSchema

from composer.config import types

__all__ = [
    "EXTENSIONS",
    "Address",
    "Bytes",
    "Command",
    "Duration",
    "Mapping",
    "NullableMapping",
    "Spec",
    "StrList",
    "Subnet",
    "Text",
]

EXTENSIONS = "x-*"
"""Alias under which a model keeps its `x-` keys: no user key can reach it (x- keys are moved)."""


class Spec(BaseModel):
    """A part of a stack file: unknown keys are errors, `x-` keys are kept aside, values frozen."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        coerce_numbers_to_str=True,
        populate_by_name=False,
        json_schema_extra={"patternProperties": {"^x-": {}}},
    )

    extensions: SkipJsonSchema[dict[str, Any]] = Field(
        default_factory=dict, alias=EXTENSIONS, exclude=True
    )

    short_syntax: ClassVar[str | None] = None
    """Name of the field a bare scalar stands for (`build: ./dir` means `context: ./dir`)."""

    short_forms: ClassVar[tuple[dict[str, Any], ...]] = ()
    """JSON Schemas of the short syntaxes a user may write instead of the mapping."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        forms = cls.short_forms or (({"type": "string"},) if cls.short_syntax else ())
        return {"anyOf": [*forms, schema]} if forms else schema

    @model_validator(mode="before")
    @classmethod
    def _extensions_aside(cls, data: Any) -> Any:
        if cls.short_syntax and isinstance(data, str | int | float) and not isinstance(data, bool):
            return {cls.short_syntax: data}
        if data is None:
            return {}
        if isinstance(data, dict) and any(isinstance(k, str) and k.startswith("x-") for k in data):
            kept = {k: v for k, v in data.items() if not k.startswith("x-")}
            kept[EXTENSIONS] = {k: v for k, v in data.items() if k.startswith("x-")}
            return kept
        return data


def _schema(**schema: Any) -> WithJsonSchema:
    return WithJsonSchema(schema)


Duration = Annotated[
    float,
    BeforeValidator(types.parse_duration),
    PlainSerializer(types.format_duration, return_type=str),
    _schema(type=["string", "number"], description="A duration such as 1m30s or 500ms"),
]
Bytes = Annotated[
    int,
    BeforeValidator(types.parse_bytes),
    _schema(type=["string", "integer"], description="A size in bytes, or with a unit: 512m, 1g"),
]


def _address(value: Any) -> Any:
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
    return value


def _subnet(value: Any) -> Any:
    if isinstance(value, str):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a subnet in CIDR notation, e.g. 10.5.0.0/16"
            ) from None
    return value


Address = Annotated[str, BeforeValidator(_address)]
Subnet = Annotated[str, BeforeValidator(_subnet)]
Text = Annotated[str, BeforeValidator(types.to_str)]
"""A string that may be written as a number or boolean (`version: 3`, `value: true`)."""


def _string_or_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


StrList = Annotated[
    list[Text],
    BeforeValidator(_string_or_list),
    _schema(anyOf=[{"type": "string"}, {"type": "array", "items": {"type": "string"}}]),
]
Command = Annotated[
    list[Text],
    BeforeValidator(types.shell_words),
    _schema(
        anyOf=[{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]
    ),
]
_LIST_OR_DICT = {
    "anyOf": [
        {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        },
        {"type": "array", "items": {"type": "string"}},
    ]
}
NullableMapping = Annotated[
    dict[str, str | None], BeforeValidator(types.list_or_dict), WithJsonSchema(_LIST_OR_DICT)
]
"""`KEY=VALUE` list or map; a key without a value is kept as null (environment)."""
Mapping = Annotated[
    dict[str, str],
    BeforeValidator(lambda v: types.list_or_dict(v, allow_null=False)),
    WithJsonSchema(_LIST_OR_DICT),
]
"""`KEY=VALUE` list or map; a key without a value is the empty string (labels, sysctls)."""
