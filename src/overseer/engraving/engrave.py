"""Engrave one piece (EngravingGNN paper Fig. 2): score or MIDI → graph → predictions → score.

:func:`engrave` reads a score (MusicXML, MEI, kern: through the data package's reader, so the
piece is built exactly as for training) or a MIDI file, builds the input graph, runs the
model's predictions (``predict_fn(piece) -> predictions``; by default the model saved in
``model_dir`` by ``train.save_model``), post-processes them (:mod:`.postprocess`) and writes
``<name>.musicxml``, ``<name>.mei`` and ``page-1.svg`` … (:mod:`.export`) into ``out_dir``.

MIDI input (:func:`read_midi`, :func:`piece_from_midi`) is read with mido: all tracks merged (the
percussion channel 10 dropped), onsets and offsets in quarters from the file's ticks per quarter,
the time signatures of the file (4/4 when it has none). Times are put on a grid of ``1/D``
quarter:

- a quantized file keeps its own grid: ``D`` is the first of 4, 8, 12, 16, 24, 48 (sixteenths,
  32nds, 32nd triplets, 64ths, 64th triplets, 128th triplets) on which every onset and offset
  lies, else every onset (offsets are then snapped to it), within one MIDI tick;
- a file whose onsets lie on none of them has performed timing: every onset and offset is snapped
  to the nearest sixteenth (``D`` = 4, or the ``grid`` asked for, one of ``GRIDS``), so no onset
  moves by more than half a grid step, except that a repeated note of one pitch never merges
  with the previous one (it takes the next grid point);
- either way a note ends no later than the next onset of its pitch (overlapping tied notes of
  one pitch would not read back) and lasts at least one grid step.

Every note read is written (its tied parts read back as one note) except notes struck at the same
onset and pitch as a longer one and note-ons with no note-off: :class:`QuantizeWarning` tells how
many notes moved and how far at most, and how many were dropped (:class:`MidiNotes`). Beats are
the file's ticks per quarter: a performance recorded without a tempo map to follow is quantized
on that clock, not on the beat a listener hears. Notes crossing a barline are split into tied
notes (schema docstring); a note whose length is not one plain symbol (5/4 quarters, say; see
:func:`.notation.is_single_symbol`) is split into tied notes at beat boundaries, as rests are
(:func:`.notation.notate_span`). Bad input is an :class:`~overseer.errors.InputError` naming the
file and the reason (not a Standard MIDI File, truncated, no notes, type 2, SMPTE timing).

Output goes through :func:`staged_output`: on failure nothing is left behind, not even an empty
folder. A score's zero-length notes are dropped (told in a :class:`ScoreWarning`); a duration no
single symbol writes (16 quarters in a cadenza bar) is written as tied symbols by post-processing.

Key signatures are smoothed over the piece (:mod:`.key_smoothing`, issue 13) with the model
folder's key change penalty: ``postprocess.json`` beside ``model.pt`` (``{"key_change_penalty": p}``,
written by export@gnn from evaluate@gnn's choice on validation pieces; :func:`model_key_change_penalty`),
or :data:`~.key_smoothing.DEFAULT_KEY_CHANGE_PENALTY` without one; a ``key_change_penalty`` option
overrides it (0: the paper's per-bar key).

:func:`engrave_piece` does the same for a piece already in memory (a prepared ``.npz`` of the
test split, say). :func:`engrave_batch` engraves many files (or folders of them) with one model:
each piece into ``<out>/<name>/`` where ``name`` comes from the file's path relative to the folder
given (or to the files' common folder), never from its stem alone, so a corpus that names every
file ``xml_score.musicxml`` gives distinct outputs; a piece that fails is skipped with its reason
(one line) and the batch goes on.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from overseer.engraving import export, schema
from overseer.engraving import notation as nt
from overseer.engraving import postprocess as pp
from overseer.engraving.data.scores import SCORE_SUFFIXES
from overseer.engraving.key_smoothing import DEFAULT_KEY_CHANGE_PENALTY
from overseer.errors import InputError

if TYPE_CHECKING:
    from overseer.engraving.data.scores import ScoreTable
    from overseer.engraving.model import EngravingGNN

MIDI_SUFFIXES = (".mid", ".midi")
MIDI_GRID = 48  # positions per quarter: every grid divides it (tied splits are computed on it)
GRIDS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 48)  # the grids a caller may ask for (divisors of MIDI_GRID)
AUTO_GRIDS = (4, 8, 12, 16, 24, 48)  # tried in this order for a quantized file: the first that holds it
PERFORMED_GRID = 4  # sixteenth notes: the grid of a file whose onsets lie on none of AUTO_GRIDS
GRID_NAMES = {
    1: "quarter notes", 2: "eighth notes", 3: "eighth-note triplets", 4: "sixteenth notes",
    6: "sixteenth-note triplets", 8: "32nd notes", 12: "32nd-note triplets", 16: "64th notes",
    24: "64th-note triplets", 48: "128th-note triplets",
}  # fmt: skip
PERCUSSION_CHANNEL = 9
PredictFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
POSTPROCESS_FILE = "postprocess.json"  # a model folder's post-processing settings: {"key_change_penalty": p}


class QuantizeWarning(UserWarning):
    """MIDI notes were moved onto the engraving grid, or dropped (the message says how many and how far)."""


class ScoreWarning(UserWarning):
    """Notes of a score were dropped: zero-length non-grace notes (the message says how many and where)."""


# --- input -------------------------------------------------------------------------------------------------


def piece_from_score(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A contract piece from a score file, through the data package (the one place engrave reads scores).

    Zero-length notes the reader dropped are told in a :class:`ScoreWarning`.
    """
    from overseer.engraving.data.labels import piece_from_table
    from overseer.engraving.data.scores import load_score_table, zero_length_note

    table = load_score_table(path)
    dropped = zero_length_note(table)
    if dropped:
        warnings.warn(f"{path}: {dropped}", ScoreWarning, stacklevel=2)
    return piece_from_table(table)


