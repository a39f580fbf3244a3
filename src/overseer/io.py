"""Atomic output: every file or folder is written under a temporary name, then renamed.

A stage that fails half-way therefore never leaves a half-written output behind, and the temporaries
of a writer that was killed outright (SIGKILL, power loss) are removed by the next writer of the same
output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(target: Path, kind: str = "") -> str:
    """``.<name>.<kind>tmp<pid>-``: the owner's pid in the name lets a later run tell our stale temps apart."""
    return f".{target.name}.{kind}tmp{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Delete the temporaries a killed writer of ``target`` left beside it; return what was removed.

    Only names this module makes (``.<name>.[old.]tmp<pid>-*``) whose process is gone on this host
    are touched, so a live concurrent writer's temporary survives.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:old\.)?tmp(\d+)-")
    removed = []
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` keeps an extension on the temporary name for writers that infer format from it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=suffix or target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it replaces ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=_temp_prefix(target, "old."), dir=target.parent))
            os.replace(target, trash / target.name)
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at ``path`` (our own outputs: reports, configs)."""
    return json.loads(Path(path).read_text())


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_artifact(path: str | os.PathLike, obj: Any) -> Path:
    """Write one computed artifact atomically, by what it is: text (``str``; CSV tables arrive as
    the text of ``DataFrame.to_csv()``), ``bytes``, JSON (``dict``/``list``) or a matplotlib figure
    (PNG at 110 dpi, closed afterwards)."""
    target = Path(path)
    if isinstance(obj, str):
        return write_text(target, obj)
    if isinstance(obj, dict | list):
        return write_json(target, obj)
    with atomic_file(target) as tmp:
        if isinstance(obj, bytes):
            tmp.write_bytes(obj)
        elif hasattr(obj, "savefig"):
            import matplotlib.pyplot as plt

            obj.tight_layout()
            obj.savefig(tmp, dpi=110, format="png")
            plt.close(obj)
        else:
            raise TypeError(f"{target.name}: cannot write a {type(obj).__name__} artifact")
    return target


def write_artifacts(folder: str | os.PathLike, artifacts: Mapping[str, Any]) -> dict[str, Path]:
    """Write every ``{file name: artifact}`` of a library result into ``folder`` (see ``write_artifact``)."""
    return {name: write_artifact(Path(folder) / name, obj) for name, obj in artifacts.items()}


# Values that differ on every run with identical results (timings, cache state, registry numbers):
# they go to the MLflow run and to ``reports/runtime/`` (git-ignored), never into the files DVC and
# git track, so that re-running a stage on the same inputs leaves those files as they were.
RUN_TIME_KEYS = ("cache", "registered_model_version")  # whole keys
RUN_TIME_PATTERN = re.compile(r"^seconds(_\w+)?$|_seconds$|_per_second$|_per_s$")  # timings and rates
RUN_TIME_DIR = Path("reports/runtime")


def is_run_time(key: object) -> bool:
    """Whether ``key`` names a run-time value (see ``RUN_TIME_KEYS``)."""
    return isinstance(key, str) and (key in RUN_TIME_KEYS or RUN_TIME_PATTERN.search(key) is not None)


def split_run_time(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` as (tracked, run-time): run-time keys taken out at any depth (``seconds_fit``,
    ``prediction.voxels_per_second``); the run-time part keeps their dotted paths."""
    tracked: dict[str, Any] = {}
    run_time: dict[str, Any] = {}
    for key, value in values.items():
        if is_run_time(key):
            run_time[key] = value
        elif isinstance(value, Mapping):
            inner, inner_run_time = split_run_time(value)
            tracked[key] = inner
            run_time.update({f"{key}.{k}": v for k, v in inner_run_time.items()})
        else:
            tracked[key] = value
    return tracked, run_time


def numbers_only(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without its text: what a DVC metrics file holds (numbers and booleans, nested as they
    are; lists too, which DVC ignores). The whole summary, words included, goes beside it (``summary.json``)."""
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            inner = numbers_only(value)
            if inner:
                kept[key] = inner
        elif not isinstance(value, str) and value is not None:
            kept[key] = value
    return kept


def write_summary(folder: str | os.PathLike, summary: Mapping[str, Any]) -> None:
    """A stage's summary as ``folder/summary.json`` (everything) and ``folder/metrics.json`` (its numbers:
    :func:`numbers_only`), each atomically."""
    write_json(Path(folder) / "summary.json", dict(summary))
    write_json(Path(folder) / "metrics.json", numbers_only(summary))


def write_run_time(stage: str, values: Mapping[str, Any]) -> Path:
    """Write a stage's run-time values to ``reports/runtime/<stage>.json`` (git-ignored, not a DVC output)."""
    return write_json(RUN_TIME_DIR / f"{stage}.json", dict(values))


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, paths: the types our reports carry
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
