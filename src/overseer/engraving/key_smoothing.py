"""The key signature over a whole piece: per-bar key scores and a Viterbi path with a change penalty.

The model predicts a key per note; the paper smooths it within each bar (post-processing step 7:
the majority of the bar's notes). Key signatures change rarely, so beyond that this module picks
the sequence of bar keys ``k_1 … k_B`` that maximises

    Σ_b score[b, k_b]  −  penalty · #{b : k_b ≠ k_{b−1}}

(a hidden Markov model over bars whose transition costs ``penalty`` for any change, solved
exactly by Viterbi in O(B·K)). Bars without notes take no part: they keep the previous bar's key
(the first bars, the first key), as in post-processing. ``penalty = 0`` is the per-bar argmax,
``penalty = inf`` one key for the whole piece (the best total score).

Bar scores (:func:`bar_scores`), per bar and key class, from the notes' key logits (averaged over
each chord first when ``chord`` is given, as post-processing does):

* ``"vote"`` (default): the share of the bar's notes whose argmax is the key, ties broken by the
  summed probability (``counts + prob / (n + 1)``, divided by ``n``) — the per-bar rule of
  ``postprocess.smooth_key``, so ``penalty = 0`` gives exactly its bar keys. A score is at most
  about one per bar: a penalty ``p`` lets a run of bars change key only when the run wins more
  than ``p`` bars' worth of votes (twice that for a run between two changes): a single clear
  flickering bar (margin about 1) goes when ``p`` is above about 0.5, a modulation of ``m`` clear
  bars in mid-piece stays while ``2p`` is below about ``m``.
* ``"logprob"``: the mean log-probability of the key over the bar's notes.

The penalty is chosen on validation pieces (:func:`choose_penalty`: the candidate with the best
sequence-smoothed key accuracy, ties to the larger penalty, i.e. fewer key changes), and
:func:`key_accuracy` reports raw (per-note argmax), per-bar and sequence-smoothed key accuracy side
by side. Post-processing runs :func:`smooth_key_sequence` when given a penalty
(``postprocess(..., key_change_penalty=p)``); evaluate@gnn chooses ``p`` (``evaluate.gnn.key_change_penalty:
auto``) and reports the three accuracies; a model folder's ``postprocess.json`` carries the chosen
value to ``overseer engrave`` and the served model (:data:`DEFAULT_KEY_CHANGE_PENALTY` without one).
Pure numpy: no model, no files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from overseer.engraving import schema
from overseer.engraving.postprocess import log_softmax

N_KEYS = len(schema.KEY_FIFTHS)
C_MAJOR = schema.KEY_FIFTHS.index(0)  # the key of a piece without notes
EMISSIONS = ("vote", "logprob")
# candidate penalties for choose_penalty, in bars' worth of votes ("vote" scores); finite, so that
# a chosen value goes into JSON and params (64: in practice one key unless a run wins 128 bars)
PENALTY_CANDIDATES: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
# the penalty of a model folder without postprocess.json (engrave, serving): a prior, not a fit. A
# flicker of up to about 3 clear bars goes, a modulation of 4 or more clear bars stays (two changes,
# 2 x 2 < 4 bars of votes). On the default data ``auto`` chooses 0 (its 3 validation pieces lose
# key accuracy when smoothed: README, engraving: key smoothing); export@gnn's postprocess.json
# carries whatever evaluate@gnn chose.
DEFAULT_KEY_CHANGE_PENALTY = 2.0


def _chord_mean(values: np.ndarray, chord: np.ndarray) -> np.ndarray:
    """Each row replaced by the mean of its chord's rows (chord ids: any integers)."""
    _, group = np.unique(np.asarray(chord), return_inverse=True)
    group = group.reshape(-1)
    sums = np.zeros((int(group.max()) + 1 if group.size else 0, values.shape[1]))
    np.add.at(sums, group, values)
    return (sums / np.bincount(group)[:, None])[group]


