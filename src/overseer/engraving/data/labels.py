"""Labels of a piece (EngravingGNN paper §2.2): node labels per task and truth on the edge candidates.

Node labels are the class indices of ``schema.NODE_TASKS`` read from the :class:`ScoreTable`,
-1 where the score does not say. Tuplets: the raw actual-notes count goes through
``schema.TUPLET_RULE`` (6, 12 -> triplet; 10 -> quintuplet); any other ratio is -1 and counted by
the ingest report (``exotic_tuplets``).

Voice truth (``y_voice``), following piano_svsep's truth edges (Foscarin et al., measure-wise):
w is the next note of u's voice when both are in the same bar, staff and voice and onset(w) is
the first onset of that (bar, staff, voice) at or after offset(u). Chords count as wholes: every
note of a chord links to every note of the voice's next chord (a full bipartite set of true
edges between consecutive chords), and a voice's chord notes of different lengths each look
for their own next onset. True edges never cross a barline (bars are independent, as in the
paper's candidates), so every true edge is a candidate (same bar, offset(u) <= onset(w)).
Where a bar holds a note of unknown voice or staff, all candidates from that bar are -1:
the unknown note could be anyone's successor.

The successor rule is :func:`voice_successors` (:func:`successor_onset` per note), the one
definition shared by the truth here, the links of a post-processed engraving
(``evaluate.voice_links``, the next-chord form) and validation's voice-coverage suite.

Chord truth (``y_chord``): same onset (the candidate), same staff and same voice; -1 when either
note's voice or staff is unknown.
"""

from __future__ import annotations

import numpy as np

from overseer.engraving import schema
from overseer.engraving.data.graph import build_graph
from overseer.engraving.data.scores import ScoreTable, table_from_arrays
from overseer.engraving.notation import quantize

UNKNOWN = schema.UNKNOWN


def tuplet_classes(tuplet_actual: np.ndarray) -> np.ndarray:
    """Tuplet class per note from the raw actual-notes count (1 = none, 0 = unknown)."""
    lookup = np.full(max(int(np.max(tuplet_actual, initial=0)) + 1, max(schema.TUPLET_RULE) + 1), UNKNOWN, np.int16)
    for actual, cls in schema.TUPLET_RULE.items():
        lookup[actual] = cls
    lookup[0] = UNKNOWN
    return lookup[np.asarray(tuplet_actual, dtype=np.int64)]


def node_labels(table: ScoreTable) -> dict[str, np.ndarray]:
    """``y_<task>`` (n,) int16 for every task of ``schema.NODE_TASKS``."""
    staff = table.staff.astype(np.int16)
    labels = {
        "staff": np.where((staff == 1) | (staff == 2), staff - 1, UNKNOWN),
        "spelling": table.spelling,
        "key": table.key,
        "stem": table.stem,
        "octave_shift": table.octave_shift,
        "clef": table.clef,
        "note_type": table.note_type,
        "dots": table.dots,
        "tuplet": tuplet_classes(table.tuplet_actual),
    }
    out = {}
    for task, classes in schema.NODE_TASKS.items():
        y = np.asarray(labels[task], dtype=np.int16)
        y = np.where((y >= 0) & (y < len(classes)), y, UNKNOWN).astype(np.int16)
        out[f"y_{task}"] = y
    return out


def _unknown_bars(table: ScoreTable) -> np.ndarray:
    """Per bar: does it hold a note of unknown voice or staff?"""
    bad = (table.voice < 0) | (table.staff < 0)
    out = np.zeros(table.bar_start.size, dtype=bool)
    out[table.bar[bad]] = True
    return out


NO_SUCCESSOR = np.iinfo(np.int64).min  # not a tick: onsets before 0 (pickups) are negative ticks


def successor_onset(
    onset: np.ndarray,
    bar: np.ndarray,
    staff: np.ndarray,
    voice: np.ndarray,
    *,
    duration: np.ndarray | None = None,
) -> np.ndarray:
    """Per note u: the onset (ticks) of u's successors in its voice, ``NO_SUCCESSOR`` if none — the one
    voice-successor rule.

    The successors of u are the notes of u's (bar, staff, voice) at the first onset at or after
    offset(u) = onset + ``duration`` (the truth rule, module docstring: notes of one chord with
    different lengths each look for their own next onset); with ``duration=None``, at the first
    onset after onset(u): the next chord of the voice. The two agree on a voice that is monophonic
    at the chord level (its chords neither overlap nor mix lengths), as post-processed voices are.
    Times are in quarters, compared as ``quantize`` ticks.
    """
    on = quantize(onset)
    end = on if duration is None else quantize(np.asarray(onset) + np.asarray(duration))
    if on.size == 0:
        return np.zeros(0, dtype=np.int64)
    group, order, sorted_key, span, base = _voice_order(on, end, bar, staff, voice)
    pos = np.searchsorted(sorted_key, group * span + end - base, side="left" if duration is not None else "right")
    found = pos < on.size
    found[found] = group[order][pos[found]] == group[found]
    return np.where(found, on[order][np.minimum(pos, on.size - 1)], NO_SUCCESSOR)


