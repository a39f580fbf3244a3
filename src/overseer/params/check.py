"""Checking params against the schema: problems as key-path lines, YAML with line numbers, data paths."""

from __future__ import annotations

import difflib
import glob
import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    TypeAdapter,
    ValidationError,
)

from overseer.errors import InputError
from overseer.params.schema import ParamsFile
from overseer.params.types import _show, _yaml_number

PARAMS_FILE = "params.yaml"

# --- checking ----------------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """The type inside ``Annotated[...]`` and ``X | None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            members = [a for a in get_args(annotation) if a is not NoneType]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field(model: type[BaseModel], key: str) -> Any:
    """The annotation of ``model``'s field called ``key`` in params.yaml (aliases included)."""
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            return info.annotation
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _type_at(root: Any, path: tuple[Any, ...]) -> Any:
    """The schema type of the value at ``path`` under ``root`` (None: no such key in the schema)."""
    annotation = root
    for key in path:
        annotation = _unwrap(annotation)
        if _is_model(annotation):
            annotation = _field(annotation, str(key))
            if annotation is None:
                return None
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        else:
            return None
    return annotation


@cache
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _bound(value: Any) -> str:
    """A range bound as the schema spells it (``ge=1`` arrives as 1.0 for a float field)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return _show(value)


_MESSAGES = {
    "int_type": "must be a whole number, got {got}",
    "float_type": "must be a number, got {got}",
    "bool_type": "must be true or false, got {got}",
    "string_type": "must be a string, got {got}",
    "list_type": "must be a list, got {got}",
    "dict_type": "must be a mapping, got {got}",
    "model_type": "must be a mapping, got {got}",
    "model_attributes_type": "must be a mapping, got {got}",
    "finite_number": "must be a finite number, got {got}",
    "string_too_short": "must not be empty",
}


def error_path(error: Mapping[str, Any]) -> tuple[Any, ...]:
    """The key path of one pydantic error (a model validator's ``at`` included)."""
    loc, ctx = tuple(error["loc"]), error.get("ctx") or {}
    return (*loc, ctx["at"]) if "at" in ctx else loc


def describe(error: Mapping[str, Any], root: Any) -> str:
    """What one pydantic error of a value of type ``root`` says is wrong and what is allowed (no key path)."""
    loc, kind, ctx = error_path(error), error["type"], error.get("ctx") or {}
    got = _show(error.get("input"))
    if kind == "missing":
        return "missing key"
    if kind == "extra_forbidden":
        parent = _unwrap(_type_at(root, loc[:-1]))
        keys = _keys(parent) if _is_model(parent) else []
        close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(keys)}"
        return f"unknown key; {hint}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op, bound = (
            {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind],
            next(iter(ctx.values())),
        )
        value = error.get("input")
        return f"must be {op} {_bound(bound)}, got {_show(_yaml_number(value))}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        close = difflib.get_close_matches(str(error.get("input")), choices, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close and close[0] != error.get("input") else ""
        return f"must be one of {' | '.join(choices)}, got {got}{hint}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s), got {ctx.get('actual_length')}"
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(got=got)
    return str(error["msg"])


def _problem(error: Mapping[str, Any], root: Any, base: tuple[str, ...]) -> str:
    """One line for one pydantic error: the key path under ``base``, and what is allowed."""
    where = _dotted((*base, *error_path(error))) or "params"
    if error["type"] == "extra_forbidden":
        from overseer.settings import moved_setting  # settings imports this package: import it late

        moved = moved_setting(where, error.get("input"))
        if moved:
            return f"{where}: {moved}"
    return f"{where}: {describe(error, root)}"


def problems(name_path: tuple[str, ...], section: Any, *, partial: bool = False) -> list[str]:
    """Every problem of the value ``section`` at ``name_path`` in params.yaml, one line each (empty: fine).

    ``partial``: a key left out is no problem (only the keys present are judged).
    """
    annotation = _type_at(ParamsFile, name_path)
    if annotation is None:
        parent = _unwrap(_type_at(ParamsFile, name_path[:-1]))
        keys = _keys(parent) if _is_model(parent) else []
        close = difflib.get_close_matches(str(name_path[-1]), keys, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"known sections: {', '.join(keys)}"
        return [f"{_dotted(name_path)}: unknown params section; {hint}"]
    try:
        _adapter(annotation).validate_python(section)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not (partial and e["type"] in ("missing", "missing_when"))]
        return [_problem(e, annotation, name_path) for e in errors]
    return []


def _raise(lines: list[str], source: str | os.PathLike) -> None:
    if lines:
        name = os.fspath(source)
        raise InputError("\n".join([lines[0], *(f"{name}: {line}" for line in lines[1:])]), path=source)


def check_section(
    name_path: tuple[str, ...], section: Any, *, source: str | os.PathLike = PARAMS_FILE, partial: bool = False
) -> Any:
    """``section`` (the value at ``name_path`` of params.yaml, e.g. ``("train_rf",)``), unchanged, when it
    is valid; else an InputError listing every problem, one line each, with its key path."""
    _raise(problems(tuple(name_path), section, partial=partial), source)
    return section


