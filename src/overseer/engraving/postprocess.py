"""Post-processing of EngravingGNN predictions into a writable engraving (paper §2.7, Fig. 3).

Input: a piece (``schema`` arrays) and the model's predictions for it (``logits_<task>`` per node,
``p_voice`` over ``voice_cand``, ``p_chord`` over ``chord_cand``). Output (:func:`postprocess`): a
dict of numpy arrays that :mod:`overseer.engraving.export` writes as it is. Per-note arrays hold
class indices of ``schema.NODE_TASKS`` (as the ``y_<task>`` labels do, so metrics compare them
directly); ``staff`` is 1 (upper) or 2 (lower).

The steps, in the paper's order (§2.7: chord pooling → voice assignment → unpooling → rests):

0. **Notated times**: onsets, offsets and barlines within 1/256 quarter of a point of the grids of
   binary values, triplets and quintuplets down to 128ths are moved onto it (scores written with
   too few divisions round a triplet sixteenth to 43/256; :func:`.notation.notated_piece`); the
   result carries these times and export writes them.
1. **Staff** (§2.2 item 2): argmax of ``logits_staff``; independent of the pooling (§2.7, last paragraph).
2. **Chord pooling**: chord edges with ``p_chord >= threshold`` joined into connected components.
   An edge only joins notes with the same onset (the candidate rule), the same *predicted* staff
   and the same duration: a chord is written as one symbol in one voice, so its notes must agree
   on staff and length (notes of one onset with different lengths stay separate chords).
3. **Voice assignment** (Hungarian algorithm, as in piano_svsep / Foscarin et al. 2024): per bar
   and staff, voice-edge probabilities are averaged over the note pairs of two chords; a linear
   assignment (``scipy.optimize.linear_sum_assignment``) picks at most one successor and one
   predecessor per chord, maximising the summed log-odds ``log(p / (1 - p))`` of the links it keeps
   (only links with ``p > threshold``; the MAP decision for independent edges). Links exist only
   between candidates (offset(u) <= onset(w)), so every chain of links is monophonic at the chord
   level. The chains are then placed on voices in time order: a chain joins a voice whose last
   chord has ended by the chain's first onset — the one with the highest averaged ``p_voice`` from
   its last chord, then the nearest pitch — or opens a new voice when none is free
   (``merge_chains=False`` keeps one voice per chain). Voices are numbered per bar and staff,
   1-based, by mean pitch: voice 1 is the highest. Voices never cross staves or bars (the paper's
   candidates never cross bars; a voice that crosses staves is split per staff).
4. **Unpooling**: every note takes its chord's voice; the pooled (averaged) logits of note type,
   dots, tuplet, stem and key are shared by the chord's notes (§2.7: "the logits of the notes
   that are pooled together ... are averaged"). Stems are averaged over a whole beam as well
   (§2.2 item 5: stems "align with beam direction"; beams as in step 11).
5. **Symbolic duration** (§2.2 item 8): the (note type, dots, tuplet) triple with the highest summed
   log-probability *among those whose value equals the note's duration* (a symbol that
   contradicts the duration cannot be written: MEI carries durations only as symbols). A
   duration no triple matches is written as tied symbols where engravers would tie
   (:func:`.notation.tied_symbols`: a length longer than a breve, say 16 quarters in a cadenza bar,
   or one made of plain values, say 5 quarters; cut at beats like rests): the note's
   ``note_type``/``dots``/``tuplet*`` are its first symbol's, and the symbols after it are the
   ``split_*`` arrays (one row per tied continuation: ``split_note``, its onset, duration and
   symbol), which export writes as notes tied to it. Any other length (a 7-tuplet, say) gets a
   generic tuplet ratio on the smallest note type that holds it (``tuplet`` = -1, ratio in
   ``tuplet_actual:tuplet_normal``).
6. **Spelling** (§2.2 item 3): the best of the spellings that are consistent with the note's MIDI pitch.
7. **Key** (§2.2 item 4): one key per bar, the majority of its notes' (chord-averaged) key predictions,
   ties broken by summed probability; a bar without notes keeps the previous bar's key. With a
   ``key_change_penalty`` (issue 13) the bar keys are instead the Viterbi path over the bars that
   maximises the bars' vote scores minus the penalty per key change
   (:func:`.key_smoothing.smooth_key_sequence`): the piece changes key only where a run of bars'
   evidence outweighs the penalty (0 or None: the per-bar majority above).
8. **Clef** (§2.2 item 7): per staff, the notes of one onset vote (summed logits); a run of fewer than
   ``min_clef_run`` onsets with another clef is flicker and takes its neighbour's clef (the
   previous run's, or the next one's at the start). A clef change is inserted at the first note
   of each new run.
9. **Octave shift** (§2.2 item 6): per staff, the notes of one onset vote as for clefs; consecutive
   onsets with the same non-"none" label form one bracket, which therefore covers exactly the
   notes with that label on its staff.
10. **Rests** (§2.7 step 4): every (bar, staff, voice) is filled from bar start to bar end; a staff
    without notes in a bar gets one voice of rests. A gap is cut at beat boundaries (runs of whole
    beats stay together), and each piece is written with the fewest, simplest rest symbols
    (dynamic programming: a symbol costs 4, a dot 1, a tuplet 3; binary values down to 128ths,
    one dot at most, triplets and quintuplets). A piece that starts off the beat has no dotted
    rests, and when it runs to the beat it is written shortest first (16th, eighth;
    :func:`.notation.notate_span`).
11. **Tuplets and beams**: consecutive elements (notes and rests) of one voice with the same
    tuplet ratio form one bracket, closed each time its length reaches a whole number of
    ``normal × shortest base value``; consecutive chords of eighths or shorter within one beat
    of one voice are beamed (rests break beams). A beam never crosses a tuplet bracket's edge
    (triplet eighths in 2/2 are beamed in threes), and a beat that holds a 32nd or shorter is
    beamed per eighth (32nds in fours), as engravers and the DCML scores write them: each such
    beam has its own stem direction, so pooling stems over the whole beat erased real changes
    (issue 13, oracle on the DCML validation pieces: stem 99.51 % -> 99.79 %).
12. **Grace notes** (not predicted, §4.2): attached before the principal note (same onset,
    preferring the grace note's own staff, then the nearest pitch); they take its staff and voice.
13. **Written accidentals**: per staff and bar, a note shows an accidental when its alteration
    differs from the one in force (key signature or an earlier note of the same step and octave
    in the bar); a note tied from the previous one never shows one.

The vocabulary (spelling, symbols, times, rest notation) is :mod:`.notation`'s; this module only
decodes predictions and checks the result. Every step is a small pure function on numpy arrays;
:func:`check_result` verifies the invariants (used by the tests and by export before writing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from fractions import Fraction
from itertools import pairwise

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from overseer.engraving import schema
from overseer.engraving.notation import (
    BASE_VALUE,
    DEFAULT_CLEF,
    SPLIT_KEYS,
    TICKS_PER_QUARTER,
    TIME_KEYS,
    TUPLET_RATIO,
    as_quarters,
    bar_grid,
    default_spelling,
    generic_symbol,
    key_alter,
    notate_span,
    notated_piece,
    pitch_consistent_spellings,
    quantize,
    spelled_pitch,
    symbol_table,
    symbol_value,
    tied_symbols,
)

UNKNOWN = schema.UNKNOWN
BEAMABLE_TYPE = schema.NOTE_TYPES.index("eighth")  # eighths and shorter are beamed
FINE_BEAM_TYPE = schema.NOTE_TYPES.index("32nd")  # beamed per eighth (step 11)
SYMBOL_REL_TOL = 0.02  # how far a generic ratio of an off-grid length may be from it


# --- small helpers ------------------------------------------------------------------------------


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of a (n, k) array (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# --- 1-2: staff and chord pooling ------------------------------------------------------------------


def predict_staff(pred: dict[str, np.ndarray]) -> np.ndarray:
    """Staff per note, 1 (upper) or 2 (lower): argmax of ``logits_staff`` (paper §2.2 item 2)."""
    return (np.argmax(pred["logits_staff"], axis=1) + 1).astype(np.int16)


def pool_chords(
    piece: dict[str, np.ndarray], p_chord: np.ndarray, staff: np.ndarray, *, threshold: float = 0.5
) -> np.ndarray:
    """Chord id per note (0-based, numbered by first note): components of the kept chord edges.

    An edge is kept when ``p >= threshold`` and both notes share onset, predicted staff and duration.
    """
    n = piece["onset"].size
    u, w = np.asarray(piece["chord_cand"], dtype=np.int64)
    on, dur = quantize(piece["onset"]), quantize(piece["duration"])
    keep = (np.asarray(p_chord) >= threshold) & (on[u] == on[w]) & (staff[u] == staff[w]) & (dur[u] == dur[w])
    graph = coo_matrix((np.ones(int(keep.sum())), (u[keep], w[keep])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # renumber by first member so that chord ids follow the (onset, pitch) node order
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[labels]


def pool_mean(values: np.ndarray, chord: np.ndarray) -> np.ndarray:
    """Mean of the rows of ``values`` (n, k) per chord → (C, k)."""
    values = np.asarray(values, dtype=np.float64)
    n_chords = int(chord.max()) + 1 if chord.size else 0
    sums = np.zeros((n_chords, values.shape[1]))
    np.add.at(sums, chord, values)
    return sums / np.bincount(chord, minlength=n_chords)[:, None]


def _chord_arrays(piece: dict[str, np.ndarray], chord: np.ndarray, staff: np.ndarray) -> dict[str, np.ndarray]:
    """Per chord: onset/offset ticks, staff, bar, mean pitch, first note."""
    n_chords = int(chord.max()) + 1 if chord.size else 0
    _, first = np.unique(chord, return_index=True)
    on = quantize(piece["onset"])
    off = quantize(np.asarray(piece["onset"]) + np.asarray(piece["duration"]))
    pitch = np.bincount(chord, weights=piece["pitch"].astype(np.float64), minlength=n_chords) / np.bincount(chord)
    return {
        "on": on[first],
        "off": off[first],
        "staff": staff[first],
        "bar": np.asarray(piece["bar"], dtype=np.int64)[first],
        "pitch": pitch,
        "first": first,
    }


# --- 3: voice assignment -------------------------------------------------------------------------------


def _pooled_voice_probs(
    piece: dict[str, np.ndarray], p_voice: np.ndarray, chord: np.ndarray, ch: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, p): mean voice-edge probability between chords a -> b of one bar and staff."""
    u, w = np.asarray(piece["voice_cand"], dtype=np.int64)
    cu, cw = chord[u], chord[w]
    keep = (
        (cu != cw)
        & (ch["staff"][cu] == ch["staff"][cw])
        & (ch["bar"][cu] == ch["bar"][cw])
        & (ch["off"][cu] <= ch["on"][cw])
    )
    n_chords = ch["on"].size
    key = cu[keep] * n_chords + cw[keep]
    uniq, inv = np.unique(key, return_inverse=True)
    p = np.bincount(inv, weights=np.asarray(p_voice, dtype=np.float64)[keep]) / np.bincount(inv)
    return uniq // n_chords, uniq % n_chords, p


