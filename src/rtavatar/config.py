"""Config dataclasses that round-trip to YAML/JSON.

Every config in rtavatar is a (possibly nested) dataclass; `to_dict`/`from_dict` are
strict, so a typo in a YAML file is an error rather than a silently ignored key.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict (nested dataclasses become dicts, tuples become lists)."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"{type(cfg).__name__} is not a dataclass")
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, _where=where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
        non_none = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(non_none[0], value, where) if len(non_none) == 1 else value
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], _where: str = "") -> T:
    """Build `cls` from a dict; unknown keys raise ValueError naming the key."""
    if not isinstance(data, dict):
        raise ValueError(f"config{_where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - fields
    if unknown:
        raise ValueError(f"config{_where}: unknown key(s) {sorted(unknown)} for {cls.__name__}")
    kwargs = {k: _coerce(hints[k], v, f"{_where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def check_values(cfg: Any, _where: str = "") -> None:
    """Every number in a (nested) config is finite, and probabilities (`p_*`) and fractions
    (`*_fraction`) lie in [0, 1]: a ValueError naming the key otherwise."""
    import math

    for f in dataclasses.fields(cfg):
        v, key = getattr(cfg, f.name), f"{_where}.{f.name}" if _where else f.name
        if dataclasses.is_dataclass(v):
            check_values(v, key)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise ValueError(f"config: {key} = {v} is not a finite number")
            if (f.name.startswith("p_") or f.name.endswith("_fraction")) and not 0 <= v <= 1:
                raise ValueError(f"config: {key} = {v} must lie in [0, 1]")
        elif isinstance(v, (tuple, list)):
            for x in v:
                if isinstance(x, float) and not math.isfinite(x):
                    raise ValueError(f"config: {key} holds {x}, not a finite number")


def save_config(cfg: Any, path: str | Path) -> None:
    path = Path(path)
    text = json.dumps(to_dict(cfg), indent=2) if path.suffix == ".json" else yaml.safe_dump(to_dict(cfg), sort_keys=False)
    path.write_text(text)


def load_config(cls: type[T], path: str | Path) -> T:
    from rtavatar.errors import RTAvatarError

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise RTAvatarError(f"config {path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from e
    try:
        return from_dict(cls, data or {}, _where=f"[{path.name}]")
    except (TypeError, ValueError) as e:
        raise RTAvatarError(str(e)) from e
