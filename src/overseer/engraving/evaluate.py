"""evaluate@gnn: the paper's metrics (§3.2) on held-out pieces, after post-processing (§2.7).

Each test piece is predicted whole, post-processed (chord pooling, voice assignment, averaged
logits, key smoothing, …) and the engraved result is turned back into the scoring labels of
:mod:`overseer.engraving.scoring`: node labels per task, voice links between consecutive chords
of each (bar, staff, voice), and chord links between the notes of each pooled chord. Raw
(argmax / p ≥ 0.5) scores are reported beside them, so the effect of post-processing is visible.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from overseer.engraving import schema
from overseer.engraving.postprocess import postprocess
from overseer.engraving.scoring import labels_from_predictions, reports, score_pieces, table1, table_markdown
from overseer.io import write_json, write_text
from overseer.metrics import write_report

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

    The truth side (``labels.voice_truth``) links a note to the notes at the first onset of its
    voice at or after its end, within the bar; a post-processed voice is monophonic at the chord
    level, so its next chord is exactly that.
    """
    frame = pd.DataFrame({"onset": onset, "bar": bar, "staff": staff, "voice": voice, "note": np.arange(onset.size)})
    links = []
    for _, group in frame.groupby(["bar", "staff", "voice"], sort=False):
        onsets = np.unique(group["onset"].to_numpy())
        by_onset = {t: group["note"].to_numpy()[group["onset"].to_numpy() == t] for t in onsets}
        for a, b in itertools.pairwise(onsets):
            u, w = np.meshgrid(by_onset[a], by_onset[b], indexing="ij")
            links.append(np.stack([u.ravel(), w.ravel()]))
    return np.concatenate(links, axis=1).astype(np.int64) if links else np.zeros((2, 0), dtype=np.int64)


def labels_from_postprocessed(piece: Mapping[str, np.ndarray], res: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scoring labels (``scoring`` module docstring) of a post-processed piece."""
    labels = {task: np.asarray(res[task]).astype(np.int64) for task in schema.NODE_TASKS if task != "staff"}
    labels["staff"] = np.asarray(res["staff"]).astype(np.int64) - 1  # written staff 1/2 -> class 0/1
    labels["voice_edges"] = voice_links(np.asarray(piece["onset"]), piece["bar"], res["staff"], res["voice"])
    labels["chord_edges"] = chord_links(res["chord"])
    return labels


@dataclass
class Evaluation:
    raw: dict[str, float]
    post: dict[str, float]
    table: pd.DataFrame
    n_pieces: int

    def summary(self) -> dict[str, Any]:
        return {"n_pieces": self.n_pieces, "post_processed": self.post, "raw": self.raw}


def evaluate_pieces(
    pieces: Sequence[Mapping[str, np.ndarray]],
    names: Sequence[str],
    predict: Predict,
    out_dir: str | os.PathLike,
    *,
    threshold: float = 0.5,
    min_clef_run: int = 4,
) -> Evaluation:
    """Predict, post-process and score ``pieces``; write metrics.json, table1.md and per-task reports."""
    out = Path(out_dir)
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
    evaluation = Evaluation(raw, post, table, len(pieces))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", evaluation.summary())
    write_text(out / "table1.md", table_markdown(table))
    for task, report in reports(post_labels, pieces, names).items():
        # per task: summary, per-class scores, confusion matrix (and its plots for the small class sets);
        # per-note predictions would be megabytes per run in git
        write_report(report, out / "tasks" / task, plots=len(report.class_names) <= 4, items=False)
    return evaluation