# --- reading -------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error (DVC refuses it too)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (the first one would be ignored)", key_node.start_mark
                )
            seen.add(key)
        except TypeError:  # an unhashable key: the constructor reports it
            pass
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_params(params_file: str | os.PathLike = PARAMS_FILE) -> dict[str, Any]:
    """The params file as plain data; a missing file or a YAML error is an InputError with its line."""
    return read_yaml_mapping(params_file, "params file", "a mapping of sections (ingest, train_rf, ...)")


def read_yaml_mapping(file: str | os.PathLike, what: str, mapping: str) -> dict[str, Any]:
    """A YAML file that holds one mapping (``mapping`` says which, for the error), as plain data; an
    empty file is ``{}``; an unreadable file, a YAML error or a duplicate key is an InputError with its line."""
    path = Path(file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read the {what} ({exc.strerror or exc})", path=path) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"{path}, line {mark.line + 1} column {mark.column + 1}" if mark is not None else str(path)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start is not None and mark is not None and start.line != mark.line:
            problem += f" ({context} that starts on line {start.line + 1})"
        error = InputError(f"{where}: {problem}")
        error.path = path
        raise error from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"must be {mapping}, got {_show(data)}", path=path)
    return data


def load_tuning_params(params_file: str | os.PathLike, model: str, section: str) -> dict[str, Any]:
    """params.yaml for ``overseer tune <model>``: read, with ``tune.<model>`` and the tuned ``section``
    checked (the keys present; the search space itself is tuning/space.py's to check)."""
    params = read_params(params_file)
    lines = []
    if isinstance(params.get(section), Mapping):
        lines += problems((section,), params[section], partial=True)
    settings = params.get("tune", {}).get(model) if isinstance(params.get("tune"), Mapping) else None
    if settings is not None:
        lines += problems(("tune", model), settings, partial=True)
    _raise(lines, params_file)
    return params


# --- the whole file, and the data it points at ------------------------------------------------------------

WEIGHTS_KEYWORDS = ("imagenet", "none", "null", "random", "")  # trackbed.model.build_backbone


def _exists(text: str, base: Path, *, pattern: bool = False) -> bool:
    path = Path(text) if Path(text).is_absolute() else base / text
    if path.exists():
        return True
    return pattern and bool(glob.glob(os.fspath(path)))


def data_problems(params: Mapping[str, Any], base: str | os.PathLike = ".") -> list[str]:
    """The data sources params.yaml names that do not exist (paths relative to ``base``, the repository root)."""
    base = Path(base)
    found: list[str] = []

    def need(where: str, value: Any, what: str, *, pattern: bool = False, hint: str = "") -> None:
        if isinstance(value, str) and value and not _exists(value, base, pattern=pattern):
            found.append(f"{where}: no {what} at {value}{hint}")

    def get(*keys: str) -> Any:
        node: Any = params
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        return node

    trackbed = get("ingest", "trackbed")
    if isinstance(trackbed, Mapping) and trackbed.get("source", "default") != "default":
        need("ingest.trackbed.source", trackbed.get("source"), "image folder or TFRecord file(s)", pattern=True)
        need("ingest.trackbed.eval_source", trackbed.get("eval_source"), "held-out images or TFRecords", pattern=True)
    seismic = get("ingest", "seismic")
    if isinstance(seismic, Mapping) and seismic.get("source") != "default":
        volumes = seismic.get("volumes")
        for name, path in volumes.items() if isinstance(volumes, Mapping) else ():
            need(f"ingest.seismic.volumes.{name}", path, "volume")
        need("ingest.seismic.amplitude", seismic.get("amplitude"), "amplitude volume")
        need("ingest.seismic.picks", seismic.get("picks"), "picks file or folder")
        need("ingest.seismic.well_logs", seismic.get("well_logs"), "well-log table")
    engraving = get("ingest", "engraving")
    if isinstance(engraving, Mapping) and engraving.get("source", "default") != "default":
        need("ingest.engraving.source", engraving.get("source"), "score folder")
    if isinstance(engraving, Mapping):  # a fixed test corpus also beside the default training scores
        need("ingest.engraving.test_source", engraving.get("test_source"), "test score folder")
    weights = get("train_cnn", "weights")
    if isinstance(weights, str) and weights.lower() not in WEIGHTS_KEYWORDS and weights != "imagenet":
        need("train_cnn.weights", weights, "weights file", hint=" (imagenet, none or the path of a weights file)")
    return found


def check_params_file(params_file: str | os.PathLike = PARAMS_FILE) -> int:
    """Check every section of the params file and the data it points at, running nothing; return the
    number of sections. Every problem is one line of one InputError."""
    params = read_params(params_file)
    lines = problems((), params)
    lines += data_problems(params, Path(params_file).resolve().parent)
    _raise(lines, params_file)
    return len(params)
