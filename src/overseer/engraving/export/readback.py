"""The read-back check: a written score must read back, with partitura, as the part it was written from.

The notes read back (count, MIDI pitch, onset and tied duration in quarters, staff) and the number
of grace notes must equal the written part's, or :class:`ExportError` is raised and nothing (not
even an older file) is left at the target path.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import partitura
import partitura.score as ps
import verovio

from overseer.io import atomic_file

ONSET_TOL = 1 / 512  # quarters: note arrays hold float32; generic ratios of off-grid lengths are near, not exact
NoteTable = tuple[np.ndarray, int]


class ExportError(RuntimeError):
    """A written score did not read back as written (or could not be read at all)."""


def note_table(parts: list[ps.Part]) -> NoteTable:
    """Sorted (onset, tied duration, pitch, staff) rows of the non-grace notes, and the grace-note count."""
    rows = []
    n_grace = 0
    for part in parts:
        na = part.note_array(include_staff=True)
        keep = na["duration_quarter"] > 0
        rows.append(
            np.stack(
                [na["onset_quarter"][keep], na["duration_quarter"][keep], na["pitch"][keep], na["staff"][keep]], axis=1
            ).astype(np.float64)
        )
        n_grace += sum(1 for _ in part.iter_all(ps.GraceNote))
    table = np.concatenate(rows) if rows else np.zeros((0, 4))
    # sort on onsets rounded to the tolerance, so that a near-equal onset cannot reorder the rows
    key = np.round(table / ONSET_TOL) * ONSET_TOL
    return table[np.lexsort(key.T[::-1])], n_grace


def check_readback(path: str | os.PathLike, expected: NoteTable) -> None:
    """Read ``path`` with partitura; raise :class:`ExportError` unless its notes equal ``expected``."""
    verovio.enableLog(verovio.LOG_ERROR)  # partitura's MEI reader goes through verovio
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = partitura.load_score(os.fspath(path))
    except Exception as exc:  # partitura raises anything from a bad file
        raise ExportError(f"{path}: partitura cannot read the written score back ({exc})") from exc
    got, n_grace = note_table(list(score.parts))
    want, want_grace = expected
    if got.shape != want.shape:
        raise ExportError(f"{path}: read back {got.shape[0]} notes, wrote {want.shape[0]}")
    bad = ~np.isclose(got, want, rtol=1e-6, atol=ONSET_TOL).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ExportError(
            f"{path}: {int(bad.sum())} notes differ when read back, first (onset, duration, pitch, staff) "
            f"{tuple(got[k])} != {tuple(want[k])}"
        )
    if n_grace != want_grace:
        raise ExportError(f"{path}: read back {n_grace} grace notes, wrote {want_grace}")


def write_checked(path: str | os.PathLike, data: bytes, expected: NoteTable) -> Path:
    """Write ``data`` under a temporary name, check it reads back as ``expected``, then move it to ``path``."""
    path = Path(path)
    done = False
    try:
        with atomic_file(path) as tmp:
            tmp.write_bytes(data)
            try:
                check_readback(tmp, expected)
            except ExportError as exc:  # named by the file it was to be, not by its temporary name
                raise ExportError(str(exc).replace(str(tmp), str(path))) from exc
        done = True
    finally:
        if not done:
            path.unlink(missing_ok=True)  # never leave an older, unchecked score at the target
    return path
