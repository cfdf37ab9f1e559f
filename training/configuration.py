"""YAML config files → the config dataclasses of the trainers, with one-line errors.

Owns reading a YAML file, building (nested) dataclasses from it with type checks, and
the message a user sees for a bad file: ``FILE: stages[1].rollout: unknown key
'max_turn' (known: max_turns, ...)``. Strings may hold ``{output_dir}``, replaced by the
run's output folder. Must not know what any field means.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file is malformed; the message is one line naming the file and the key."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    return raw


def _child(where: str, name: str) -> str:
    """The location of key ``name`` under ``where`` (``FILE:`` at the top of a file)."""
    return f"{where} {name}" if where.endswith(":") else f"{where}.{name}"


def _at(where: str) -> str:
    return where.rstrip(":")


def _describe(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def _convert(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return build(kind, value, where)  # type: ignore[arg-type]
    if origin in (list, tuple, typing.Sequence) or kind in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(kind)
        item = args[0] if args else Any
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) or kind is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)  # YAML reads 5e-7 as a string
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            allowed = ", ".join(map(str, typing.get_args(kind)))
            raise ConfigError(f"{where}: {value!r} is not one of {allowed}")
        return value
    if isinstance(kind, type) and not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {_describe(kind)}, got {value!r}")
    return value


def build(cls: type[T], raw: Mapping[str, Any], where: str = "config:") -> T:
    """An instance of dataclass ``cls`` from a mapping; unknown or missing keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in raw if k not in fields]
    if unknown:
        known = ", ".join(fields)
        raise ConfigError(f"{_at(where)}: unknown key {unknown[0]!r} (known: {known})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in raw:
            values[name] = _convert(raw[name], hints[name], _child(where, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_at(where)}: missing required key {name!r}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_at(where)}: {exc}") from None


def substitute(value: Any, **names: str) -> Any:
    """Replace ``{name}`` placeholders in every string of a nested structure."""
    if isinstance(value, str):
        for name, text in names.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, list):
        return [substitute(v, **names) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, **names) for k, v in value.items()}
    return value


def load_config(cls: type[T], path: str | Path, **overrides: Any) -> T:
    """Read ``path`` into ``cls``; ``overrides`` replace top-level keys (None ones are ignored)."""
    raw = load_yaml(path)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    output_dir = str(raw.get("output_dir", ""))
    raw = substitute(raw, output_dir=output_dir)
    return build(cls, raw, f"{path}:")
