"""Run-time settings: how a stage runs on this machine, never what it computes.

A progress bar, a thread count, the chunk size of volume prediction or the folder of the parse
cache cannot change a stage's results, so they are not params: DVC hashes every params key a
stage declares, and switching a progress bar off would re-train the GNN. Each setting is read,
first found wins, from

1. its environment variable (``OVERSEER_PROGRESS=0 dvc repro``; an empty variable counts as unset),
2. ``overseer.local.yaml`` at the repository root: untracked (git-ignored), no DVC dependency, one
   ``key: value`` per setting; found from DVC's temporary experiment workspaces too,
3. its default: the value params.yaml held before the setting moved here.

Each setting, as ``key`` in the local file / variable (default; the params key it replaced):

- ``progress`` / ``OVERSEER_PROGRESS`` (true; ``train_gnn.progress``): train_gnn's progress bar over epochs
  and select_attributes' bar over combinations
- ``torch_threads`` / ``OVERSEER_TORCH_THREADS`` (1; ``train_gnn.threads``): torch CPU threads while
  train_gnn trains, 0: torch's own (on two shared cores one thread is fastest, see benchmarks/)
- ``n_jobs`` / ``OVERSEER_N_JOBS`` (2; ``train_rf.n_jobs``): train_rf's forest threads in cross-validation,
  the final fit and the volume prediction, evaluate@rf's CV, and select_attributes' worker processes; -1: all cores (the
  saved model does not record it; the selection's scores do not depend on it)
- ``chunk_voxels`` / ``OVERSEER_CHUNK_VOXELS`` (2000000; ``train_rf.chunk_voxels``): voxels per chunk of
  train_rf's volume prediction: bounded memory for volumes larger than RAM
- ``cache_dir`` / ``OVERSEER_CACHE_DIR`` (.cache/engraving; ``ingest.engraving.cache_dir``): the parse
  cache of ingest@engraving, relative to the repository root; none: no cache
- ``tf_strategy`` / ``OVERSEER_TF_STRATEGY`` (auto; never a param): the ``tf.distribute`` strategy of
  train_cnn (:mod:`overseer.trackbed.distribute`): auto (mirrored over two or more GPUs, else
  default) | default | mirrored

In a variable, a boolean is 1/0 (true/false, yes/no, on/off) and ``none`` (or ``null``) is null.
Values are checked like params (:mod:`overseer.params`): every problem is one line of one
:class:`~overseer.errors.InputError` (exit 2 from a stage), naming the variable, or the file and
key, and what is allowed. A params file that still sets one of the moved keys is refused with the
setting that replaced it (:func:`moved_setting`). The stages log the settings they use as tags of
their MLflow run (:meth:`Settings.tags`), never as params.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, PrivateAttr, ValidationError

from overseer.errors import InputError
from overseer.params.check import describe, error_path, read_yaml_mapping
from overseer.params.types import Jobs, NonNegativeInt, PathText, PositiveInt, Section, _show
from overseer.repo import repo_root

log = logging.getLogger(__name__)

LOCAL_FILE = "overseer.local.yaml"
ENV_PREFIX = "OVERSEER_"
#: variables read elsewhere, not settings: the MLflow pipeline id (``overseer.lineage``) and the torchrun
#: arguments of train_gnn (``overseer.engraving.distributed``)
OTHER_VARIABLES = ("OVERSEER_PIPELINE_ID", "OVERSEER_TORCHRUN")


@dataclass(frozen=True)
class Setting:
    """One run-time setting: its key in the local file, its variable and the params key it replaced."""

    key: str
    env: str
    moved_from: str | None  # None: a setting from the start
    kind: str  # how a variable's text reads: bool | int | jobs (int or none) | path (text or none) | word


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        Setting("progress", "OVERSEER_PROGRESS", "train_gnn.progress", "bool"),
        Setting("torch_threads", "OVERSEER_TORCH_THREADS", "train_gnn.threads", "int"),
        Setting("n_jobs", "OVERSEER_N_JOBS", "train_rf.n_jobs", "jobs"),
        Setting("chunk_voxels", "OVERSEER_CHUNK_VOXELS", "train_rf.chunk_voxels", "int"),
        Setting("cache_dir", "OVERSEER_CACHE_DIR", "ingest.engraving.cache_dir", "path"),
        Setting("tf_strategy", "OVERSEER_TF_STRATEGY", None, "word"),
    )
}


class Settings(Section):
    """The settings a run uses; :func:`load_settings` reads them. The defaults are params.yaml's old values."""

    model_config = ConfigDict(frozen=True)

    progress: bool = True
    torch_threads: NonNegativeInt = 1  # 0: torch's own setting
    n_jobs: Jobs = 2  # a whole number other than 0 (-1: all cores) or null (1)
    chunk_voxels: PositiveInt = 2_000_000
    cache_dir: PathText | None = ".cache/engraving"  # relative to the repository root; null: no cache
    tf_strategy: Literal["auto", "default", "mirrored"] = "auto"

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def source(self, key: str) -> str:
        """Where ``key``'s value came from: its variable, the local file's path, or ``default``."""
        return self._sources.get(key, "default")

    def tags(self, *keys: str) -> dict[str, str]:
        """MLflow tags of the settings ``keys``: ``setting.<key>`` (the value) and ``setting.<key>.from``."""
        out: dict[str, str] = {}
        for key in keys:
            out[f"setting.{key}"] = _text(getattr(self, key))
            out[f"setting.{key}.from"] = self.source(key)
        return out