def bar_scores(
    key_logits: np.ndarray,
    bar: np.ndarray,
    n_bars: int,
    *,
    chord: np.ndarray | None = None,
    emission: str = "vote",
) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n_bars, 15) float64, has_notes (n_bars,) bool) from per-note key logits (module docstring)."""
    if emission not in EMISSIONS:
        raise ValueError(f"emission must be one of {EMISSIONS}, got {emission!r}")
    logits = np.asarray(key_logits, dtype=np.float64).reshape(-1, N_KEYS)
    bar = np.asarray(bar, dtype=np.int64).reshape(-1)
    if bar.size != logits.shape[0]:
        raise ValueError(f"{bar.size} bar indices for {logits.shape[0]} notes")
    if bar.size and (bar.min() < 0 or bar.max() >= n_bars):
        raise ValueError(f"bar indices must be in 0..{n_bars - 1}")
    if chord is not None and logits.shape[0]:
        logits = _chord_mean(logits, chord)
    logp = log_softmax(logits) if logits.shape[0] else logits
    n_in_bar = np.bincount(bar, minlength=n_bars).astype(np.float64)
    scores = np.zeros((n_bars, N_KEYS))
    if emission == "vote":
        np.add.at(scores, (bar, np.argmax(logp, axis=1)), 1.0)
        prob = np.zeros((n_bars, N_KEYS))
        np.add.at(prob, bar, np.exp(logp))
        scores += prob / (n_in_bar[:, None] + 1.0)
    else:
        np.add.at(scores, bar, logp)
    has = n_in_bar > 0
    scores[has] /= n_in_bar[has, None]
    return scores, has


def viterbi(scores: np.ndarray, penalty: float) -> np.ndarray:
    """The key path (B,) int64 maximising Σ scores[b, k_b] − penalty · changes; ties keep the key.

    ``penalty = 0``: the per-bar argmax (first maximum); ``inf``: one key, the best column sum.
    """
    scores = np.asarray(scores, dtype=np.float64)
    penalty = float(penalty)
    if penalty < 0 or np.isnan(penalty):
        raise ValueError(f"the key change penalty must be >= 0, got {penalty}")
    n_bars = scores.shape[0]
    if n_bars == 0:
        return np.zeros(0, dtype=np.int64)
    if penalty == 0:
        return np.argmax(scores, axis=1)
    if np.isinf(penalty):
        return np.full(n_bars, int(np.argmax(scores.sum(axis=0))), dtype=np.int64)
    back = np.zeros((n_bars, scores.shape[1]), dtype=np.int64)
    delta = scores[0].copy()
    for b in range(1, n_bars):
        best = int(np.argmax(delta))
        switch = delta[best] - penalty
        stay = delta >= switch  # ties keep the key
        back[b] = np.where(stay, np.arange(scores.shape[1]), best)
        delta = np.where(stay, delta, switch) + scores[b]
    path = np.zeros(n_bars, dtype=np.int64)
    path[-1] = int(np.argmax(delta))
    for b in range(n_bars - 1, 0, -1):
        path[b - 1] = back[b, path[b]]
    return path


def smooth_key_sequence(
    key_logits: np.ndarray,
    bar: np.ndarray,
    n_bars: int,
    penalty: float,
    *,
    chord: np.ndarray | None = None,
    emission: str = "vote",
) -> np.ndarray:
    """One key class per bar (n_bars,) int16: the Viterbi path over the bars with notes, the others
    keeping the previous bar's key (leading ones the first key; C major when no bar has notes)."""
    scores, has = bar_scores(key_logits, bar, n_bars, chord=chord, emission=emission)
    if not has.any():
        return np.full(n_bars, C_MAJOR, dtype=np.int16)
    idx = np.flatnonzero(has)
    keys = viterbi(scores[idx], penalty)
    owner = np.maximum(np.searchsorted(idx, np.arange(n_bars), side="right") - 1, 0)  # the last bar with notes
    return keys[owner].astype(np.int16)


def n_changes(bar_key: np.ndarray) -> int:
    """Key signature changes in a sequence of bar keys."""
    bar_key = np.asarray(bar_key)
    return int((bar_key[1:] != bar_key[:-1]).sum())


# --- validation: the three accuracies and the choice of the penalty ------------------------------------------


@dataclass
class KeyItem:
    """What key smoothing needs of one piece: its notes' key logits, bars, truth (-1 unknown), chords."""

    logits: np.ndarray  # (n, 15)
    bar: np.ndarray  # (n,)
    n_bars: int
    y_key: np.ndarray  # (n,)
    chord: np.ndarray | None = None  # post-processing's chord per note, or None (notes alone)

    @classmethod
    def of(
        cls, piece: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray], chord: np.ndarray | None = None
    ) -> KeyItem:
        """From a prepared piece (schema arrays) and its predictions (``logits_key``)."""
        return cls(pred["logits_key"], piece["bar"], int(np.asarray(piece["bar_start"]).size), piece["y_key"], chord)


