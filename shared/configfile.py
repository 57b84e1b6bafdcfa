"""Loading a JSON config file into a pydantic model, with every problem located by line and field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigError, ConfigProblem
from .jsonpos import Path as JsonPath
from .jsonpos import dotted, line_for, value_lines

T = TypeVar("T", bound=BaseModel)
#: Extra checks on the raw data, run before the model: (path, message) pairs.
RawCheck = Callable[[Any], list[tuple[JsonPath, str]]]


def read_config_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, None, "(file)", exc.strerror or str(exc))]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(path, None, "(file)", f"not UTF-8: {exc.reason}")]) from None


def _allowed_fields(model: type[BaseModel], loc: JsonPath) -> str:
    """The field names valid where an unknown field `loc` was found."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return "?"
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return ", ".join(f.alias or n for n, f in current.model_fields.items())
    return "?"


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside `list[X]`, `X | None`, `dict[str, X]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def parse_config(text: str, path: Path, model: type[T], raw_checks: tuple[RawCheck, ...] = ()) -> T:
    """Validate JSON text against `model`; raise `ConfigError` with located problems."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [ConfigProblem(path, exc.lineno, "(syntax)", f"{exc.msg} at column {exc.colno}")]
        ) from None
    lines = value_lines(text)
    problems = [
        ConfigProblem(path, line_for(lines, loc), dotted(loc), msg)
        for check in raw_checks for loc, msg in check(data)
    ]
    reported = {p.field for p in problems}
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc: JsonPath = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown field (allowed: {_allowed_fields(model, loc)})"
            if dotted(loc) in reported and msg.startswith("duplicate"):
                continue
            problems.append(ConfigProblem(path, line_for(lines, loc), dotted(loc), msg))
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.field))
        raise ConfigError(problems)
    return result


def load_config(path: Path, model: type[T], raw_checks: tuple[RawCheck, ...] = ()) -> T:
    return parse_config(read_config_text(path), path, model, raw_checks)
