"""The paper's evaluation metrics (§3.2), micro-averaged over the notes and edges of held-out pieces.

Everything takes plain NumPy arrays, so evaluation can score raw model outputs
(:func:`labels_from_predictions`) or post-processed ones alike. A piece's *labels* are a dict:

* ``<task>`` (n,) int for every task of ``schema.NODE_TASKS`` — the predicted class per note;
* ``voice_edges`` (2, E) int — the predicted voice links u → w (w follows u in one voice);
* ``chord_edges`` (2, E') int — the predicted chord links (pairs of notes in one chord, any order).

Metrics (fractions in [0, 1]; :func:`table1` shows percentages like the paper's Table 1):

* **Voice F1** — the homophonic F1 of Hiramatsu et al. as implemented by Foscarin et al.
  (``piano_svsep.utils.compute_voice_f1_score``): every edge of a set is weighted by 1 / out-degree of
  its source node *in that same set*, so a chord-to-chord link counts once in total, however many
  notes the chords have. Precision = Σ_{predicted edges also true} w_pred / Σ_{predicted edges} w_pred,
  recall = Σ_{true edges also predicted} w_true / Σ_{true edges} w_true (w_pred from the predicted
  set's out-degrees, w_true from the true set's), F1 their harmonic mean. The true set is the
  voice candidates labelled 1; candidates labelled -1 (unknown) are removed from both sets.
  Micro-averaging sums the four weighted sums over pieces before dividing.
* **Chord F1** — "the standard F1 score over all candidate chord-edges" (§3.2): binary F1 over the
  labelled chord candidates (same onset), a candidate being predicted positive iff its pair (in
  either order) is among ``chord_edges``; predicted pairs that are not candidates are ignored.
* **Undefined F1** — a set (a piece, or the pooled pieces) with no true edge and no predicted one
  has no precision, recall or F1: they are NaN, not 0 (a perfect prediction of "no chord here"
  is not a failure). Such a piece adds nothing to the pooled sums, so it is left out of the
  micro-average; the pooled F1 is NaN only when every piece is. With true edges but no
  prediction (or the reverse) precision (recall) is 0 and so is F1.
* **Accuracy** per node task — correct / labelled notes (labels -1 excluded).
* **Symbolic duration accuracy** — notes whose note type, dots and tuplet are all three correct,
  over the notes where all three are labelled (§3.2: "all three sub-predictions simultaneously").

:func:`reports` gives the project's full classification report (confusion matrix etc.,
``overseer.metrics.classification_report``) per node task and for the voice and chord candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from overseer.engraving import schema
from overseer.metrics import ClassificationReport, classification_report

TABLE1_COLUMNS: dict[str, str] = {
    "Voice F1": "voice_f1",
    "Chord F1": "chord_f1",
    "Staff Acc": "acc_staff",
    "Pitch Spelling Acc": "acc_spelling",
    "Key Acc": "acc_key",
    "Stem Acc": "acc_stem",
    "Octave Acc": "acc_octave_shift",
    "Clef Acc": "acc_clef",
    "Sym. Dur. Acc": "acc_duration",
}
# Table 1 of the paper, EngravingGNN on the DCML Romantic test set (percent)
PAPER_DCML: dict[str, float] = {
    "Voice F1": 90.6,
    "Chord F1": 81.1,
    "Staff Acc": 91.9,
    "Pitch Spelling Acc": 93.5,
    "Key Acc": 50.5,
    "Stem Acc": 73.6,
    "Octave Acc": 100.0,
    "Clef Acc": 90.0,
    "Sym. Dur. Acc": 83.3,
}
PAPER_ROW = "EngravingGNN (paper, DCML Romantic)"


@dataclass(frozen=True)
class F1Counts:
    """Sums from which precision, recall and F1 follow; ``+`` pools pieces (micro-averaging).

    For a plain binary F1 the sums are counts (matched_pred = matched_true = TP, total_pred = TP + FP,
    total_true = TP + FN); for the homophonic F1 they are sums of 1/out-degree weights.
    """

    matched_pred: float = 0.0
    total_pred: float = 0.0
    matched_true: float = 0.0
    total_true: float = 0.0

    def __add__(self, other: F1Counts) -> F1Counts:
        return F1Counts(
            self.matched_pred + other.matched_pred,
            self.total_pred + other.total_pred,
            self.matched_true + other.matched_true,
            self.total_true + other.total_true,
        )

    @property
    def defined(self) -> bool:
        """False when nothing is true and nothing predicted: no F1 to speak of (module docstring)."""
        return bool(self.total_pred or self.total_true)

    @property
    def precision(self) -> float:
        if not self.defined:
            return float("nan")
        return self.matched_pred / self.total_pred if self.total_pred else 0.0

    @property
    def recall(self) -> float:
        if not self.defined:
            return float("nan")
        return self.matched_true / self.total_true if self.total_true else 0.0

    @property
    def f1(self) -> float:
        if not self.defined:
            return float("nan")
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _edge_keys(edges: np.ndarray) -> np.ndarray:
    e = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    return np.unique(e[0] * (1 << 32) + e[1])


def _weighted(keys: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(Σ matched weights, Σ weights) of a unique edge-key set, weights 1 / out-degree of the source."""
    if not keys.size:
        return 0.0, 0.0
    src = keys >> 32
    _, inverse, degree = np.unique(src, return_inverse=True, return_counts=True)
    weight = 1.0 / degree[inverse]
    return float(weight[np.isin(keys, other)].sum()), float(weight.sum())


