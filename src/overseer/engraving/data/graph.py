"""The input score graph (EngravingGNN paper §2.1): node features and onset/during/follow/silence edges.

Everything works on the sorted note arrays of one piece (nodes sorted by onset, grace notes
already removed — DESIGN.md: zero-length grace notes otherwise add spurious silence edges) and is
vectorised: each relation is, per note ``u``, a contiguous range of node indices found with
``np.searchsorted`` on the sorted onsets, expanded with one ragged ``arange``. No pairwise loops.

Times are compared exactly on a fine integer grid (``quantize``): ``TICKS_PER_QUARTER`` is
divisible by every note value down to 256ths and by tuplets of 3, 5, 7, 9, 11 and 13, so quantized
score times are exact integers and float round-off (1/3 + 1/3 vs 2/3) cannot split an onset.

Relations, for notes u, w (each stored as a (2, E) int64 array of (u, w) rows, sorted by u then w):

- onset: onset(w) == onset(u), u != w (symmetric: both directions stored);
- during: onset(u) < onset(w) < offset(u) — w starts while u sounds;
- follow: onset(w) == offset(u);
- silence: u ends at t, nothing starts at t, nothing sounds across t (every note that started
  before t has ended by t), and w starts at the first onset after t — a rest in all voices.
  ``silence="rest"`` drops the "nothing sounds across t" condition (piano_svsep's rule: any note
  whose end no onset meets links to the next onset), still without its pitfall of linking a note
  that ends after the last onset to every note (DESIGN.md): such a note has no silence edge;
- rev_during, rev_follow, rev_silence: the same edges reversed.

Output candidates (paper §2.2, as in piano_svsep): voice candidates are pairs (u, w) in the same
bar with offset(u) <= onset(w); chord candidates are pairs with the same onset, u < w.
"""

from __future__ import annotations

import numpy as np

from overseer.engraving import schema
from overseer.engraving.notation import TICKS_PER_QUARTER, quantize

SILENCE_RULES = ("gap", "rest")
MIN_DURATION = 1.0 / 1024  # quarters: the log2 duration of a zero-length note (dropped at ingest) stays finite


