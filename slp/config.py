"""YAML configs loaded into typed dataclasses, overridable with ``key=value`` (dotted for nesting).

Every entry point reads its config through :func:`load_config`, so a researcher can take any file in
``configs/`` and change one number from the command line: ``optim.lr=3e-4 model.encoder.manual.num_layers=4``.
Values are parsed as YAML scalars (``1e-4``, ``true``, ``[1, 2]``) and checked against the field types; a text
field takes the word as written (``mixed_precision=no`` is ``"no"``, not YAML's false).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not match its dataclass."""


def is_int(value: Any) -> bool:
    """An int but not a bool (YAML / JSON ``true`` is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float but not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bare_word_hint(value: Any) -> str:
    """Why a YAML file gave a boolean or null where a word was meant."""
    if isinstance(value, bool) or value is None:
        return " (YAML reads a bare yes / no / on / off / true / false / null as that: quote the word)"
    return ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {tp} ({'; '.join(errors)})")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if is_int(value):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if is_number(value):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if is_number(value):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}{_bare_word_hint(value)}")
    if typing.get_origin(tp) is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: expected one of {args}, got {value!r}"
                          f"{_bare_word_hint(value) if all(isinstance(a, str) for a in args) else ''}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and checking types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for summaries and checkpoints)."""
    return dataclasses.asdict(obj)


def _declared_type(cls: Any, parts: list[str]) -> Any:
    """The type declared for the dotted path ``parts`` below dataclass ``cls`` (through ``Optional`` and
    ``dict[str, X]`` values), or None where the path leaves the declared fields."""
    tp = cls
    for part in parts:
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            tp = members[0] if len(members) == 1 else None
        if dataclasses.is_dataclass(tp):
            tp = typing.get_type_hints(tp).get(part)
        elif typing.get_origin(tp) is dict and len(typing.get_args(tp)) == 2:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp


def _is_text(tp: Any) -> bool:
    """A field whose values are words: ``str``, a ``Literal`` of strings, or ``Optional`` of either."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return bool(members) and all(_is_text(arg) for arg in members)
    if typing.get_origin(tp) is typing.Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(tp))
    return tp is str


def _override_value(item: str, raw: str, tp: Any) -> Any:
    """The value of override ``item``: its text parsed as YAML, except for a text field (:func:`_is_text`), which
    takes the word as written: ``mixed_precision=no`` is the string ``no``, not YAML's false, and ``output=007`` keeps
    its zeros. A quoted word, a ``[list]`` or ``{mapping}`` and a ``!tag`` are still read as YAML there."""
    text = raw.strip()
    if not text:
        return ""
    if _is_text(tp) and text[0] not in "'\"[{!":
        if text in ("null", "Null", "NULL", "~") and type(None) in typing.get_args(tp):
            return None
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or " ".join(str(exc).split())
        raise ConfigError(f"override {item!r}: invalid YAML value ({problem})") from None


def apply_overrides(data: dict[str, Any], overrides: list[str], cls: type | None = None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested mapping. Values are parsed as YAML, but the fields of dataclass
    ``cls`` (when given) declared as text take their word as written (see :func:`_override_value`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _override_value(item, raw, _declared_type(cls, parts) if cls is not None else None)
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load YAML ``path`` (or the dataclass defaults) into ``cls`` with ``key=value`` overrides applied."""
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    data = apply_overrides(data, list(overrides or []), cls)
    return from_dict(cls, data, str(path or cls.__name__))