def _voice_order(
    on: np.ndarray, end: np.ndarray, bar: np.ndarray, staff: np.ndarray, voice: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(group per note, notes sorted by (group, onset), their composite keys group * span + onset - base,
    span, base): times are shifted by the earliest one (``base``; pickups start before 0) so keys of
    different groups never overlap."""
    keys = np.stack([np.asarray(a).astype(np.int64) for a in (bar, staff, voice)], axis=1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.reshape(-1).astype(np.int64)
    base = int(min(on.min(), end.min()))
    span = int(max(on.max(), end.max())) - base + 2  # composite key: group * span + (time - base)
    order = np.lexsort((on, group))
    return group, order, group[order] * span + on[order] - base, span, base


def voice_successors(
    onset: np.ndarray,
    bar: np.ndarray,
    staff: np.ndarray,
    voice: np.ndarray,
    *,
    duration: np.ndarray | None = None,
) -> np.ndarray:
    """(2, E) links u -> w from every note to each of its successors (:func:`successor_onset`), sorted by u, w."""
    nxt = successor_onset(onset, bar, staff, voice, duration=duration)
    if nxt.size == 0:
        return np.zeros((2, 0), dtype=np.int64)
    on = quantize(onset)
    group, order, sorted_key, span, base = _voice_order(on, on, bar, staff, voice)
    has = nxt != NO_SUCCESSOR
    target = group * span + np.where(has, nxt - base, 0)
    lo = np.searchsorted(sorted_key, target, side="left")
    hi = np.where(has, np.searchsorted(sorted_key, target, side="right"), lo)
    counts = hi - lo
    u = np.repeat(np.arange(on.size, dtype=np.int64), counts)
    w = order[np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)]
    links = np.stack([u, w.astype(np.int64)])
    return links[:, np.lexsort((links[1], links[0]))]


def next_voice_onset(table: ScoreTable) -> np.ndarray:
    """Per note u: ticks of the first onset of u's (bar, staff, voice) at or after offset(u), or ``NO_SUCCESSOR``."""
    return successor_onset(table.onset, table.bar, table.staff, table.voice, duration=table.duration)


def voice_truth(table: ScoreTable, voice_cand: np.ndarray) -> np.ndarray:
    """``y_voice`` (C,) int8 over the candidates: 1 iff the pair is in :func:`voice_successors` (module docstring)."""
    u, w = np.asarray(voice_cand, dtype=np.int64).reshape(2, -1)
    if u.size == 0:
        return np.zeros(0, dtype=np.int8)
    true = voice_successors(table.onset, table.bar, table.staff, table.voice, duration=table.duration)
    y = np.isin(u * (1 << 32) + w, true[0] * (1 << 32) + true[1]).astype(np.int8)
    y[_unknown_bars(table)[table.bar[u]]] = UNKNOWN
    return y


def chord_truth(table: ScoreTable, chord_cand: np.ndarray) -> np.ndarray:
    """``y_chord`` (K,) int8: 1 same staff and voice, 0 not, -1 unknown."""
    u, w = chord_cand
    y = ((table.staff[u] == table.staff[w]) & (table.voice[u] == table.voice[w])).astype(np.int8)
    unknown = (table.voice[u] < 0) | (table.voice[w] < 0) | (table.staff[u] < 0) | (table.staff[w] < 0)
    y[unknown] = UNKNOWN
    return y


def graph_from_table(table: ScoreTable, silence: str = "gap") -> dict[str, np.ndarray]:
    """Features, input edges and candidates of a parsed score (no labels)."""
    return build_graph(
        table.onset,
        table.duration,
        table.pitch,
        table.bar,
        table.bar_start,
        table.bar_dur,
        table.ts_num,
        table.ts_den,
        silence=silence,
    )


def piece_from_table(table: ScoreTable, silence: str = "gap") -> dict[str, np.ndarray]:
    """Every array of the schema's contract for one piece: graph, candidates and labels."""
    piece = graph_from_table(table, silence)
    piece.update(node_labels(table))
    piece["y_voice"] = voice_truth(table, piece["voice_cand"])
    piece["y_chord"] = chord_truth(table, piece["chord_cand"])
    piece.update(
        onset=table.onset.astype(np.float64),
        duration=table.duration.astype(np.float64),
        pitch=table.pitch.astype(np.int16),
        bar=table.bar.astype(np.int32),
        tie_prev=table.tie_prev.astype(bool),
        tie_next=table.tie_next.astype(bool),
        voice=table.voice.astype(np.int16),
        bar_start=table.bar_start.astype(np.float64),
        bar_dur=table.bar_dur.astype(np.float64),
        ts_num=table.ts_num.astype(np.int16),
        ts_den=table.ts_den.astype(np.int16),
        grace_onset=table.grace_onset.astype(np.float64),
        grace_pitch=table.grace_pitch.astype(np.int16),
        grace_staff=table.grace_staff.astype(np.int16),
        grace_voice=table.grace_voice.astype(np.int16),
        grace_spelling=table.grace_spelling.astype(np.int16),
    )
    return piece


def piece_from_arrays(
    onset: np.ndarray,
    duration: np.ndarray,
    pitch: np.ndarray,
    bar_start: np.ndarray | None = None,
    bar_dur: np.ndarray | None = None,
    ts_num: np.ndarray | int = 4,
    ts_den: np.ndarray | int = 4,
    split_at_barlines: bool = True,
    silence: str = "gap",
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A contract piece from plain note arrays (quantized MIDI, a note list): every label is -1.

    Notes crossing barlines are split into tied notes (``split_at_barlines``); returns the piece
    and, per node, the index of the input note it comes from (see ``scores.table_from_arrays``).
    """
    table, source = table_from_arrays(
        onset, duration, pitch, bar_start, bar_dur, ts_num, ts_den, split_at_barlines=split_at_barlines
    )
    return piece_from_table(table, silence=silence), source


def label_counts(piece: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Known/unknown counts per task (node tasks and the two edge tasks) for the ingest report."""
    counts = {}
    for task in (*schema.NODE_TASKS, *schema.EDGE_TASKS):
        y = piece[f"y_{task}"]
        counts[task] = {"known": int((y >= 0).sum()), "unknown": int((y < 0).sum())}
    return counts