def _ragged(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Edges (u, w) for w in range(lo[u], hi[u]) for every u, as a (2, E) int64 array."""
    counts = np.maximum(hi - lo, 0)
    u = np.repeat(np.arange(lo.size, dtype=np.int64), counts)
    step = np.arange(u.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.stack([u, lo[u] + step])


def _times(onset: np.ndarray, duration: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    onset = np.asarray(onset, dtype=np.float64)
    on = quantize(onset)
    off = quantize(onset + np.asarray(duration, dtype=np.float64))
    if on.size and np.any(np.diff(on) < 0):
        raise ValueError("notes must be sorted by onset")
    if np.any(off <= on):
        raise ValueError("every note needs a duration > 0 (remove grace notes before building the graph)")
    return on, off


def input_edges(onset: np.ndarray, duration: np.ndarray, silence: str = "gap") -> dict[str, np.ndarray]:
    """The seven relations of ``schema.RELATIONS`` for notes sorted by onset (see module docstring)."""
    if silence not in SILENCE_RULES:
        raise ValueError(f"silence rule must be one of {SILENCE_RULES}, got {silence!r}")
    on, off = _times(onset, duration)
    n = on.size
    if n == 0:
        return {r: np.zeros((2, 0), dtype=np.int64) for r in schema.RELATIONS}
    group_lo = np.searchsorted(on, on, side="left")  # first note with the same onset
    group_hi = np.searchsorted(on, on, side="right")  # one past the last note with the same onset
    at_off_lo = np.searchsorted(on, off, side="left")  # first note starting at or after offset(u)
    at_off_hi = np.searchsorted(on, off, side="right")

    onset_edges = _ragged(group_lo, group_hi)
    onset_edges = onset_edges[:, onset_edges[0] != onset_edges[1]]
    during = _ragged(group_hi, at_off_lo)
    follow = _ragged(at_off_lo, at_off_hi)

    # silence: nothing starts at offset(u) and some note starts later
    ends_in_gap = (at_off_lo == at_off_hi) & (at_off_lo < n)
    if silence == "gap" and n:
        # ... and every note that started before offset(u) has ended by then
        sounding_until = np.maximum.accumulate(off)
        ends_in_gap &= sounding_until[np.maximum(at_off_lo - 1, 0)] <= off
    nxt = np.minimum(at_off_lo, n - 1)  # the first note at the next onset (only read where ends_in_gap)
    silence_edges = _ragged(np.where(ends_in_gap, at_off_lo, 0), np.where(ends_in_gap, group_hi[nxt], 0))

    edges = {"onset": onset_edges, "during": during, "follow": follow, "silence": silence_edges}
    for base in ("during", "follow", "silence"):
        edges[f"rev_{base}"] = _reverse(edges[base])
    return {r: edges[r] for r in schema.RELATIONS}


def _reverse(edges: np.ndarray) -> np.ndarray:
    rev = edges[::-1]
    order = np.lexsort((rev[1], rev[0]))
    return np.ascontiguousarray(rev[:, order])


def voice_candidates(onset: np.ndarray, duration: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """(2, C) pairs (u, w) in the same bar with offset(u) <= onset(w) (paper §2.2, Λ_v)."""
    on, off = _times(onset, duration)
    bar = np.asarray(bar)
    if bar.size and np.any(np.diff(bar) < 0):
        raise ValueError("bar indices must not decrease with onset")
    bar_end = np.searchsorted(bar, bar, side="right")  # one past the last note of u's bar
    lo = np.searchsorted(on, off, side="left")
    return _ragged(lo, np.maximum(bar_end, lo))


def chord_candidates(onset: np.ndarray) -> np.ndarray:
    """(2, K) pairs (u, w) with the same onset and u < w."""
    on = quantize(onset)
    return _ragged(np.arange(on.size, dtype=np.int64) + 1, np.searchsorted(on, on, side="right"))


def node_features(
    onset: np.ndarray,
    duration: np.ndarray,
    pitch: np.ndarray,
    bar: np.ndarray,
    bar_start: np.ndarray,
    bar_dur: np.ndarray,
    ts_num: np.ndarray,
    ts_den: np.ndarray,
) -> np.ndarray:
    """(n, N_FEATURES) float32 features in the order of ``schema.FEATURES`` (paper §2.1, plus the log2 duration).

    The bar duration of the duration feature is the time signature's bar (4·num/den quarters),
    so a short pickup bar does not inflate it. The position in the bar is measured over
    max(signature bar, notated bar); in a pickup bar 0 (shorter than its signature) it is counted
    from where the full bar would start, so its first note is not a downbeat.
    """
    onset = np.asarray(onset, dtype=np.float64)
    duration = np.asarray(duration, dtype=np.float64)
    pitch = np.asarray(pitch, dtype=np.int64)
    bar = np.asarray(bar, dtype=np.int64)
    bar_start = np.asarray(bar_start, dtype=np.float64)
    ts_len = 4.0 * np.asarray(ts_num, dtype=np.float64) / np.asarray(ts_den, dtype=np.float64)
    bar_dur = np.asarray(bar_dur, dtype=np.float64)
    shift = np.zeros_like(bar_start)
    if bar_start.size and bar_dur[0] < ts_len[0]:
        shift[0] = ts_len[0] - bar_dur[0]  # anacrusis
    span = np.maximum(ts_len, bar_dur)

    x = np.zeros((onset.size, schema.N_FEATURES), dtype=np.float32)
    x[np.arange(onset.size), pitch % 12] = 1.0
    x[:, 12] = (pitch // 12 - 1) / 9.0
    x[:, 13] = np.tanh(duration / ts_len[bar])
    into_bar = quantize(onset) - quantize(bar_start[bar] - shift[bar])
    x[:, 14] = np.clip(into_bar / (span[bar] * TICKS_PER_QUARTER), 0.0, np.nextafter(1.0, 0.0))
    x[:, 15] = into_bar == 0
    x[:, 16:19] = duration_features(duration)
    return x


def duration_features(duration: np.ndarray) -> np.ndarray:
    """(n, 3): ``log_duration``, ``duration_class_sin``, ``duration_class_cos`` of ``schema.FEATURES``:
    log2 of the duration in quarters / 4, and the angle 2*pi*log2(duration) (its fractional part)."""
    log2 = np.log2(np.maximum(np.asarray(duration, dtype=np.float64), MIN_DURATION))
    angle = 2.0 * np.pi * log2
    return np.stack([log2 / 4.0, np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)


def build_graph(
    onset: np.ndarray,
    duration: np.ndarray,
    pitch: np.ndarray,
    bar: np.ndarray,
    bar_start: np.ndarray,
    bar_dur: np.ndarray,
    ts_num: np.ndarray,
    ts_den: np.ndarray,
    silence: str = "gap",
) -> dict[str, np.ndarray]:
    """Features, input edges and output candidates of one piece from its sorted note arrays.

    Returns ``x``, ``edges_<relation>`` for every relation, ``voice_cand`` and ``chord_cand`` —
    everything a piece needs besides labels, so MIDI input (no labels) goes through here too.
    """
    graph: dict[str, np.ndarray] = {"x": node_features(onset, duration, pitch, bar, bar_start, bar_dur, ts_num, ts_den)}
    for relation, edges in input_edges(onset, duration, silence=silence).items():
        graph[f"edges_{relation}"] = edges
    graph["voice_cand"] = voice_candidates(onset, duration, bar)
    graph["chord_cand"] = chord_candidates(onset)
    return graph