@dataclass(frozen=True)
class MidiNotes:
    """The notes of a MIDI file on the engraving grid, and what putting them there did.

    ``onset``/``duration`` are quarters, multiples of ``1/grid``; ``time_sigs`` are (quarter, num,
    den). ``snapped`` is False when the file was already on ``grid`` (every onset within one MIDI
    tick, or a quarter of a grid step if that is less) and True when its timing was performed or
    a grid was asked for (``asked``), so that onsets were moved. ``read`` counts the note-on/note-off
    pairs of the file (percussion excluded); ``duplicates`` of them were dropped (struck at the
    same pitch and onset as a longer note), and ``unclosed`` note-ons had no note-off (not read).
    Onsets and offsets count as moved when they moved by more than that tolerance (an offset also
    moves when its note is cut at the next onset of its pitch); shifts are in quarters.
    """

    onset: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    time_sigs: list[tuple[float, int, int]]
    grid: int
    snapped: bool
    asked: bool
    read: int
    duplicates: int = 0
    unclosed: int = 0
    onsets_moved: int = 0
    max_onset_shift: float = 0.0
    offsets_moved: int = 0
    max_offset_shift: float = 0.0

    @property
    def notes(self) -> int:
        """Notes kept: each is one written note (its tied parts counted once)."""
        return int(self.onset.size)

    def summary(self) -> dict[str, int | float | bool]:
        """The counts (everything but the arrays), for a result or a report."""
        return {
            "grid": self.grid, "snapped": self.snapped, "asked": self.asked, "read": self.read, "notes": self.notes,
            "duplicates": self.duplicates, "unclosed": self.unclosed,
            "onsets_moved": self.onsets_moved, "max_onset_shift": self.max_onset_shift,
            "offsets_moved": self.offsets_moved, "max_offset_shift": self.max_offset_shift,
        }  # fmt: skip

    def warning(self) -> str | None:
        """What a user should be told (moved or dropped notes), or None when nothing was changed."""
        parts = []
        grid = f"1/{self.grid}-quarter grid ({GRID_NAMES[self.grid]})"
        offsets = f"{self.offsets_moved} offsets by at most {self.max_offset_shift:.3g}"
        if self.snapped and (self.onsets_moved or self.offsets_moved):
            why = "snapped to the" if self.asked else f"not quantized (onsets on no grid of 1/{AUTO_GRIDS[0]} to "
            why += "" if self.asked else f"1/{AUTO_GRIDS[-1]} quarter): snapped to a"
            parts.append(
                f"{why} {grid}: {self.onsets_moved} of {self.read} onsets moved by at most "
                f"{self.max_onset_shift:.3g} quarter, {offsets}"
                + ("" if self.asked else "; another grid: --grid D (1/D quarter)")
            )
        elif self.offsets_moved:
            parts.append(
                f"{self.offsets_moved} of {self.read} offsets moved onto the onsets' {grid} or to the next onset "
                f"of their pitch, by at most {self.max_offset_shift:.3g} quarter"
            )
        if self.duplicates:
            parts.append(f"{self.duplicates} notes dropped: struck at the same pitch and onset as a longer note")
        if self.unclosed:
            parts.append(f"{self.unclosed} note-ons without a note-off dropped")
        return "; ".join(parts) or None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    if isinstance(exc, EOFError) and not text:
        return "EOFError: the file ends inside a chunk (truncated)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _midi_events(path: Path) -> tuple[np.ndarray, int, list[tuple[int, int, int]], int]:
    """(rows of [on tick, off tick, pitch], ticks per quarter, time signatures in ticks, unclosed note-ons)."""
    import mido

    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise InputError(f"cannot read MIDI file ({exc.strerror or exc})", path=path) from exc
    if head != b"MThd":
        found = "the file is empty" if not head else f"it starts with {head!r}"
        raise InputError(f"not a Standard MIDI File: header is not MThd ({found})", path=path)
    try:
        mid = mido.MidiFile(os.fspath(path))
    except Exception as exc:  # mido raises anything on a corrupt file; re-raised with the reason
        raise InputError(f"cannot read MIDI file ({_reason(exc)})", path=path) from exc
    if mid.type == 2:
        raise InputError("MIDI type 2 (independent sequences) is not supported", path=path)
    if not isinstance(mid.ticks_per_beat, int) or not 0 < mid.ticks_per_beat < 0x8000:  # high bit: SMPTE frames
        raise InputError(
            "SMPTE timing (frames per second) is not supported: engraving needs ticks per quarter", path=path
        )
    notes, sigs, unclosed = [], [], 0
    for track in mid.tracks:
        tick, sounding = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "time_signature":
                if msg.numerator < 1:
                    raise InputError(f"time signature {msg.numerator}/{msg.denominator} at tick {tick}", path=path)
                sigs.append((tick, msg.numerator, msg.denominator))
            elif msg.type in ("note_on", "note_off") and msg.channel != PERCUSSION_CHANNEL:
                key = (msg.channel, msg.note)
                if msg.type == "note_on" and msg.velocity > 0:
                    sounding.setdefault(key, []).append(tick)
                elif sounding.get(key):
                    notes.append((sounding[key].pop(0), tick, msg.note))
        unclosed += sum(len(v) for v in sounding.values())
    if not notes:
        why = f" ({unclosed} note-ons without a note-off)" if unclosed else " (percussion, channel 10, excluded)"
        raise InputError(f"no notes{why}", path=path)
    return np.array(notes, dtype=np.int64).reshape(-1, 3), int(mid.ticks_per_beat), sigs, unclosed


