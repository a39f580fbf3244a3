"""Write a study's best trial into params.yaml, keeping comments and layout.

Each tuned value gets an end-of-line note ``tuned: study NAME trial N`` after the comment the
line already had, so ``git diff params.yaml`` shows what changed and why, and ``dvc repro``
trains it. Writing is atomic and serialised by a lock file, so several tuning workers in one
checkout never interleave. A file that already holds the best trial's values is left byte for
byte untouched: when the best trial is the baseline (nothing better than the current params was
found), or when another worker already wrote the same trial, the notes saying where the values
came from stay as they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from overseer.io import atomic_file

TUNED_NOTE = re.compile(r"\s*(\|\s*)?tuned: study \S+ trial \d+")


def _yaml() -> YAML:
    yaml = YAML()  # round-trip mode: comments, order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    # keep "null" spelled out (ruamel's round trip writes an empty value otherwise)
    yaml.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return yaml


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` for the duration of the block."""
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def note_for(study: str, trial: int) -> str:
    return f"tuned: study {study} trial {trial}"


def _annotate(parent: CommentedMap, key: str, note: str) -> None:
    """Put ``note`` at the end of the line of ``key``, after its own comment (an older note is replaced)."""
    entry = parent.ca.items.get(key)
    token = entry[2] if entry and len(entry) > 2 else None
    if token is None:
        parent.yaml_add_eol_comment(note, key, column=_comment_column(parent))
        return
    # The token holds "# own comment\n" plus any full-line comments that follow the line.
    first, newline, rest = token.value.partition("\n")
    own = TUNED_NOTE.sub("", first.lstrip().removeprefix("#").strip()).strip()
    token.value = f"# {own} | {note}" if own else f"# {note}"
    token.value += newline + rest


def _comment_column(parent: CommentedMap) -> int | None:
    """The column where the siblings' comments start, so a new note lines up with them."""
    columns = [entry[2].column for entry in parent.ca.items.values() if len(entry) > 2 and entry[2] is not None]
    return max(set(columns), key=columns.count) if columns else None


def _parent(doc: CommentedMap, path: str) -> tuple[CommentedMap, str]:
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    return node, last


def render(text: str, values: Mapping[str, Any], study: str, trial: int) -> str:
    """``text`` (a params.yaml) with ``values`` (dotted path -> value) set and annotated."""
    yaml = _yaml()
    doc = yaml.load(text)
    note = note_for(study, trial)
    for path, value in values.items():
        parent, key = _parent(doc, path)
        parent[key] = value
        _annotate(parent, key, note)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def already_written(text: str, values: Mapping[str, Any], study: str, trial: int) -> bool:
    """True when every value is in place with this study's and trial's note."""
    doc = _yaml().load(text)
    note = note_for(study, trial)
    for path, value in values.items():
        parent, key = _parent(doc, path)
        entry = parent.ca.items.get(key)
        token = entry[2] if entry and len(entry) > 2 else None
        if parent.get(key) != value or token is None or note not in token.value.partition("\n")[0]:
            return False
    return True


def holds(text: str, values: Mapping[str, Any]) -> bool:
    """True when ``text`` (a params.yaml) already sets every dotted path of ``values`` to its value."""
    doc = _yaml().load(text)
    for path, value in values.items():
        parent, key = _parent(doc, path)
        current = parent.get(key)
        if current != value or isinstance(current, bool) != isinstance(value, bool):
            return False
    return True


def write_best(params_file: str | os.PathLike, values: Mapping[str, Any], study: str, trial: int) -> bool:
    """Write the best trial's values into ``params_file``; return False (file untouched) when it
    already holds them: a baseline that stayed best, or a trial another worker wrote."""
    path = Path(params_file)
    with locked(path):
        text = path.read_text()
        if holds(text, values):
            return False
        new = render(text, values, study, trial)
        with atomic_file(path) as tmp:
            tmp.write_text(new)
    return True
