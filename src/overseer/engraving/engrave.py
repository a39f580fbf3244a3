"""Engrave one piece (EngravingGNN paper Fig. 2): score or quantized MIDI → graph → predictions → score.

:func:`engrave` reads a score (MusicXML, MEI, kern: through the data package's reader, so the
piece is built exactly as for training) or a quantized MIDI file, builds the input graph, runs the
model's predictions (``predict_fn(piece) -> predictions``; by default the model saved in
``model_dir`` by ``train.save_model``), post-processes them (:mod:`.postprocess`) and writes
``<name>.musicxml``, ``<name>.mei`` and ``page-1.svg`` … (:mod:`.export`) into ``out_dir``.

MIDI input (:func:`piece_from_midi`) is read with mido: all tracks merged (the percussion channel
10 dropped), onsets and offsets in quarters from the file's ticks per quarter, snapped to a grid of
1/48 quarter (binary values to 64ths, triplets to 128th triplets — the grid on which every gap and
note length can be written exactly), the time signatures of the file (4/4 when it has none). Notes
crossing a barline are split into tied notes (schema docstring); a note whose length is not one
plain symbol (5/4 quarters, say; see :func:`.notation.is_single_symbol`) is split into tied
notes at beat boundaries, as rests are (:func:`.notation.notate_span`). Bad input is an
:class:`~overseer.errors.InputError` naming the file and the reason.

:func:`engrave_piece` does the same for a piece already in memory (a prepared ``.npz`` of the
test split, say).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from overseer.engraving import export, schema
from overseer.engraving import notation as nt
from overseer.engraving import postprocess as pp
from overseer.engraving.data.scores import SCORE_SUFFIXES
from overseer.errors import InputError

if TYPE_CHECKING:
    from overseer.engraving.data.scores import ScoreTable
    from overseer.engraving.model import EngravingGNN

MIDI_SUFFIXES = (".mid", ".midi")
MIDI_GRID = 48  # positions per quarter
PERCUSSION_CHANNEL = 9
PredictFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


# --- input -------------------------------------------------------------------------------------------------


def piece_from_score(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A contract piece from a score file, through the data package (the one place engrave reads scores)."""
    from overseer.engraving.data.labels import piece_from_table
    from overseer.engraving.data.scores import load_score_table

    return piece_from_table(load_score_table(path))