def _tolerance(tpq: int, grid: int) -> float:
    """Ticks within which a time counts as on the grid: one tick, at most a quarter of a grid step."""
    return min(1.0, tpq / grid / 4)


def _shift(ticks: np.ndarray, tpq: int, grid: int) -> np.ndarray:
    """Distance in ticks from each time to the nearest point of the grid."""
    return np.abs(ticks - np.rint(ticks * grid / tpq) * tpq / grid)


def _own_grid(on: np.ndarray, off: np.ndarray, tpq: int) -> int | None:
    """The first of AUTO_GRIDS holding every onset and offset, else every onset; None: performed timing."""
    for times in (np.concatenate([on, off]), on):
        for grid in AUTO_GRIDS:
            if (_shift(times, tpq, grid) <= _tolerance(tpq, grid)).all():
                return grid
    return None


def read_midi(path: str | os.PathLike, grid: int | None = None) -> MidiNotes:
    """The notes of a MIDI file on the engraving grid (module docstring): an InputError for a bad file.

    ``grid`` (positions per quarter, one of ``GRIDS``) snaps every onset and offset onto that grid;
    ``None`` keeps a quantized file's own grid (the first of ``AUTO_GRIDS`` holding it) and snaps a
    file with performed timing onto ``PERFORMED_GRID`` (sixteenth notes). See :class:`MidiNotes`
    for what is counted.
    """
    path = Path(path)
    if grid is not None and grid not in GRIDS:
        raise InputError(f"grid {grid!r}: expected one of {', '.join(map(str, GRIDS))} (divisions per quarter)")
    rows, tpq, sigs, unclosed = _midi_events(path)
    on_t, off_t, pitch = rows[:, 0], rows[:, 1], rows[:, 2]
    own = _own_grid(on_t, off_t, tpq) if grid is None else None
    snapped = own is None
    g = own or grid or PERFORMED_GRID
    on = np.rint(on_t * g / tpq).astype(np.int64)
    off = np.rint(off_t * g / tpq).astype(np.int64)
    # one note per (onset, pitch), the longest; when snapping, only notes struck at the very same tick
    same_key = on_t if snapped else on
    order = np.lexsort((-off_t, pitch, same_key))
    keep = np.ones(order.size, dtype=bool)
    keep[1:] = (same_key[order][1:] != same_key[order][:-1]) | (pitch[order][1:] != pitch[order][:-1])
    idx = order[keep]
    on[idx], off[idx] = _one_key_at_a_time(on[idx], off[idx], on_t[idx], pitch[idx], separate=snapped)
    idx = idx[np.lexsort((pitch[idx], on[idx]))]
    tol = _tolerance(tpq, g)
    on_shift = np.abs(on[idx] * tpq / g - on_t[idx])
    off_shift = np.abs(off[idx] * tpq / g - off_t[idx])
    time_sigs = sorted({(round(t * MIDI_GRID / tpq) / MIDI_GRID, int(n), int(d)) for t, n, d in sigs})
    return MidiNotes(
        onset=on[idx] / g,
        duration=(off[idx] - on[idx]) / g,
        pitch=pitch[idx],
        time_sigs=time_sigs,
        grid=g,
        snapped=snapped,
        asked=grid is not None,
        read=int(rows.shape[0]),
        duplicates=int(rows.shape[0] - idx.size),
        unclosed=unclosed,
        onsets_moved=int((on_shift > tol).sum()),
        max_onset_shift=float(on_shift.max() / tpq),
        offsets_moved=int((off_shift > tol).sum()),
        max_offset_shift=float(off_shift.max() / tpq),
    )


