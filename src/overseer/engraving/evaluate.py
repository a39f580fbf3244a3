"""evaluate@gnn: the paper's metrics (§3.2) on held-out pieces, after post-processing (§2.7).

Each test piece is predicted whole, post-processed (chord pooling, voice assignment, averaged
logits, key smoothing, …) and the engraved result is turned back into the scoring labels of
:mod:`overseer.engraving.scoring`: node labels per task, voice links between consecutive chords
of each (bar, staff, voice), and chord links between the notes of each pooled chord. Raw
(argmax / p ≥ 0.5) scores are reported beside them, so the effect of post-processing is visible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from overseer.engraving import schema
from overseer.engraving.data.labels import voice_successors
from overseer.engraving.postprocess import postprocess
from overseer.engraving.scoring import labels_from_predictions, reports, score_pieces, table1, table_markdown
from overseer.metrics import ClassificationReport

Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
RAW_ROW = "Overseer EngravingGNN (raw argmax)"
POST_ROW = "Overseer EngravingGNN (post-processed)"


def chord_links(chord: np.ndarray) -> np.ndarray:
    """(2, E) pairs u < w of notes that share a chord id."""
    chord = np.asarray(chord)
    order = np.argsort(chord, kind="stable")
    pairs = []
    sorted_ids = chord[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], chord.size], strict=True):
        members = np.sort(order[start:end])
        if members.size > 1:
            u, w = np.triu_indices(members.size, k=1)
            pairs.append(np.stack([members[u], members[w]]))
    return np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), dtype=np.int64)


def voice_links(onset: np.ndarray, bar: np.ndarray, staff: np.ndarray, voice: np.ndarray) -> np.ndarray:
    """(2, E) links from every note of a chord to every note of the next chord of its (bar, staff, voice).

    ``labels.voice_successors`` in its next-chord form (no durations): the truth side
    (``labels.voice_truth``) is the same function with durations, linking a note to the notes at the
    first onset of its voice at or after its end; a post-processed voice tiles its bar (no overlap,
    one length per chord), so on it the two forms are the same relation.
    """
    return voice_successors(np.asarray(onset, dtype=np.float64), bar, staff, voice)


def labels_from_postprocessed(piece: Mapping[str, np.ndarray], res: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scoring labels (``scoring`` module docstring) of a post-processed piece."""
    labels = {task: np.asarray(res[task]).astype(np.int64) for task in schema.NODE_TASKS if task != "staff"}
    labels["staff"] = np.asarray(res["staff"]).astype(np.int64) - 1  # written staff 1/2 -> class 0/1
    labels["voice_edges"] = voice_links(np.asarray(piece["onset"]), piece["bar"], res["staff"], res["voice"])
    labels["chord_edges"] = chord_links(res["chord"])
    return labels


@dataclass
class Evaluation:
    """Scores raw and after post-processing, the Table 1 layout, per-task reports of the
    post-processed labels, and the evaluation folder's summary files by name."""

    raw: dict[str, float]
    post: dict[str, float]
    table: pd.DataFrame
    n_pieces: int
    tasks: dict[str, ClassificationReport] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"n_pieces": self.n_pieces, "post_processed": self.post, "raw": self.raw}


def evaluate_pieces(
    pieces: Sequence[Mapping[str, np.ndarray]],
    names: Sequence[str],
    predict: Predict,
    *,
    threshold: float = 0.5,
    min_clef_run: int = 4,
) -> Evaluation:
    """Predict, post-process and score ``pieces``: metrics.json, table1.md and per-task reports."""
    raw_labels, post_labels = [], []
    if len(names) != len(pieces):
        raise ValueError(f"{len(names)} names for {len(pieces)} pieces")
    for piece in tqdm(pieces, desc="evaluate@gnn", unit="piece"):
        pred = predict(piece)
        raw_labels.append(labels_from_predictions(pred, piece, threshold))
        res = postprocess(dict(piece), dict(pred), threshold=threshold, min_clef_run=min_clef_run)
        post_labels.append(labels_from_postprocessed(piece, res))
    raw, post = score_pieces(raw_labels, pieces), score_pieces(post_labels, pieces)
    table = table1({POST_ROW: post, RAW_ROW: raw})
    evaluation = Evaluation(raw, post, table, len(pieces), reports(post_labels, pieces, names))
    evaluation.artifacts = {"metrics.json": evaluation.summary(), "table1.md": table_markdown(table)}
    return evaluation
