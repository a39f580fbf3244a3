"""Search spaces declared in params.yaml (``tune.<model>.space``), checked before any trial runs.

A space maps a dotted params path to a range or a list of choices::

    tune:
      rf:
        space:
          train_rf.max_depth: {type: int, low: 4, high: 32, log: true}
          train_rf.max_features: {type: categorical, choices: [sqrt, log2, 0.5]}

The first segment of every path must be the stage section the model trains from (``train_rf``
for ``rf``), and the path must exist in params.yaml, so that a trial's values are exactly what
``dvc repro`` trains once they are written back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from overseer.errors import InputError

KINDS = ("float", "int", "categorical")
SCALAR_TYPES = (bool, int, float, str, type(None))
# params a study cannot score: every value of theirs would give the same objective
UNSCORED = {
    "train_rf.smooth.window": (
        "the per-well smoothing filter acts on predictions after the CV score the rf study optimises "
        "(train_rf's val_macro_f1 is before it too), so every value would score the same; leave it auto "
        "(train_rf chooses it on out-of-fold predictions) or set a number"
    ),
}


@dataclass(frozen=True)
class Dimension:
    """One tuned parameter: a dotted params path and its range (float/int) or choices (categorical)."""

    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A plain description, stored with the study so a changed space is noticed on resume."""
        if self.kind == "categorical":
            return {"type": self.kind, "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out


def get_path(params: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of nested params; KeyError names the missing segment."""
    node: Any = params
    for i, key in enumerate(path.split(".")):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(".".join(path.split(".")[: i + 1]))
        node = node[key]
    return node


def set_path(params: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at a dotted path of nested params (every segment but the last must exist)."""
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value


def _number(spec: Mapping[str, Any], key: str, where: str) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return value


def parse_dimension(path: str, spec: Any, where: str) -> Dimension:
    """Check one entry of a space; every mistake is an InputError naming the entry."""
    where = f"{where}.{path}"
    if not isinstance(spec, Mapping):
        raise InputError(f"{where}: expected a mapping like {{type: float, low: ..., high: ...}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in KINDS:
        raise InputError(f"{where}: 'type' must be one of {list(KINDS)}, got {kind!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise InputError(f"{where}: 'choices' must be a non-empty list, got {choices!r}")
        bad = [c for c in choices if not isinstance(c, SCALAR_TYPES)]
        if bad:
            raise InputError(f"{where}: choices must be numbers, strings, booleans or null; got {bad!r}")
        return Dimension(path, kind, choices=tuple(choices))
    low, high = _number(spec, "low", where), _number(spec, "high", where)
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise InputError(f"{where}: an int range needs integer bounds, got low={low!r} high={high!r}")
    if not low < high:
        raise InputError(f"{where}: empty range, low ({low}) must be below high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise InputError(f"{where}: 'log' must be true or false, got {log!r}")
    if log and low <= 0:
        raise InputError(f"{where}: a log-scale range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and (_number(spec, "step", where) <= 0 or log):
        raise InputError(f"{where}: 'step' must be positive and cannot be combined with log: true")
    unknown = set(spec) - {"type", "low", "high", "log", "step"}
    if unknown:
        raise InputError(f"{where}: unknown keys {sorted(unknown)} (allowed: type, low, high, log, step)")
    if kind == "int":
        low, high = int(low), int(high)
        step = None if step is None else int(step)
    return Dimension(path, kind, float(low) if kind == "float" else low, high, log, step)


def parse_space(params: Mapping[str, Any], model: str, section: str) -> list[Dimension]:
    """The checked search space of ``model``: entries exist in ``params`` under ``section``, types match."""
    where = f"params.yaml tune.{model}.space"
    try:
        raw = get_path(params, f"tune.{model}.space")
    except KeyError as exc:
        raise InputError(f"no search space for {model!r}: add a mapping under {where}") from exc
    if not isinstance(raw, Mapping) or not raw:
        raise InputError(f"{where} must be a non-empty mapping of params paths to ranges")
    dims = []
    for path, spec in raw.items():
        if not str(path).startswith(f"{section}."):
            raise InputError(f"{where}.{path}: tuned params of {model!r} live under '{section}.'")
        if str(path) in UNSCORED:
            raise InputError(f"{where}.{path}: not tunable: {UNSCORED[str(path)]}")
        try:
            current = get_path(params, str(path))
        except KeyError as exc:
            raise InputError(f"{where}.{path}: params.yaml has no '{exc.args[0]}'") from exc
        dim = parse_dimension(str(path), spec, where)
        if dim.kind != "categorical" and not (current is None or isinstance(current, int | float)):
            raise InputError(f"{where}.{path}: a numeric range for a params value {current!r} that is not a number")
        dims.append(dim)
    return dims


def tuned_space(params: Mapping[str, Any], model: str) -> Mapping[str, Any]:
    """``tune.<model>.space`` as written (dotted path -> spec), empty when there is none; unchecked
    (:func:`parse_space` checks it)."""
    try:
        raw = get_path(params, f"tune.{model}.space")
    except KeyError:
        return {}
    return raw if isinstance(raw, Mapping) else {}


def describe(dims: list[Dimension]) -> dict[str, Any]:
    """The space as plain data (path -> description)."""
    return {d.path: d.as_dict() for d in dims}


def suggest(trial: Any, dims: list[Dimension]) -> dict[str, Any]:
    """One value per dimension from an Optuna trial; the parameter names are the params paths."""
    values: dict[str, Any] = {}
    for d in dims:
        if d.kind == "categorical":
            values[d.path] = trial.suggest_categorical(d.path, list(d.choices))
        elif d.kind == "int":
            values[d.path] = trial.suggest_int(d.path, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
        else:
            values[d.path] = trial.suggest_float(d.path, float(d.low), float(d.high), step=d.step, log=d.log)
    return values