_TRUE, _FALSE, _NONE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}, {"none", "null"}


def _text(value: Any) -> str:
    """A value as YAML writes it (``true``, ``null``, ``.cache/engraving``)."""
    return _show(value) if value is None or isinstance(value, bool) else str(value)


def _env_text(value: Any) -> str:
    """A value as its variable spells it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return "none" if value is None else str(value)


def _from_env(setting: Setting, text: str) -> tuple[Any, str | None]:
    """(value, None) for a variable's text, or (None, what is wrong)."""
    word = text.strip()
    lower = word.lower()
    if setting.kind == "bool":
        if lower in _TRUE | _FALSE:
            return lower in _TRUE, None
        return None, f"must be 1 or 0 (true/false, yes/no, on/off), got {text!r}"
    if setting.kind == "path":
        return (None if lower in _NONE else word), None
    if setting.kind == "word":
        return lower, None
    if setting.kind == "jobs" and lower in _NONE:
        return None, None
    try:
        return int(word), None
    except ValueError:
        allowed = "a whole number" + (" or none" if setting.kind == "jobs" else "")
        return None, f"must be {allowed}, got {text!r}"


def _validate(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[tuple[Any, ...], str]]]:
    """The valid entries of ``values`` and (key path, what is wrong) per problem."""
    try:
        Settings.model_validate(dict(values))
    except ValidationError as exc:
        found = [(error_path(e), describe(e, Settings)) for e in exc.errors()]
        bad = {path[0] for path, _ in found if path}
        return {k: v for k, v in values.items() if k not in bad}, found
    return dict(values), []


def local_settings_file(root: str | os.PathLike | None = None) -> Path:
    """``overseer.local.yaml`` at the repository root (also from DVC's temporary experiment workspaces)."""
    return repo_root(root) / LOCAL_FILE


def load_settings(environ: Mapping[str, str] | None = None, file: str | os.PathLike | None = None) -> Settings:
    """The run-time settings: each from its variable in ``environ`` (default ``os.environ``), else
    from ``file`` (default :func:`local_settings_file`; a missing file is no problem), else its default.

    Every problem of the variables and the file is one line of one InputError.
    """
    environ = os.environ if environ is None else environ
    path = local_settings_file() if file is None else Path(file)
    lines: list[str] = []

    from_env: dict[str, Any] = {}
    for setting in SETTINGS.values():
        text = environ.get(setting.env)
        if text is None or not text.strip():
            continue
        value, problem = _from_env(setting, text)
        if problem:
            lines.append(f"{setting.env}: {problem}")
        else:
            from_env[setting.key] = value
    from_env, found = _validate(from_env)
    lines += [f"{SETTINGS[p[0]].env}: {message}" for p, message in found]
    _warn_unknown_variables(environ)

    from_file: dict[str, Any] = {}
    if path.is_file():
        from_file, found = _validate(
            read_yaml_mapping(path, "local settings file", "a mapping of settings (key: value)")
        )
        lines += [f"{path}: {'.'.join(map(str, p)) or 'settings'}: {message}" for p, message in found]
    if lines:
        error = InputError("\n".join(lines))
        error.path = path if any(line.startswith(f"{path}:") for line in lines) else None
        raise error

    settings = Settings.model_validate({**from_file, **from_env})
    settings._sources.update({k: str(path) for k in from_file})
    settings._sources.update({k: SETTINGS[k].env for k in from_env})
    return settings


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    names = [s.env for s in SETTINGS.values()]
    known = {*names, *OTHER_VARIABLES}
    for name in sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known):
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"the settings are {', '.join(names)}"
        log.warning("%s is no Overseer setting and is ignored; %s", name, hint)


def moved_setting(param: str, value: Any) -> str | None:
    """What to tell a params file that sets ``param`` (a dotted key path, e.g. ``train_gnn.progress``)
    to ``value`` when that key is a run-time setting now; None for any other key."""
    setting = next((s for s in SETTINGS.values() if s.moved_from is not None and s.moved_from == param), None)
    if setting is None:
        return None
    head = "is a run-time setting now, not a param (it cannot change results): remove it from params.yaml"
    where = f"{setting.env} or {setting.key} in {LOCAL_FILE}"
    default = Settings.model_fields[setting.key].default
    if _validate({setting.key: value})[1]:
        return f"{head} and set {where}"
    if value == default and isinstance(value, bool) == isinstance(default, bool):
        return f"{head} ({_text(value)} is the default; to change it, set {where})"
    return (
        f"{head}; to keep {_text(value)}, set {setting.env}={_env_text(value)} "
        f"or {setting.key}: {_text(value)} in {LOCAL_FILE}"
    )