def _one_key_at_a_time(
    on: np.ndarray, off: np.ndarray, raw_on: np.ndarray, pitch: np.ndarray, *, separate: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Grid onsets/offsets of distinct notes with the notes of one pitch one after the other.

    With ``separate`` (snapped timing) a repeat snapped onto or before the previous onset of its
    pitch moves to the next grid point. Always, a note ends no later than the next onset of its
    pitch (a piano key sounds once at a time; overlapping tied notes of one pitch do not read
    back), and lasts at least one grid step.
    """
    on, off = on.copy(), off.copy()
    order = np.lexsort((raw_on, pitch))
    if separate:
        for a, b in itertools.pairwise(order):
            if pitch[a] == pitch[b]:
                on[b] = max(on[b], on[a] + 1)
    for a, b in itertools.pairwise(order):
        if pitch[a] == pitch[b]:
            off[a] = min(off[a], on[b])
    return on, np.maximum(off, on + 1)


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


def piece_from_midi(path: str | os.PathLike, grid: int | None = None) -> tuple[dict[str, np.ndarray], MidiNotes]:
    """A contract piece (no labels) from a MIDI file (module docstring), and the notes as read (:func:`read_midi`)."""
    from overseer.engraving.data.labels import piece_from_table
    from overseer.engraving.data.scores import table_from_arrays

    notes = read_midi(path, grid)
    bars = nt.bars(float((notes.onset + notes.duration).max()), changes=notes.time_sigs)
    table, _ = table_from_arrays(notes.onset, notes.duration, notes.pitch, *bars, split_at_barlines=True)
    grid_of = {"bar_start": bars[0], "bar_dur": bars[1], "ts_num": bars[2], "ts_den": bars[3]}
    onset, duration, pitch, tie_prev, tie_next = split_unnotatable(table, lambda b: nt.bar_grid(grid_of, b))
    table, source = table_from_arrays(onset, duration, pitch, *bars, split_at_barlines=False)
    table.tie_prev, table.tie_next = tie_prev[source], tie_next[source]
    return piece_from_table(table), notes


def _read_input(path: str | os.PathLike, grid: int | None) -> tuple[dict[str, np.ndarray], MidiNotes | None]:
    """The piece of a score or MIDI file and, for MIDI, the notes as read; InputError for anything else."""
    path = Path(path)
    known = SCORE_SUFFIXES + MIDI_SUFFIXES
    if path.is_dir():
        found = sum(1 for p in path.iterdir() if p.suffix.lower() in known)
        held = f"it holds {found} score or MIDI files: engrave_batch engraves them all" if found else "it holds none"
        raise InputError(f"a folder, not a score or MIDI file ({held})", path=path)
    if not path.exists():
        raise InputError("no such file", path=path)
    if not path.is_file():
        raise InputError("not a regular file", path=path)
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return piece_from_midi(path, grid)
    if suffix not in SCORE_SUFFIXES:
        raise InputError(f"not a score or MIDI file (expected one of {', '.join(known)})", path=path)
    return piece_from_score(path), None


def read_piece(path: str | os.PathLike, *, grid: int | None = None) -> dict[str, np.ndarray]:
    """A contract piece from a score or a MIDI file; an InputError for a missing or unsupported file.

    ``grid`` is MIDI's (:func:`read_midi`); moved or dropped MIDI notes are told in a :class:`QuantizeWarning`.
    """
    piece, notes = _read_input(path, grid)
    _warn(path, notes)
    return piece


def _warn(path: str | os.PathLike, notes: MidiNotes | None) -> None:
    message = notes.warning() if notes is not None else None
    if message:
        warnings.warn(f"{path}: {message}", QuantizeWarning, stacklevel=3)


# --- prediction --------------------------------------------------------------------------------------------


def model_predict_fn(
    model_dir: str | os.PathLike, *, device: str | None = None, max_notes: int | None = None
) -> PredictFn:
    """``predict_fn`` of the model saved in ``model_dir`` (``train.save_model``); torch is imported here only.

    ``model_dir`` may also be an MLflow model (a ``models:/NAME@champion`` or ``runs:/…`` URI, or a
    folder holding an ``MLmodel`` file) logged by :func:`overseer.serving.engraving.log_engraving_model`:
    it is loaded through pyfunc and its EngravingGNN unwrapped, so MEI and SVG export work as for a folder.
    """
    from overseer.engraving.predict import predict_piece
    from overseer.engraving.train import load_model
    from overseer.serving.pyfunc import is_model_uri

    if is_model_uri(model_dir) or (Path(model_dir) / "MLmodel").is_file():
        from overseer.engraving.train import pick_device

        model = _mlflow_engraving_model(model_dir).to(pick_device(device))  # as load_model: None is CUDA if any
        return lambda piece: predict_piece(model, piece, max_notes=max_notes)
    try:
        model = load_model(model_dir, device=device)
    except pickle.UnpicklingError as exc:  # torch's text suggests weights_only=False: not for a file we did not write
        reason = "model.pt is not a saved state dict"
        raise InputError(f"cannot load the engraving model ({reason})", path=model_dir) from exc
    except Exception as exc:  # json, the config, the state dict: re-raised with the reason
        raise InputError(f"cannot load the engraving model ({_reason(exc)})", path=model_dir) from exc

    def predict(piece: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return predict_piece(model, piece, max_notes=max_notes)

    return predict


def model_key_change_penalty(model_dir: str | os.PathLike | None) -> float:
    """The key change penalty stored with a model: ``postprocess.json`` in the trained (or exported)
    folder, or in an MLflow model folder's ``artifacts/model/``; :data:`DEFAULT_KEY_CHANGE_PENALTY`
    without one (and for ``models:/`` or ``runs:/`` URIs). A file that is not such JSON, or a penalty
    that is not a number >= 0, is an InputError naming the file."""
    import json
    import math

    from overseer.serving.pyfunc import is_model_uri

    if model_dir is None or is_model_uri(model_dir):
        return DEFAULT_KEY_CHANGE_PENALTY
    folder = Path(model_dir)
    for path in (folder / POSTPROCESS_FILE, folder / "artifacts" / "model" / POSTPROCESS_FILE):
        if not path.is_file():
            continue
        try:
            value = json.loads(path.read_text(encoding="utf-8"))["key_change_penalty"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"not a post-processing settings file ({_reason(exc)})", path=path) from exc
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if not ok:
            raise InputError(f"key_change_penalty must be a number >= 0, got {value!r}", path=path)
        return float(value)
    return DEFAULT_KEY_CHANGE_PENALTY


def write_postprocess_settings(folder: str | os.PathLike, key_change_penalty: float) -> Path:
    """Write ``postprocess.json`` (the key change penalty, :func:`model_key_change_penalty`) into a model folder."""
    from overseer.io import write_json

    path = Path(folder) / POSTPROCESS_FILE
    write_json(path, {"key_change_penalty": float(key_change_penalty)})
    return path


def _mlflow_engraving_model(uri_or_folder: str | os.PathLike) -> EngravingGNN:
    """The EngravingGNN inside an MLflow model logged by ``log_engraving_model``; InputError naming it otherwise."""
    from overseer.serving.pyfunc import load_pyfunc

    loaded = load_pyfunc(uri_or_folder)  # InputError naming the URI when it cannot be loaded
    try:
        model = getattr(loaded.unwrap_python_model(), "model", None)
    except Exception:  # noqa: BLE001 - a flavor other than a PythonModel (pytorch, sklearn…)
        model = None
    from overseer.engraving.model import EngravingGNN

    if not isinstance(model, EngravingGNN):
        raise InputError(
            "not an EngravingGNN pyfunc model (logged by overseer.serving.engraving.log_engraving_model)",
            path=os.fspath(uri_or_folder),
        )
    return model


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


@contextlib.contextmanager
def staged_output(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out_dir``; its files move into ``out_dir`` only if the block succeeds.

    ``out_dir`` is created then (with its parents), never before, and its other files stay: a
    failure leaves no folder, no empty folder and no half-written file behind. An ``out_dir`` that
    is a file, or a place that cannot be written, is an :class:`InputError`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the output folder is a file", path=out_dir)
    base = next(p for p in (out_dir.absolute(), *out_dir.absolute().parents) if p.exists())
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name or 'out'}.", dir=base))
    except OSError as exc:
        raise InputError(f"cannot write the output folder ({exc.strerror or exc})", path=out_dir) from exc
    try:
        yield tmp
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for item in sorted(tmp.iterdir()):
                os.replace(item, out_dir / item.name)
        except OSError as exc:
            raise InputError(f"cannot write the output folder ({exc.strerror or exc})", path=out_dir) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _final(value: Path | list[Path], tmp: Path, out_dir: Path) -> Path | list[Path]:
    if isinstance(value, list):
        return [out_dir / p.relative_to(tmp) for p in value]
    return out_dir / value.relative_to(tmp)


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
    key_change_penalty: float | None = DEFAULT_KEY_CHANGE_PENALTY,
) -> dict:
    """Predict, post-process and export one piece (module docstring); returns what was written.

    ``key_change_penalty`` smooths the key over the piece (:mod:`.key_smoothing`; None or 0: per bar).

    The files are written through :func:`staged_output`: on any failure nothing is left in (or as)
    ``out_dir``; older ``page-k.svg`` files beyond the pages written are removed. An export that
    does not read back raises :class:`~overseer.engraving.export.ExportError` naming the file it
    would have written.

    The result holds the written paths (``musicxml``, ``mei``, ``svg``) and counts: notes (written
    noteheads: a note tied across a barline counts twice), sounding_notes (a tied chain counts
    once: the notes partitura reads back), bars, rests, the most voices of one bar and staff, grace
    notes without a principal note (dropped), octave brackets and clef changes.
    """
    unknown = sorted(set(formats) - set(export.FORMATS))
    if unknown or not formats:
        raise InputError(f"formats {sorted(formats)}: expected some of {', '.join(export.FORMATS)}")
    if int(pages) < 0:
        raise InputError(f"pages {pages}: expected a whole number >= 0 (0: no SVG pages)")
    pred = predict_fn(piece)
    check_predictions(piece, pred)
    res = pp.postprocess(
        piece, pred, threshold=threshold, min_clef_run=min_clef_run, key_change_penalty=key_change_penalty
    )
    out_dir = Path(out_dir)
    with staged_output(out_dir) as tmp:
        try:
            staged = export.export_score(piece, res, tmp, name, formats=formats, pages=pages, svg_options=svg_options)
        except export.ExportError as exc:
            raise export.ExportError(str(exc).replace(str(tmp), str(out_dir))) from exc
    written = {key: _final(value, tmp, out_dir) for key, value in staged.items()}
    for old in out_dir.glob("page-*.svg"):
        if old not in written["svg"] and old.stem.removeprefix("page-").isdigit():
            old.unlink()
    return {
        **written,
        "notes": int(piece["onset"].size),
        "sounding_notes": int((~np.asarray(piece["tie_prev"], dtype=bool)).sum()),
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
    *,
    formats: Sequence[str] = export.FORMATS,
    pages: int = 2,
    threshold: float = 0.5,
    min_clef_run: int = 4,
    svg_options: dict | None = None,
    key_change_penalty: float | None = DEFAULT_KEY_CHANGE_PENALTY,
) -> dict[str, dict]:
    """Engrave prepared pieces with ``model``, one folder ``out_dir/<name>`` each (:func:`engrave_piece`,
    whose keyword arguments these are); returns, per piece, the files written and its note count."""
    from overseer.engraving.predict import predict_piece

    written = {}
    for name, piece in named_pieces:
        result = engrave_piece(
            piece, lambda p: predict_piece(model, p), Path(out_dir) / name, name,
            formats=tuple(formats), pages=int(pages), svg_options=svg_options,
            threshold=float(threshold), min_clef_run=int(min_clef_run), key_change_penalty=key_change_penalty,
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
    grid: int | None = None,
    **options: object,
) -> dict:
    """Engrave one score or MIDI file into ``out_dir`` as ``<name>.musicxml``, ``<name>.mei``, ``page-k.svg``.

    ``predict_fn`` replaces the model saved in ``model_dir`` (tests, other models); ``name``
    defaults to the file's stem; ``device``/``max_notes`` go to the model's prediction; ``grid``
    to :func:`read_midi` (MIDI input only: a performed file is snapped to sixteenths unless
    another grid is given; moved or dropped notes are told in a :class:`QuantizeWarning`);
    ``options`` (``formats``, ``pages``, ``svg_options``, ``threshold``, ``min_clef_run``,
    ``key_change_penalty``: by default ``model_dir``'s, :func:`model_key_change_penalty`) to
    :func:`engrave_piece`, whose result is returned, with ``midi`` (:meth:`MidiNotes.summary`)
    for MIDI input. The input is read, and the model loaded, before anything is written.
    """
    piece, notes = _read_input(path, grid)
    _warn(path, notes)
    if predict_fn is None:
        if model_dir is None:
            raise ValueError("engrave needs a model_dir or a predict_fn")
        predict_fn = model_predict_fn(model_dir, device=device, max_notes=max_notes)
    if model_dir is not None and "key_change_penalty" not in options:
        options["key_change_penalty"] = model_key_change_penalty(model_dir)
    result = engrave_piece(piece, predict_fn, out_dir, name or Path(path).stem, **options)
    if notes is not None:
        result["midi"] = notes.summary()
    return result


# --- many files ------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """What :func:`engrave_batch` did: per engraved piece its source, name, folder and counts; per
    skipped source the reason (one line)."""

    engraved: list[dict]
    skipped: list[dict]

    def summary(self) -> dict:
        return {
            "engraved": len(self.engraved), "skipped": len(self.skipped),
            "pieces": self.engraved, "skipped_sources": self.skipped,
        }  # fmt: skip


def _found_files(folder: Path) -> list[Path]:
    """Score and MIDI files under ``folder`` (recursive, sorted; hidden files and folders skipped)."""
    known = SCORE_SUFFIXES + MIDI_SUFFIXES
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in known and not any(x.startswith(".") for x in p.relative_to(folder).parts)
    )


def batch_sources(paths: Sequence[str | os.PathLike]) -> list[tuple[Path, str]]:
    """(file, relative path) of every file ``paths`` name: files as given, folders searched recursively.

    Relative paths are taken from the common folder of the arguments (a folder argument counts as
    itself, a file as its parent): for one folder, the path inside it. A file named twice counts once.
    """
    groups: list[tuple[Path, list[Path]]] = []
    for arg in paths:
        p = Path(arg)
        groups.append((p, _found_files(p)) if p.is_dir() else (p.parent, [p]))
    if not groups:
        return []
    base = Path(os.path.commonpath([str(root.absolute()) for root, _ in groups]))
    out, seen = [], set()
    for _, files in groups:
        for f in files:
            key = f.absolute()
            if key in seen:
                continue
            seen.add(key)
            out.append((f, key.relative_to(base).as_posix()))
    return out


def batch_names(rels: Sequence[str]) -> list[str]:
    """A distinct, file-name-safe name per relative path (ingest's piece ids: ``a/b.mxl`` -> ``a__b``);
    two files differing only in their suffix keep it (``a_mxl``, ``a_mid``)."""
    from overseer.engraving.data.ingest import piece_id

    base = [piece_id(r) for r in rels]
    counts: dict[str, int] = {}
    for b in base:
        counts[b] = counts.get(b, 0) + 1
    names, taken = [], set()
    for rel, b in zip(rels, base, strict=True):
        name = b if counts[b] == 1 else f"{b}_{rel.rsplit('.', 1)[-1].lower()}" if "." in rel else b
        stem, k = name, 2
        while name in taken:
            name, k = f"{stem}_{k}", k + 1
        taken.add(name)
        names.append(name)
    return names


def _skip_reason(exc: BaseException, path: Path) -> str:
    from overseer.engraving.data.scores import one_line

    text = str(exc)
    for prefix in (f"{path}: ", f"{getattr(exc, 'path', None)}: "):
        text = text.removeprefix(prefix)
    if isinstance(exc, export.ExportError):
        text = f"export failed (a bug: please report it): {text}"
    elif not isinstance(exc, InputError):
        text = f"{type(exc).__name__}: {text}"
    return one_line(text)


def engrave_batch(
    paths: Sequence[str | os.PathLike],
    model_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    predict_fn: PredictFn | None = None,
    device: str | None = None,
    max_notes: int | None = None,
    grid: int | None = None,
    progress: bool = True,
    **options: object,
) -> Batch:
    """Engrave every score or MIDI file ``paths`` name (files, folders) into ``out_dir/<name>/`` (module docstring).

    Names: :func:`batch_sources`, :func:`batch_names`. The model is loaded once, before anything is
    read. A file that cannot be read, predicted, post-processed or exported is skipped with its
    reason and leaves nothing behind; the others are written. ``out_dir/batch.json`` lists both.
    An InputError when ``paths`` name no file at all (an empty folder). ``options`` as :func:`engrave`.
    """
    from tqdm import tqdm

    from overseer.io import write_json

    sources = batch_sources(paths)
    if not sources:
        raise InputError("no score or MIDI files to engrave", path=Path(paths[0]) if paths else None)
    if predict_fn is None:
        if model_dir is None:
            raise ValueError("engrave_batch needs a model_dir or a predict_fn")
        predict_fn = model_predict_fn(model_dir, device=device, max_notes=max_notes)
    if model_dir is not None and "key_change_penalty" not in options:
        options["key_change_penalty"] = model_key_change_penalty(model_dir)  # read once, for every piece
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the output folder is a file", path=out_dir)
    names = batch_names([rel for _, rel in sources])
    engraved, skipped = [], []
    for (path, rel), name in tqdm(
        list(zip(sources, names, strict=True)), desc="engrave", unit="piece", disable=not progress
    ):
        try:
            result = engrave(path, None, out_dir / name, predict_fn=predict_fn, name=name, grid=grid, **options)
        except Exception as exc:  # noqa: BLE001 - one bad piece never aborts the batch: skipped, listed
            skipped.append({"source": str(path), "path": rel, "reason": _skip_reason(exc, path)})
            continue
        written = [result[f] for f in export.FORMATS if result.get(f)] + list(result.get("svg") or [])
        engraved.append(
            {
                "source": str(path), "path": rel, "name": name, "folder": str(out_dir / name),
                "files": [p.name for p in written], "notes": result["sounding_notes"], "bars": result["bars"],
            }
        )  # fmt: skip
    batch = Batch(engraved, skipped)
    write_json(out_dir / "batch.json", batch.summary())
    return batch
