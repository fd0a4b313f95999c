"""Turns model validation errors into problems that name the file, line, key and a fix."""

from __future__ import annotations

import difflib
import json
import types as pytypes
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from composer.config.yamlio import locate
from composer.errors import Problem, format_key_path

__all__ = ["problems_from", "suggest"]


def suggest(word: str, candidates: typing.Iterable[str]) -> str | None:
    """'did you mean …?' for a misspelt key, or None when nothing is close."""
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def problems_from(exc: ValidationError, root_model: type[BaseModel], raw: Any) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        problems.append(
            Problem(
                _message(error, root_model),
                format_key_path(loc),
                locate(raw, loc, key=error["type"] == "extra_forbidden"),
                _hint(error, root_model),
            )
        )
    return problems


def _message(error: Any, root_model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "this key is required"
    message = str(error["msg"])
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "assertion_error":
        return message.removeprefix("Assertion failed, ")
    return f"{_lower_first(message)}, got {_show(error.get('input'))}"


def _hint(error: Any, root_model: type[BaseModel]) -> str | None:
    if error["type"] != "extra_forbidden":
        return None
    loc = tuple(error["loc"])
    model = _model_at(root_model, loc[:-1])
    if model is None:
        return None
    keys = [field.alias or name for name, field in model.model_fields.items() if not field.exclude]
    return suggest(str(loc[-1]), keys)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the value at `loc` under `model`, if there is one."""
    current: Any = model
    for step in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (f for n, f in current.model_fields.items() if (f.alias or n) == step), None
            )
            if field is None:
                return None
            current = field.annotation
        else:
            args = typing.get_args(current)
            origin = typing.get_origin(current)
            if origin is dict and args:
                current = args[1]
            elif origin is list and args:
                current = args[0]
            else:
                return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and `X | None` down to X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, pytypes.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