@dataclass
class KeyAccuracy:
    """Key accuracy over the known notes of some pieces: raw argmax, per bar, over the piece."""

    raw: float
    per_bar: float
    sequence: float
    penalty: float
    notes: int  # known key labels
    changes_per_bar: int  # key changes over all pieces, per-bar smoothing
    changes_sequence: int  # the same, sequence smoothing
    true_changes: int = 0  # in the truth (bars keyed by their first known note)

    def as_dict(self, prefix: str = "acc_key_") -> dict[str, float]:
        return {
            f"{prefix}raw": self.raw,
            f"{prefix}bar": self.per_bar,
            f"{prefix}sequence": self.sequence,
            "key_change_penalty": self.penalty,
            "key_changes_bar": self.changes_per_bar,
            "key_changes_sequence": self.changes_sequence,
            "key_changes_true": self.true_changes,
        }


def _true_bar_key(item: KeyItem) -> np.ndarray:
    y = np.asarray(item.y_key)
    known = y >= 0
    _, first = np.unique(np.asarray(item.bar)[known], return_index=True)  # bars in order, first known note
    return y[known][first]


def key_accuracy(items: Sequence[KeyItem], penalty: float, *, emission: str = "vote") -> KeyAccuracy:
    """Raw, per-bar (penalty 0) and sequence-smoothed (``penalty``) key accuracy, micro-averaged over
    the known key labels of ``items``, and the key changes each writes."""
    hits = np.zeros(3)
    total = changes_bar = changes_seq = true_changes = 0
    for item in items:
        y = np.asarray(item.y_key)
        known = y >= 0
        bar = np.asarray(item.bar, dtype=np.int64)
        per_bar = smooth_key_sequence(item.logits, bar, item.n_bars, 0.0, chord=item.chord, emission=emission)
        seq = smooth_key_sequence(item.logits, bar, item.n_bars, penalty, chord=item.chord, emission=emission)
        raw = np.argmax(np.asarray(item.logits), axis=1) if y.size else np.zeros(0, dtype=np.int64)
        for i, labels in enumerate((raw, per_bar[bar], seq[bar])):
            hits[i] += int((labels[known] == y[known]).sum())
        total += int(known.sum())
        changes_bar += n_changes(per_bar)
        changes_seq += n_changes(seq)
        true_changes += n_changes(_true_bar_key(item))
    acc = hits / total if total else np.full(3, np.nan)
    return KeyAccuracy(*map(float, acc), float(penalty), total, changes_bar, changes_seq, true_changes)


@dataclass
class PenaltyChoice:
    """The chosen penalty and, per candidate, the sequence-smoothed accuracy and key changes written."""

    penalty: float
    accuracy: dict[float, float] = field(default_factory=dict)  # sequence-smoothed accuracy per candidate
    changes: dict[float, int] = field(default_factory=dict)  # key changes written per candidate
    n_pieces: int = 0  # the pieces the choice was made on

    def table(self) -> list[dict[str, float]]:
        """One row per candidate: ``penalty``, ``accuracy`` (validation key accuracy, sequence-smoothed),
        ``changes_per_piece`` (mean key changes written per piece) and ``chosen`` (1 or 0)."""
        n = max(self.n_pieces, 1)
        return [
            {
                "penalty": p, "accuracy": self.accuracy[p], "changes_per_piece": self.changes.get(p, 0) / n,
                "chosen": float(p == self.penalty),
            }
            for p in sorted(self.accuracy)
        ]  # fmt: skip


def choose_penalty(
    items: Sequence[KeyItem],
    candidates: Sequence[float] = PENALTY_CANDIDATES,
    *,
    emission: str = "vote",
) -> PenaltyChoice:
    """The candidate penalty with the best sequence-smoothed key accuracy on ``items`` (validation
    pieces). Of tied candidates (a plateau, common on few pieces) the largest is taken: the fewest
    key changes for the same accuracy (a piece in one key then shows one key signature)."""
    if not candidates:
        raise ValueError("choose_penalty needs at least one candidate penalty")
    values = sorted({float(c) for c in candidates})
    accuracy, changes = {}, {}
    for p in values:
        result = key_accuracy(items, p, emission=emission)
        accuracy[p], changes[p] = result.sequence, result.changes_sequence
    scores = np.array([accuracy[p] for p in values])
    if np.isnan(scores).all():
        return PenaltyChoice(values[0], accuracy, changes, len(items))
    best = np.flatnonzero(np.isclose(scores, np.nanmax(scores), rtol=0.0, atol=1e-12))
    return PenaltyChoice(values[int(best[-1])], accuracy, changes, len(items))