def homophonic_counts(pred_edges: np.ndarray, true_edges: np.ndarray) -> F1Counts:
    """Homophonic-F1 sums of one piece: edges (2, E) as u → w; duplicates count once."""
    pred, true = _edge_keys(pred_edges), _edge_keys(true_edges)
    mp, tp = _weighted(pred, true)
    mt, tt = _weighted(true, pred)
    return F1Counts(mp, tp, mt, tt)


def homophonic_f1(pred_edges: np.ndarray, true_edges: np.ndarray) -> float:
    """The homophonic F1 of Hiramatsu et al. for one piece (see the module docstring)."""
    return homophonic_counts(pred_edges, true_edges).f1


def voice_counts(pred_edges: np.ndarray, voice_cand: np.ndarray, y_voice: np.ndarray) -> F1Counts:
    """Homophonic sums against the labelled voice candidates; unknown (-1) candidates are dropped."""
    cand = np.asarray(voice_cand, dtype=np.int64).reshape(2, -1)
    y = np.asarray(y_voice)
    pred = np.asarray(pred_edges, dtype=np.int64).reshape(2, -1)
    unknown = _edge_keys(cand[:, y < 0])
    if unknown.size and pred.size:
        pred = pred[:, ~np.isin(pred[0] * (1 << 32) + pred[1], unknown)]
    return homophonic_counts(pred, cand[:, y == 1])


def binary_counts(pred: np.ndarray, truth: np.ndarray) -> F1Counts:
    """Plain binary F1 counts over items with a known truth (truth -1 excluded)."""
    t = np.asarray(truth).ravel()
    p = np.asarray(pred, dtype=bool).ravel()
    known = t >= 0
    p, t = p[known], t[known] == 1
    tp = float(np.sum(p & t))
    return F1Counts(tp, float(p.sum()), tp, float(t.sum()))


def candidates_in(edges: np.ndarray, cand: np.ndarray, *, undirected: bool) -> np.ndarray:
    """Boolean mask over the candidate pairs (2, C): which ones are among ``edges`` (2, E)."""
    e = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    c = np.asarray(cand, dtype=np.int64).reshape(2, -1)
    if undirected:
        e, c = np.sort(e, axis=0), np.sort(c, axis=0)
    return np.isin(c[0] * (1 << 32) + c[1], e[0] * (1 << 32) + e[1])


def chord_counts(pred_edges: np.ndarray, chord_cand: np.ndarray, y_chord: np.ndarray) -> F1Counts:
    """Chord F1 counts over the labelled chord candidates (§3.2)."""
    return binary_counts(candidates_in(pred_edges, chord_cand, undirected=True), y_chord)


def accuracy_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(correct, labelled) over the items whose truth is known (>= 0)."""
    t = np.asarray(truth).ravel()
    p = np.asarray(pred).ravel()
    known = t >= 0
    return int(np.sum(p[known] == t[known])), int(known.sum())


def duration_counts(pred: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(jointly correct, labelled) for symbolic duration: note type, dots and tuplet all right (§3.2).

    ``pred`` and ``truth`` map each name of ``schema.DURATION_TASKS`` to (n,) labels.
    """
    known = np.logical_and.reduce([np.asarray(truth[t]) >= 0 for t in schema.DURATION_TASKS])
    right = np.logical_and.reduce([np.asarray(pred[t]) == np.asarray(truth[t]) for t in schema.DURATION_TASKS])
    return int(np.sum(right & known)), int(known.sum())