def _link_chords(members: np.ndarray, a: np.ndarray, b: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Successor links among the chords ``members`` of one block by maximum-weight assignment."""
    if members.size < 2 or a.size == 0:
        return {}
    local = {int(c): i for i, c in enumerate(members)}
    good = p > threshold
    if not good.any():
        return {}
    weight = np.zeros((members.size, members.size))
    pc = np.clip(p[good], 1e-6, 1 - 1e-6)
    rows = np.array([local[int(x)] for x in a[good]])
    cols = np.array([local[int(x)] for x in b[good]])
    weight[rows, cols] = np.log(pc / (1 - pc))
    r, c = linear_sum_assignment(weight, maximize=True)
    chosen = weight[r, c] > 0
    return {int(members[i]): int(members[j]) for i, j in zip(r[chosen], c[chosen], strict=True)}


def _chains(members: np.ndarray, succ: dict) -> list[list[int]]:
    has_pred = set(succ.values())
    chains = []
    for c in members:
        c = int(c)
        if c in has_pred:
            continue
        chain = [c]
        while chain[-1] in succ:
            chain.append(succ[chain[-1]])
        chains.append(chain)
    return chains


def assign_voices(
    piece: dict[str, np.ndarray],
    p_voice: np.ndarray,
    chord: np.ndarray,
    staff: np.ndarray,
    *,
    threshold: float = 0.5,
    merge_chains: bool = True,
) -> np.ndarray:
    """Voice per note, 1-based per (bar, staff), voice 1 highest (module docstring, step 3)."""
    ch = _chord_arrays(piece, chord, staff)
    a, b, p = _pooled_voice_probs(piece, p_voice, chord, ch)
    pair_p = dict(zip(zip(a.tolist(), b.tolist(), strict=True), p.tolist(), strict=True))
    block_of = ch["bar"] * 3 + ch["staff"]
    edge_block = block_of[a] if a.size else np.zeros(0, dtype=np.int64)
    voice_of_chord = np.zeros(ch["on"].size, dtype=np.int16)
    for block in np.unique(block_of):
        members = np.flatnonzero(block_of == block)
        members = members[np.lexsort((-ch["pitch"][members], ch["on"][members]))]
        sel = edge_block == block
        succ = _link_chords(members, a[sel], b[sel], p[sel], threshold)
        chains = _chains(members, succ)  # already in (onset, -pitch) order of their heads
        slots: list[list[int]] = []
        for chain in chains:
            head = chain[0]
            free = [s for s in slots if ch["off"][s[-1]] <= ch["on"][head]] if merge_chains else []
            if free:
                best = max(
                    free,
                    key=lambda s, h=head: (pair_p.get((s[-1], h), 0.0), -abs(ch["pitch"][s[-1]] - ch["pitch"][h])),
                )
                best.extend(chain)
            else:
                slots.append(list(chain))
        mean_pitch = [float(np.mean(ch["pitch"][s])) for s in slots]
        for rank, i in enumerate(sorted(range(len(slots)), key=lambda i: (-mean_pitch[i], i))):
            voice_of_chord[slots[i]] = rank + 1
    return voice_of_chord[chord]


# --- 5-7: symbolic duration, spelling, key ----------------------------------------------------------------


def decode_durations(piece: dict[str, np.ndarray], pred: dict[str, np.ndarray], chord: np.ndarray) -> dict:
    """Note type, dots and tuplet per note from chord-averaged logits, consistent with the duration.

    Notes no single symbol writes get their first tied symbol here and the others in ``split_*``
    (module docstring, step 5).
    """
    t_idx, d_idx, k_idx, value = symbol_table()
    score = (
        log_softmax(pool_mean(pred["logits_note_type"], chord))[:, t_idx]
        + log_softmax(pool_mean(pred["logits_dots"], chord))[:, d_idx]
        + log_softmax(pool_mean(pred["logits_tuplet"], chord))[:, k_idx]
    )
    _, first = np.unique(chord, return_index=True)
    dur = quantize(piece["duration"])[first]
    on = quantize(piece["onset"])[first]
    match = value[None, :] == dur[:, None]
    best = np.argmax(np.where(match, score, -np.inf), axis=1)
    ratio = np.array(TUPLET_RATIO, dtype=np.int32)
    out = {
        "note_type": t_idx[best].astype(np.int16),
        "dots": d_idx[best].astype(np.int16),
        "tuplet": k_idx[best].astype(np.int16),
        "tuplet_actual": ratio[k_idx[best], 0],
        "tuplet_normal": ratio[k_idx[best], 1],
    }
    tied: dict[int, list] = {}  # chord -> its tied continuation symbols
    for c in np.flatnonzero(~match.any(axis=1)):
        start = as_quarters(on[c])
        _, _, origin, beat = bar_grid(piece, int(piece["bar"][first[c]]))
        symbols = tied_symbols(start, start + as_quarters(dur[c]), origin, beat)
        if symbols is None:  # one generic tuplet symbol: no class
            sym, k = generic_symbol(as_quarters(dur[c])), UNKNOWN
        else:  # the first of the tied symbols; its tuplet class where it has one
            sym, tied[int(c)] = tuple(symbols[0][2:]), symbols[1:]
            k = TUPLET_RATIO.index(sym[2:]) if sym[2:] in TUPLET_RATIO else UNKNOWN
        out["note_type"][c], out["dots"][c], out["tuplet_actual"][c], out["tuplet_normal"][c] = sym
        out["tuplet"][c] = k
    return {**{name: arr[chord] for name, arr in out.items()}, **_split_rows(chord, tied)}


def _split_rows(chord: np.ndarray, tied: dict[int, list]) -> dict[str, np.ndarray]:
    """``split_*`` rows for every note of the chords in ``tied`` (each note its own tied symbols)."""
    rows = [(int(i), *sym) for i in range(chord.size) for sym in tied.get(int(chord[i]), ())]
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    dtypes = (np.int64, np.float64, np.float64, np.int16, np.int16, np.int16, np.int16)
    return {
        key: np.array([float(v) if dt is np.float64 else int(v) for v in col], dtype=dt)
        for key, col, dt in zip(SPLIT_KEYS, cols, dtypes, strict=True)
    }


def decode_stems(stem_logits: np.ndarray, chord: np.ndarray, beam: np.ndarray) -> np.ndarray:
    """Stem class per note: logits averaged over the chord, and over the whole beam for beamed notes."""
    pooled = pool_mean(stem_logits, chord)[chord]
    beamed = beam >= 0
    if beamed.any():
        group = np.unique(beam[beamed], return_inverse=True)[1]
        pooled[beamed] = pool_mean(pooled[beamed], group)[group]
    return np.argmax(pooled, axis=1).astype(np.int16)


def decode_spelling(logits: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Best spelling per note among those consistent with its MIDI pitch (paper §2.2 item 3)."""
    masked = np.where(pitch_consistent_spellings(pitch), np.asarray(logits, dtype=np.float64), -np.inf)
    return np.argmax(masked, axis=1).astype(np.int16)


def smooth_key(
    key_logits: np.ndarray, chord: np.ndarray, bar: np.ndarray, n_bars: int, penalty: float | None = None
) -> np.ndarray:
    """One key class per bar: majority of the notes' chord-averaged argmax (paper §2.2 item 4, §4.3);
    with a ``penalty`` > 0 the Viterbi path over the bars (module docstring, step 7)."""
    if penalty:
        from overseer.engraving.key_smoothing import smooth_key_sequence  # it imports this module

        return smooth_key_sequence(key_logits, bar, n_bars, float(penalty), chord=chord)
    n_classes = len(schema.KEY_FIFTHS)
    logp = log_softmax(pool_mean(key_logits, chord))[chord]
    vote = np.argmax(logp, axis=1)
    counts = np.zeros((n_bars, n_classes))
    np.add.at(counts, (bar, vote), 1.0)
    prob = np.zeros((n_bars, n_classes))
    np.add.at(prob, bar, np.exp(logp))
    n_in_bar = counts.sum(axis=1, keepdims=True)
    score = counts + prob / (n_in_bar + 1.0)  # the fraction only breaks ties of the counts
    bar_key = np.full(n_bars, UNKNOWN, dtype=np.int64)
    has = n_in_bar[:, 0] > 0
    bar_key[has] = np.argmax(score[has], axis=1)
    return _fill_unknown(bar_key, schema.KEY_FIFTHS.index(0)).astype(np.int16)


def _fill_unknown(values: np.ndarray, default: int) -> np.ndarray:
    """Forward-fill -1 entries, then backward-fill the leading ones; ``default`` when all are -1."""
    out = values.copy()
    known = np.flatnonzero(out >= 0)
    if known.size == 0:
        out[:] = default
        return out
    idx = np.maximum.accumulate(np.where(out >= 0, np.arange(out.size), -1))
    idx[idx < 0] = known[0]
    return out[idx]


# --- 8-9: per-staff runs (clef, octave shift) -----------------------------------------------------------


def staff_onset_groups(onset: np.ndarray, staff: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group id per note for (staff, onset), groups ordered by staff then onset; also group staff and onset ticks."""
    on = quantize(onset)
    order = np.lexsort((on, staff))
    new = np.ones(order.size, dtype=bool)
    new[1:] = (staff[order][1:] != staff[order][:-1]) | (on[order][1:] != on[order][:-1])
    gid_sorted = np.cumsum(new) - 1
    group = np.empty(order.size, dtype=np.int64)
    group[order] = gid_sorted
    return group, staff[order][new], on[order][new]


def _group_labels(logits: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    sums = np.zeros((n_groups, logits.shape[1]))
    np.add.at(sums, group, log_softmax(logits))
    return np.argmax(sums, axis=1)


def remove_short_runs(labels: np.ndarray, min_run: int) -> np.ndarray:
    """Replace runs shorter than ``min_run`` by the previous run's label (the next one's at the start)."""
    labels = np.asarray(labels).copy()
    while True:
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        lengths = np.diff(np.r_[starts, labels.size])
        if starts.size <= 1 or lengths.min() >= min_run:
            return labels
        i = int(np.argmin(lengths))
        fill = labels[starts[i - 1]] if i > 0 else labels[starts[i + 1]]
        labels[starts[i] : starts[i] + lengths[i]] = fill


def clefs(
    clef_logits: np.ndarray, onset: np.ndarray, staff: np.ndarray, *, start: float = 0.0, min_run: int = 4
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Clef class per note and the clef events per staff: the initial clef (at ``start``), then changes.

    Paper §2.2 item 7; ``clef_note`` is the first note of the new clef region (-1 for an initial clef).
    """
    group, g_staff, g_on = staff_onset_groups(onset, staff)
    label = _group_labels(clef_logits, group, g_staff.size)
    first_note = np.full(g_staff.size, np.iinfo(np.int64).max)
    np.minimum.at(first_note, group, np.arange(group.size))
    rows = []  # (staff, onset in quarters, clef class, first note)
    for s in (1, 2):
        sel = np.flatnonzero(g_staff == s)
        if sel.size == 0:
            rows.append((s, start, DEFAULT_CLEF[s], -1))
            continue
        label[sel] = remove_short_runs(label[sel], min_run)
        rows.append((s, start, int(label[sel[0]]), -1))
        for prev, gi in pairwise(sel):
            if label[gi] != label[prev]:
                rows.append((s, float(g_on[gi]) / TICKS_PER_QUARTER, int(label[gi]), int(first_note[gi])))
    cols = list(zip(*rows, strict=True))
    events = {
        "clef_staff": np.array(cols[0], dtype=np.int16),
        "clef_onset": np.array(cols[1], dtype=np.float64),
        "clef_sign": np.array(cols[2], dtype=np.int16),
        "clef_note": np.array(cols[3], dtype=np.int64),
    }
    return label[group].astype(np.int16), events


def octave_brackets(
    octave_logits: np.ndarray, onset: np.ndarray, offset: np.ndarray, staff: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Octave-shift class per note and one bracket per run of onsets with the same non-"none" label.

    Paper §2.2 item 6. A bracket runs from its first note (``ottava_first``, the lowest node index of
    its first onset) to the longest note of its last onset (``ottava_last``).
    """
    group, g_staff, _ = staff_onset_groups(onset, staff)
    label = _group_labels(octave_logits, group, g_staff.size)
    off = quantize(offset)
    first_note = np.full(g_staff.size, np.iinfo(np.int64).max)
    np.minimum.at(first_note, group, np.arange(group.size))
    starts = np.flatnonzero(np.r_[True, (label[1:] != label[:-1]) | (g_staff[1:] != g_staff[:-1])])
    ends = np.r_[starts[1:], label.size] - 1
    rows = []  # (staff, class, first note, last note)
    for gs, ge in zip(starts, ends, strict=True):
        if label[gs] != 0:
            last_members = np.flatnonzero(group == ge)
            rows.append((g_staff[gs], label[gs], first_note[gs], last_members[np.argmax(off[last_members])]))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 4
    events = {
        "ottava_staff": np.array(cols[0], dtype=np.int16),
        "ottava_type": np.array(cols[1], dtype=np.int16),
        "ottava_first": np.array(cols[2], dtype=np.int64),
        "ottava_last": np.array(cols[3], dtype=np.int64),
    }
    return label[group].astype(np.int16), events


# --- 10: rests -------------------------------------------------------------------------------------------------


def infill_rests(
    piece: dict[str, np.ndarray], staff: np.ndarray, voice: np.ndarray, chord: np.ndarray
) -> dict[str, np.ndarray]:
    """Rests filling every (bar, staff, voice) from bar start to bar end (paper §2.7 step 4)."""
    on = quantize(piece["onset"])
    off = quantize(np.asarray(piece["onset"]) + np.asarray(piece["duration"]))
    bar = np.asarray(piece["bar"], dtype=np.int64)
    spans: dict[tuple[int, int, int], list[tuple[int, int]]] = defaultdict(list)
    _, first = np.unique(chord, return_index=True)
    for i in first:
        spans[(int(bar[i]), int(staff[i]), int(voice[i]))].append((int(on[i]), int(off[i])))
    rows = []
    for b in range(piece["bar_start"].size):
        start, end, origin, beat = bar_grid(piece, b)
        for s in (1, 2):
            voices = sorted(v for (bb, ss, v) in spans if bb == b and ss == s) or [1]
            for v in voices:
                t = start
                for c_on, c_off in sorted(spans.get((b, s, v), [])):
                    rows += [(b, s, v, *r) for r in notate_span(t, as_quarters(c_on), origin, beat)]
                    t = max(t, as_quarters(c_off))
                rows += [(b, s, v, *r) for r in notate_span(t, end, origin, beat)]
    cols = list(zip(*rows, strict=True)) if rows else [()] * 9
    return {
        "rest_bar": np.array(cols[0], dtype=np.int32),
        "rest_staff": np.array(cols[1], dtype=np.int16),
        "rest_voice": np.array(cols[2], dtype=np.int16),
        "rest_onset": np.array([float(x) for x in cols[3]], dtype=np.float64),
        "rest_duration": np.array([float(x) for x in cols[4]], dtype=np.float64),
        "rest_note_type": np.array(cols[5], dtype=np.int16),
        "rest_dots": np.array(cols[6], dtype=np.int16),
        "rest_tuplet_actual": np.array(cols[7], dtype=np.int16),
        "rest_tuplet_normal": np.array(cols[8], dtype=np.int16),
    }


# --- 11: tuplet brackets and beams ---------------------------------------------------------------------------


def _voice_events(piece: dict, res: dict) -> dict[tuple[int, int, int], list[tuple]]:
    """Per (bar, staff, voice): events (onset ticks, kind 'n'/'r'/'s', index) in time order (a chord once).

    'n' is a note (its first symbol), 'r' a rest, 's' a tied continuation symbol (``split_*`` row) of
    a chord's first note.
    """
    events: dict[tuple[int, int, int], list[tuple]] = defaultdict(list)
    on = quantize(piece["onset"])
    _, first = np.unique(res["chord"], return_index=True)
    for i in first:
        events[(int(piece["bar"][i]), int(res["staff"][i]), int(res["voice"][i]))].append((int(on[i]), "n", int(i)))
    r_on = quantize(res["rest_onset"])
    for j in range(r_on.size):
        key = (int(res["rest_bar"][j]), int(res["rest_staff"][j]), int(res["rest_voice"][j]))
        events[key].append((int(r_on[j]), "r", j))
    is_first = np.zeros(on.size, dtype=bool)
    is_first[first] = True
    s_on = quantize(res["split_onset"]) if "split_note" in res else np.zeros(0, np.int64)
    for j in range(s_on.size):
        i = int(res["split_note"][j])
        if is_first[i]:
            events[(int(piece["bar"][i]), int(res["staff"][i]), int(res["voice"][i]))].append((int(s_on[j]), "s", j))
    for seq in events.values():
        seq.sort()
    return events


def _first_symbol_ticks(piece: dict, res: dict) -> np.ndarray:
    """Length (ticks) of each note's first written symbol: its duration, or up to its first tied continuation."""
    on = quantize(piece["onset"])
    length = quantize(piece["duration"])
    s_note = np.asarray(res.get("split_note", np.zeros(0, np.int64)), dtype=np.int64)
    if s_note.size:
        s_on = quantize(res["split_onset"])
        first_cont = np.full(on.size, np.iinfo(np.int64).max)
        np.minimum.at(first_cont, s_note, s_on)
        split = first_cont < np.iinfo(np.int64).max
        length[split] = first_cont[split] - on[split]
    return length


def group_tuplets(piece: dict, res: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tuplet bracket id per note, per rest and per tied continuation symbol (-1 none): runs of one
    voice with the same ratio (a note's bracket is its first symbol's)."""
    chord = res["chord"]
    chord_group = np.full(int(chord.max()) + 1, -1, dtype=np.int32)
    rest_group = np.full(res["rest_onset"].size, -1, dtype=np.int32)
    n_split = np.asarray(res.get("split_note", ())).size
    split_group = np.full(n_split, -1, dtype=np.int32)
    head = _first_symbol_ticks(piece, res)
    prefix = {"n": "", "r": "rest_", "s": "split_"}
    gid = -1
    for seq in _voice_events(piece, res).values():
        open_ratio, acc, unit = None, Fraction(0), Fraction(0)
        for _, kind, i in seq:
            arr = prefix[kind]
            ratio = (int(res[f"{arr}tuplet_actual"][i]), int(res[f"{arr}tuplet_normal"][i]))
            if ratio == (1, 1):
                open_ratio = None
                continue
            ticks = head[i] if kind == "n" else quantize(res[f"{arr}duration"][i])
            dur = as_quarters(ticks)
            base = BASE_VALUE[int(res[f"{arr}note_type"][i])] * ratio[1]
            if ratio != open_ratio:
                gid, open_ratio, acc, unit = gid + 1, ratio, Fraction(0), base
            acc, unit = acc + dur, min(unit, base)
            if kind == "n":
                chord_group[chord[i]] = gid
            else:
                (rest_group if kind == "r" else split_group)[i] = gid
            if acc % unit == 0:
                open_ratio = None
    if n_split:  # the other notes of a chord: the bracket of the first note's symbol at the same time
        s_chord = chord[np.asarray(res["split_note"], dtype=np.int64)]
        s_on = quantize(res["split_onset"])
        of_first = {(int(s_chord[j]), int(s_on[j])): g for j, g in enumerate(split_group) if g >= 0}
        split_group = np.array(
            [of_first.get((int(s_chord[j]), int(s_on[j])), -1) for j in range(n_split)], dtype=np.int32
        )
    return chord_group[chord], rest_group, split_group


def group_beams(piece: dict, res: dict) -> np.ndarray:
    """Beam id per note (-1 none): consecutive chords of eighths or shorter within one beat of a voice;
    a beat holding a 32nd or shorter is beamed per eighth (module docstring, step 11)."""
    chord = res["chord"]
    tuplet = res.get("tuplet_group", np.full(chord.size, -1))
    chord_beam = np.full(int(chord.max()) + 1, -1, dtype=np.int32)
    gid = 0
    for (b, _, _), seq in _voice_events(piece, res).items():
        _, _, origin, beat = bar_grid(piece, b)
        unit = _beam_units(seq, res["note_type"], origin, beat)
        run: list[int] = []
        run_unit = None
        for t, kind, i in [*seq, (None, "end", -1)]:
            beamable = kind == "n" and res["note_type"][i] >= BEAMABLE_TYPE
            this_unit = (unit(as_quarters(t)), int(tuplet[i])) if beamable else None
            if not beamable or this_unit != run_unit:
                if len(run) >= 2:
                    chord_beam[chord[run]] = gid
                    gid += 1
                run, run_unit = [], this_unit
            if beamable:
                run.append(i)
    return chord_beam[chord]


def _beam_units(
    seq: list[tuple], note_type: np.ndarray, origin: Fraction, beat: Fraction
) -> Callable[[Fraction], tuple[int, int]]:
    """The beam unit of a time in one voice's bar: its beat, or its eighth within a beat that holds a
    32nd or shorter (engravers beam 32nds in fours: a beam per eighth, each with its own stem)."""
    eighth = Fraction(1, 2)
    fine = set()
    if (beat / eighth).denominator == 1:  # beats made of eighths (not the 16th beats of x/16 metres)
        short = [t for t, kind, i in seq if kind == "n" and note_type[i] >= FINE_BEAM_TYPE]
        fine = {(as_quarters(t) - origin) // beat for t in short}

    def unit(q: Fraction) -> tuple[int, int]:
        k = (q - origin) // beat
        return int(k), int((q - origin - k * beat) // eighth) if k in fine else 0

    return unit


# --- 12-13: grace notes and written accidentals -----------------------------------------------------


def attach_grace_notes(piece: dict, staff: np.ndarray, spelling: np.ndarray, bar_key: np.ndarray) -> dict:
    """Principal note per grace note (-1 when none starts at its onset) and a pitch-consistent spelling."""
    g_on = quantize(piece["grace_onset"])
    on = quantize(piece["onset"])
    pitch = np.asarray(piece["pitch"], dtype=np.int64)
    principal = np.full(g_on.size, -1, dtype=np.int64)
    g_spell = np.zeros(g_on.size, dtype=np.int16)
    consistent = pitch_consistent_spellings(piece["grace_pitch"])
    for g in range(g_on.size):
        cand = np.flatnonzero(on == g_on[g])
        gp = int(piece["grace_pitch"][g])
        if cand.size:
            own = (staff[cand] == piece["grace_staff"][g]).astype(int)
            principal[g] = cand[np.lexsort((np.abs(pitch[cand] - gp), -own))[0]]
        s = int(piece["grace_spelling"][g])
        if 0 <= s < consistent.shape[1] and consistent[g, s]:
            g_spell[g] = s
        else:
            bar = int(piece["bar"][principal[g]]) if principal[g] >= 0 else 0
            fifths = schema.KEY_FIFTHS[bar_key[bar]] if bar_key.size else 0
            g_spell[g] = default_spelling(gp, fifths)
    return {"grace_principal": principal, "grace_spelling": g_spell}


def written_accidentals(piece: dict, res: dict) -> tuple[np.ndarray, np.ndarray]:
    """Whether each note / grace note shows its accidental (module docstring, step 13)."""
    n = piece["onset"].size
    on = quantize(piece["onset"])
    items = []  # (staff, bar, onset, order, kind, index)
    for i in range(n):
        items.append((int(res["staff"][i]), int(piece["bar"][i]), int(on[i]), 1, int(piece["pitch"][i]), "n", i))
    for g, p in enumerate(res["grace_principal"]):
        if p >= 0:
            items.append((int(res["staff"][p]), int(piece["bar"][p]), int(on[p]), 0, g, "g", g))
    items.sort()
    show = np.zeros(n, dtype=bool)
    show_g = np.zeros(res["grace_principal"].size, dtype=bool)
    state: dict[tuple[str, int], int] = {}
    current = None
    for staff, bar, _, _, _, kind, i in items:
        if (staff, bar) != current:
            current, state = (staff, bar), {}
        fifths = schema.KEY_FIFTHS[int(res["bar_key"][bar])]
        if kind == "n":
            step, alter, octave = spelled_pitch(res["spelling"][i], piece["pitch"][i])
            tied = bool(piece["tie_prev"][i])
        else:
            step, alter, octave = spelled_pitch(res["grace_spelling"][i], piece["grace_pitch"][i])
            tied = False
        in_force = state.get((step, octave), key_alter(step, fifths))
        if alter != in_force and not tied:
            (show if kind == "n" else show_g)[i] = True
        state[(step, octave)] = alter
    return show, show_g


# --- the pipeline -------------------------------------------------------------------------------------------------


def postprocess(
    piece: dict[str, np.ndarray],
    pred: dict[str, np.ndarray],
    *,
    threshold: float = 0.5,
    min_clef_run: int = 4,
    merge_chains: bool = True,
    key_change_penalty: float | None = None,
) -> dict[str, np.ndarray]:
    """Post-process one piece's predictions into writable arrays (module docstring; paper §2.7).

    ``key_change_penalty``: None or 0 keeps the paper's per-bar key; a number > 0 smooths the bar
    keys over the whole piece with that cost per key change (step 7; :mod:`.key_smoothing`).

    The notated times (``onset``, ``duration``, ``bar_start``, ``bar_dur``, ``grace_onset``: the
    piece's, snapped by :func:`snap_times`) are part of the result; export writes those.
    Per note: ``staff`` (1/2), ``voice`` (1-based per bar and staff), ``chord``, ``spelling``,
    ``key``, ``stem``, ``octave_shift``, ``clef``, ``note_type``, ``dots``, ``tuplet`` (class
    indices; tuplet -1 = generic ratio), ``tuplet_actual``/``tuplet_normal``, ``tuplet_group``,
    ``beam``, ``show_accidental``. Per bar: ``bar_key``. Rests: ``rest_*``. Clef events: ``clef_*``
    (onset in quarters). Octave brackets: ``ottava_*``. Grace notes:
    ``grace_principal``, ``grace_spelling``, ``grace_show_accidental``.
    """
    if piece["onset"].size == 0:
        raise ValueError("a piece without notes cannot be engraved")
    piece = notated_piece(piece)
    res: dict[str, np.ndarray] = {k: piece[k] for k in TIME_KEYS}
    staff = predict_staff(pred)
    chord = pool_chords(piece, pred["p_chord"], staff, threshold=threshold)
    res["staff"], res["chord"] = staff, chord.astype(np.int32)
    res["voice"] = assign_voices(piece, pred["p_voice"], chord, staff, threshold=threshold, merge_chains=merge_chains)
    res.update(decode_durations(piece, pred, chord))
    res["spelling"] = decode_spelling(pred["logits_spelling"], piece["pitch"])
    bar = np.asarray(piece["bar"], dtype=np.int64)
    res["bar_key"] = smooth_key(pred["logits_key"], chord, bar, piece["bar_start"].size, key_change_penalty)
    res["key"] = res["bar_key"][bar]
    res["clef"], clef_events = clefs(
        pred["logits_clef"], piece["onset"], staff, start=float(piece["bar_start"][0]), min_run=min_clef_run
    )
    res.update(clef_events)
    offset = np.asarray(piece["onset"]) + np.asarray(piece["duration"])
    res["octave_shift"], brackets = octave_brackets(pred["logits_octave_shift"], piece["onset"], offset, staff)
    res.update(brackets)
    res.update(infill_rests(piece, staff, res["voice"], chord))
    res["tuplet_group"], res["rest_tuplet_group"], res["split_tuplet_group"] = group_tuplets(piece, res)
    res["beam"] = group_beams(piece, res)
    res["stem"] = decode_stems(pred["logits_stem"], chord, res["beam"])
    res.update(attach_grace_notes(piece, staff, res["spelling"], res["bar_key"]))
    res["show_accidental"], res["grace_show_accidental"] = written_accidentals(piece, res)
    return res


# --- invariants -----------------------------------------------------------------------------------------------------


def check_result(piece: dict[str, np.ndarray], res: dict[str, np.ndarray]) -> None:
    """Raise ValueError when a post-processed result breaks an engraving invariant."""
    piece = notated_piece(piece, res)
    on = quantize(piece["onset"])
    dur = quantize(piece["duration"])
    n = on.size
    for name in ("staff", "voice", "chord", "spelling", "note_type", "dots", "key", "octave_shift", "clef"):
        if res[name].shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},), got {res[name].shape}")
    if not np.isin(res["staff"], (1, 2)).all() or (res["voice"] < 1).any() or (res["chord"] < 0).any():
        raise ValueError("every note needs staff 1 or 2, a voice >= 1 and a chord")
    chord = res["chord"]
    for name, arr in (("onset", on), ("duration", dur), ("staff", res["staff"]), ("voice", res["voice"])):
        ref = np.zeros(int(chord.max()) + 1, dtype=np.int64)
        ref[chord] = arr
        if (ref[chord] != arr).any():
            raise ValueError(f"notes of one chord differ in {name}")
    value = np.array(
        [
            float(symbol_value(t, d, a, m) * TICKS_PER_QUARTER)
            for t, d, a, m in zip(
                res["note_type"], res["dots"], res["tuplet_actual"], res["tuplet_normal"], strict=True
            )
        ]
    )
    head = _first_symbol_ticks(piece, res)  # the duration, or the first of its tied symbols
    off = np.abs(value - head) > SYMBOL_REL_TOL * head  # exact but for generic ratios of off-grid lengths
    if off.any():
        raise ValueError(f"symbolic duration differs from the duration of notes {np.flatnonzero(off)[:5]}")
    _check_split(on, dur, head, res)
    if not pitch_consistent_spellings(piece["pitch"])[np.arange(n), res["spelling"]].all():
        raise ValueError("a spelling does not fit its MIDI pitch")
    if (res["key"] != res["bar_key"][piece["bar"]]).any():
        raise ValueError("notes of one bar carry different keys")
    _check_tiling(piece, res)
    _check_brackets(piece, res)


def _check_split(on: np.ndarray, dur: np.ndarray, head: np.ndarray, res: dict) -> None:
    """A note's tied symbols follow its first one without gap or overlap, each its symbol's length, to its end."""
    if "split_note" not in res or not np.asarray(res["split_note"]).size:
        return
    rows: dict[int, list[int]] = defaultdict(list)
    for j, i in enumerate(np.asarray(res["split_note"], dtype=np.int64)):
        rows[int(i)].append(j)
    s_on, s_dur = quantize(res["split_onset"]), quantize(res["split_duration"])
    for i, js in rows.items():
        t = on[i] + head[i]
        for j in sorted(js, key=lambda j: s_on[j]):
            sym = symbol_value(
                res["split_note_type"][j], res["split_dots"][j], res["split_tuplet_actual"][j],
                res["split_tuplet_normal"][j],
            )  # fmt: skip
            if s_on[j] != t or abs(float(sym * TICKS_PER_QUARTER) - s_dur[j]) > SYMBOL_REL_TOL * s_dur[j]:
                raise ValueError(f"note {i}: its tied symbols do not follow each other or differ from their lengths")
            t += s_dur[j]
        if t != on[i] + dur[i]:
            raise ValueError(f"note {i}: its tied symbols end at tick {t}, the note at {on[i] + dur[i]}")


def _check_tiling(piece: dict, res: dict) -> None:
    spans: dict[tuple[int, int, int], set] = defaultdict(set)
    on = quantize(piece["onset"])
    off = quantize(np.asarray(piece["onset"]) + np.asarray(piece["duration"]))
    for i in range(on.size):
        key = (int(piece["bar"][i]), int(res["staff"][i]), int(res["voice"][i]))
        spans[key].add((int(on[i]), int(off[i]), f"c{res['chord'][i]}"))
    r_on = quantize(res["rest_onset"])
    r_off = quantize(res["rest_onset"] + res["rest_duration"])
    for j in range(r_on.size):
        key = (int(res["rest_bar"][j]), int(res["rest_staff"][j]), int(res["rest_voice"][j]))
        spans[key].add((int(r_on[j]), int(r_off[j]), f"r{j}"))
        value = float(
            symbol_value(
                res["rest_note_type"][j],
                res["rest_dots"][j],
                res["rest_tuplet_actual"][j],
                res["rest_tuplet_normal"][j],
            )
            * TICKS_PER_QUARTER
        )
        if abs(value - int(r_off[j] - r_on[j])) > SYMBOL_REL_TOL * int(r_off[j] - r_on[j]):
            raise ValueError(f"rest {j}: symbol and duration differ")
    b_start = quantize(piece["bar_start"])
    b_end = quantize(np.asarray(piece["bar_start"]) + np.asarray(piece["bar_dur"]))
    for (b, s, v), items in spans.items():
        t = b_start[b]
        for start, end, _ in sorted(items):
            if start != t:
                raise ValueError(f"bar {b}, staff {s}, voice {v}: {'gap' if start > t else 'overlap'} at tick {start}")
            t = end
        if t != b_end[b]:
            raise ValueError(f"bar {b}, staff {s}, voice {v}: ends at tick {t}, bar ends at {b_end[b]}")
    for b in range(b_start.size):
        for s in (1, 2):
            if not any(k[0] == b and k[1] == s for k in spans):
                raise ValueError(f"bar {b}, staff {s}: nothing written")


def _check_brackets(piece: dict, res: dict) -> None:
    covered = np.zeros(piece["onset"].size, dtype=np.int64)
    on = quantize(piece["onset"])
    for s, typ, first, last in zip(
        res["ottava_staff"], res["ottava_type"], res["ottava_first"], res["ottava_last"], strict=True
    ):
        inside = (res["staff"] == s) & (on >= on[first]) & (on <= on[last])
        if (res["octave_shift"][inside] != typ).any():
            raise ValueError(f"octave bracket on staff {s} covers notes with another label")
        covered += inside
    if (covered != (res["octave_shift"] > 0)).any():
        raise ValueError("octave brackets do not cover exactly the shifted notes")