def read_midi(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, int, int]]]:
    """(onset, duration, pitch, time signatures [(quarter, num, den)]) of a MIDI file, in quarters on the grid."""
    import mido

    try:
        mid = mido.MidiFile(os.fspath(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(f"cannot read MIDI file ({exc})", path=path) from exc
    if mid.type == 2:
        raise InputError("MIDI type 2 (independent sequences) is not supported", path=path)
    tpq = mid.ticks_per_beat
    notes, sigs = [], []
    for track in mid.tracks:
        tick, sounding = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "time_signature":
                sigs.append((tick, msg.numerator, msg.denominator))
            elif msg.type in ("note_on", "note_off") and msg.channel != PERCUSSION_CHANNEL:
                key = (msg.channel, msg.note)
                if msg.type == "note_on" and msg.velocity > 0:
                    sounding.setdefault(key, []).append(tick)
                elif sounding.get(key):
                    notes.append((sounding[key].pop(0), tick, msg.note))
    if not notes:
        raise InputError("no notes (percussion excluded)", path=path)
    arr = np.array(notes, dtype=np.int64)
    on = np.rint(arr[:, 0] * MIDI_GRID / tpq).astype(np.int64)
    off = np.maximum(np.rint(arr[:, 1] * MIDI_GRID / tpq).astype(np.int64), on + 1)
    # one note per (onset, pitch): the longest
    order = np.lexsort((-off, arr[:, 2], on))
    keep = np.ones(order.size, dtype=bool)
    keep[1:] = (on[order][1:] != on[order][:-1]) | (arr[order][1:, 2] != arr[order][:-1, 2])
    order = order[keep]
    time_sigs = sorted({(round(t * MIDI_GRID / tpq) / MIDI_GRID, int(n), int(d)) for t, n, d in sigs})
    return on[order] / MIDI_GRID, (off[order] - on[order]) / MIDI_GRID, arr[order, 2], time_sigs


def split_unnotatable(table: ScoreTable, piece_bar_grid: Callable) -> tuple[np.ndarray, ...]:
    """Cut notes whose length is not one symbol into tied notes (beat-respecting, as rests are cut).

    Returns (onset, duration, pitch, tie_prev, tie_next) arrays of the written notes.
    """
    onset, duration, pitch = [], [], []
    tie_prev, tie_next = [], []
    single = nt.is_single_symbol(table.duration, simple=True)
    for i in range(table.onset.size):
        if single[i]:
            parts = [(float(table.onset[i]), float(table.duration[i]))]
        else:
            start = Fraction(int(np.rint(table.onset[i] * MIDI_GRID)), MIDI_GRID)
            end = start + Fraction(int(np.rint(table.duration[i] * MIDI_GRID)), MIDI_GRID)
            _, _, origin, beat = piece_bar_grid(int(table.bar[i]))
            parts = [(float(t), float(v)) for t, v, *_ in nt.notate_span(start, end, origin, beat)]
        for k, (t, v) in enumerate(parts):
            onset.append(t)
            duration.append(v)
            pitch.append(int(table.pitch[i]))
            tie_prev.append(bool(table.tie_prev[i]) if k == 0 else True)
            tie_next.append(bool(table.tie_next[i]) if k == len(parts) - 1 else True)
    return (
        np.array(onset),
        np.array(duration),
        np.array(pitch, dtype=np.int16),
        np.array(tie_prev, dtype=bool),
        np.array(tie_next, dtype=bool),
    )


def piece_from_midi(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A contract piece (no labels) from a quantized MIDI file (module docstring)."""
    from overseer.engraving.data.labels import piece_from_table
    from overseer.engraving.data.scores import table_from_arrays

    onset, duration, pitch, time_sigs = read_midi(path)
    bars = nt.bars(float((onset + duration).max()), changes=time_sigs)
    table, _ = table_from_arrays(onset, duration, pitch, *bars, split_at_barlines=True)
    grid = {"bar_start": bars[0], "bar_dur": bars[1], "ts_num": bars[2], "ts_den": bars[3]}
    onset, duration, pitch, tie_prev, tie_next = split_unnotatable(table, lambda b: nt.bar_grid(grid, b))
    table, source = table_from_arrays(onset, duration, pitch, *bars, split_at_barlines=False)
    table.tie_prev, table.tie_next = tie_prev[source], tie_next[source]
    return piece_from_table(table)


def read_piece(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A contract piece from a score or a MIDI file; an InputError for a missing or unsupported file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=path)
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return piece_from_midi(path)
    if suffix not in SCORE_SUFFIXES:
        raise InputError(
            f"not a score or MIDI file (expected one of {', '.join(SCORE_SUFFIXES + MIDI_SUFFIXES)})", path=path
        )
    return piece_from_score(path)


# --- prediction --------------------------------------------------------------------------------------------


def model_predict_fn(
    model_dir: str | os.PathLike, *, device: str | None = None, max_notes: int | None = None
) -> PredictFn:
    """``predict_fn`` of the model saved in ``model_dir`` (``train.save_model``); torch is imported here only."""
    from overseer.engraving.predict import predict_piece
    from overseer.engraving.train import load_model

    try:
        model = load_model(model_dir, device=device)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot load the engraving model ({exc})", path=model_dir) from exc

    def predict(piece: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return predict_piece(model, piece, max_notes=max_notes)

    return predict


def check_predictions(piece: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> None:
    """Raise ValueError when predictions do not fit the piece (schema: "Model predictions")."""
    n = piece["onset"].size
    for task, classes in schema.NODE_TASKS.items():
        shape = np.shape(pred.get(f"logits_{task}"))
        if shape != (n, len(classes)):
            raise ValueError(f"logits_{task}: expected shape ({n}, {len(classes)}), got {shape}")
    for kind in ("voice", "chord"):
        want = piece[f"{kind}_cand"].shape[1]
        if np.shape(pred.get(f"p_{kind}")) != (want,):
            raise ValueError(f"p_{kind}: expected shape ({want},), got {np.shape(pred.get(f'p_{kind}'))}")


# --- the whole thing -----------------------------------------------------------------------------------------


def engrave_piece(
    piece: dict[str, np.ndarray],
    predict_fn: PredictFn,
    out_dir: str | os.PathLike,
    name: str,
    *,
    formats: tuple[str, ...] = export.FORMATS,
    pages: int = 2,
    svg_options: dict | None = None,
    threshold: float = 0.5,
    min_clef_run: int = 4,
) -> dict:
    """Predict, post-process and export one piece (module docstring); returns what was written.

    The result holds the written paths (``musicxml``, ``mei``, ``svg``) and counts: notes, bars,
    rests, the most voices of one bar and staff, grace notes without a principal note (dropped),
    octave brackets and clef changes.
    """
    pred = predict_fn(piece)
    check_predictions(piece, pred)
    res = pp.postprocess(piece, pred, threshold=threshold, min_clef_run=min_clef_run)
    written = export.export_score(piece, res, out_dir, name, formats=formats, pages=pages, svg_options=svg_options)
    return {
        **written,
        "notes": int(piece["onset"].size),
        "bars": int(piece["bar_start"].size),
        "rests": int(res["rest_onset"].size),
        "max_voices": int(res["voice"].max()),
        "grace_dropped": int((res["grace_principal"] < 0).sum()),
        "octave_brackets": int(res["ottava_staff"].size),
        "clef_changes": int((res["clef_note"] >= 0).sum()),
    }


def engrave_pieces(
    model: EngravingGNN,
    named_pieces: Iterable[tuple[str, dict[str, np.ndarray]]],
    out_dir: str | os.PathLike,
    cfg: Mapping[str, Any],
) -> dict[str, dict]:
    """Engrave prepared pieces with ``model``, one folder ``out_dir/<name>`` each, options from the
    ``export.gnn`` params (``formats``, ``pages``, ``threshold``, ``min_clef_run``); returns, per
    piece, the files written and its note count."""
    from overseer.engraving.predict import predict_piece

    written = {}
    for name, piece in named_pieces:
        result = engrave_piece(
            piece, lambda p: predict_piece(model, p), Path(out_dir) / name, name,
            formats=tuple(cfg["formats"]), pages=int(cfg["pages"]),
            threshold=float(cfg["threshold"]), min_clef_run=int(cfg["min_clef_run"]),
        )  # fmt: skip
        written[name] = {"files": sorted(p.name for p in (Path(out_dir) / name).iterdir()), "notes": result["notes"]}
    return written


def engrave(
    path: str | os.PathLike,
    model_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    predict_fn: PredictFn | None = None,
    name: str | None = None,
    device: str | None = None,
    max_notes: int | None = None,
    **options: object,
) -> dict:
    """Engrave one score or MIDI file into ``out_dir`` as ``<name>.musicxml``, ``<name>.mei``, ``page-k.svg``.

    ``predict_fn`` replaces the model saved in ``model_dir`` (tests, other models); ``name``
    defaults to the file's stem; ``device``/``max_notes`` go to the model's prediction; ``options``
    (``formats``, ``pages``, ``svg_options``, ``threshold``, ``min_clef_run``) to
    :func:`engrave_piece`, whose result is returned.
    """
    piece = read_piece(path)
    if predict_fn is None:
        if model_dir is None:
            raise ValueError("engrave needs a model_dir or a predict_fn")
        predict_fn = model_predict_fn(model_dir, device=device, max_notes=max_notes)
    return engrave_piece(piece, predict_fn, out_dir, name or Path(path).stem, **options)