def labels_from_predictions(
    pred: Mapping[str, np.ndarray], piece: Mapping[str, np.ndarray], threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """Raw model predictions (``logits_<task>``, ``p_voice``, ``p_chord``) → labels: argmax and p >= threshold."""
    out: dict[str, np.ndarray] = {t: np.asarray(pred[f"logits_{t}"]).argmax(axis=1) for t in schema.NODE_TASKS}
    for kind in schema.EDGE_TASKS:
        cand = np.asarray(piece[f"{kind}_cand"]).reshape(2, -1)
        out[f"{kind}_edges"] = cand[:, np.asarray(pred[f"p_{kind}"]) >= threshold]
    return out


@dataclass
class Scores:
    """Pooled counts over pieces; ``metrics()`` turns them into the flat metric dict."""

    voice: F1Counts
    chord: F1Counts
    node: dict[str, tuple[int, int]]
    duration: tuple[int, int]
    n_pieces: int = 0
    n_notes: int = 0

    def metrics(self) -> dict[str, float]:
        out = {
            "voice_f1": self.voice.f1,
            "voice_precision": self.voice.precision,
            "voice_recall": self.voice.recall,
            "chord_f1": self.chord.f1,
            "chord_precision": self.chord.precision,
            "chord_recall": self.chord.recall,
        }
        out.update({f"acc_{t}": (c / n if n else 0.0) for t, (c, n) in self.node.items()})
        c, n = self.duration
        out["acc_duration"] = c / n if n else 0.0
        out["n_pieces"] = float(self.n_pieces)
        out["n_notes"] = float(self.n_notes)
        return out


def score_piece(labels: Mapping[str, np.ndarray], piece: Mapping[str, np.ndarray]) -> Scores:
    """The counts of one piece: ``labels`` as in the module docstring, ``piece`` the schema arrays (truth)."""
    node = {t: accuracy_counts(labels[t], piece[f"y_{t}"]) for t in schema.NODE_TASKS}
    truth = {t: piece[f"y_{t}"] for t in schema.DURATION_TASKS}
    return Scores(
        voice=voice_counts(labels["voice_edges"], piece["voice_cand"], piece["y_voice"]),
        chord=chord_counts(labels["chord_edges"], piece["chord_cand"], piece["y_chord"]),
        node=node,
        duration=duration_counts(labels, truth),
        n_pieces=1,
        n_notes=len(piece["x"]),
    )


def score_pieces(
    labels: Sequence[Mapping[str, np.ndarray]], pieces: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, float]:
    """Micro-averaged metrics over pieces (§3.2): counts summed over pieces, then divided."""
    if len(labels) != len(pieces):
        raise ValueError(f"{len(labels)} label sets for {len(pieces)} pieces")
    total = Scores(F1Counts(), F1Counts(), {t: (0, 0) for t in schema.NODE_TASKS}, (0, 0))
    for lab, piece in zip(labels, pieces, strict=True):
        s = score_piece(lab, piece)
        total.voice += s.voice
        total.chord += s.chord
        total.node = {t: (total.node[t][0] + c, total.node[t][1] + n) for t, (c, n) in s.node.items()}
        total.duration = (total.duration[0] + s.duration[0], total.duration[1] + s.duration[1])
        total.n_pieces += 1
        total.n_notes += s.n_notes
    return total.metrics()


def reports(
    labels: Sequence[Mapping[str, np.ndarray]],
    pieces: Sequence[Mapping[str, np.ndarray]],
    piece_names: Sequence[str] | None = None,
) -> dict[str, ClassificationReport]:
    """Classification reports (confusion matrix, per-class scores) per node task, voice and chord candidates.

    Items are the labelled notes (or candidates) of all pieces, named ``<piece>:<index>``. A note
    whose prediction is outside the class set (post-processing's generic tuplet ratio, -1) has no
    cell in a confusion matrix: it is left out of the report — :func:`score_pieces` counts it wrong.
    """
    names = [str(i) for i in range(len(pieces))] if piece_names is None else [str(n) for n in piece_names]
    out: dict[str, ClassificationReport] = {}
    for task, classes in schema.NODE_TASKS.items():
        true, pred, ids = [], [], []
        for name, lab, piece in zip(names, labels, pieces, strict=True):
            t, p = np.asarray(piece[f"y_{task}"]), np.asarray(lab[task])
            known = np.flatnonzero((t >= 0) & (p >= 0) & (p < len(classes)))
            true.append(t[known])
            pred.append(p[known])
            ids.extend(f"{name}:{i}" for i in known)
        out[task] = classification_report(np.concatenate(true), np.concatenate(pred), classes, item_ids=ids)
    for kind in schema.EDGE_TASKS:
        true, pred, ids = [], [], []
        for name, lab, piece in zip(names, labels, pieces, strict=True):
            cand = piece[f"{kind}_cand"]
            t = np.asarray(piece[f"y_{kind}"])
            p = candidates_in(lab[f"{kind}_edges"], cand, undirected=kind == "chord")
            known = np.flatnonzero(t >= 0)
            true.append(t[known])
            pred.append(p[known].astype(np.int64))
            ids.extend(f"{name}:{int(cand[0][i])}-{int(cand[1][i])}" for i in known)
        out[kind] = classification_report(np.concatenate(true), np.concatenate(pred), ("no", "yes"), item_ids=ids)
    return out


def table1(results: Mapping[str, Mapping[str, float]], reference: bool = True) -> pd.DataFrame:
    """Rows shaped like the paper's Table 1 (percent, one decimal) from metric dicts by model name.

    ``results`` maps a row name to a metric dict of :func:`score_pieces` (fractions). With
    ``reference`` the paper's EngravingGNN row on DCML Romantic is appended for comparison.
    """
    rows = {
        name: {col: round(100.0 * float(m[key]), 1) if key in m else np.nan for col, key in TABLE1_COLUMNS.items()}
        for name, m in results.items()
    }
    if reference:
        rows[PAPER_ROW] = dict(PAPER_DCML)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(TABLE1_COLUMNS))
    frame.index.name = "Model"
    return frame


def table_markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (numbers with one decimal, '-' for missing)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "-" if np.isnan(v) else f"{v:.1f}"
        return str(v)

    head = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(frame.columns)) + "|"]
    for name, row in frame.iterrows():
        lines.append("| " + " | ".join([str(name), *(cell(v) for v in row.tolist())]) + " |")
    return "\n".join(lines) + "\n"
