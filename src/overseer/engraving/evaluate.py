"""evaluate@gnn: the paper's metrics (§3.2) on held-out pieces, after post-processing (§2.7).

Each test piece is predicted whole, post-processed (chord pooling, voice assignment, averaged
logits, key smoothing, …) and the engraved result is turned back into the scoring labels of
:mod:`overseer.engraving.scoring`: node labels per task, voice links between consecutive chords
of each (bar, staff, voice), and chord links between the notes of each pooled chord. Raw
(argmax / p ≥ 0.5) scores are reported beside them, so the effect of post-processing is visible.

One bad piece never aborts an evaluation: a piece whose prediction or post-processing fails is
skipped with its reason (one line), counted in ``metrics.json`` (``n_skipped``) and listed in
``skipped.csv``; ``pieces.csv`` has one row per scored piece (its notes, each metric after
post-processing and raw, ``raw_<metric>``). For the heads people read as confusions
(``CONFUSION_TASKS``: stem direction, clef) ``tasks/<task>/predictions.csv`` lists every scored
note's true and post-processed class by name (``actual``, ``predicted``), what ``dvc plots``
draws as a confusion matrix; the other tasks keep counts only (per-note rows for all of them would
be megabytes per run in git).

Key (issue 13): ``key_change_penalty`` smooths the bar keys over each piece (:mod:`.key_smoothing`),
so Table 1's post-processed Key Acc is then the sequence-smoothed one. ``metrics.json``'s ``key``
holds the key accuracy raw (per-note argmax), per bar (the paper's post-processing) and
sequence-smoothed side by side, the penalty, and the mean key changes per piece each writes (and
the truth's). :func:`choose_key_penalty` picks the penalty on validation pieces
(``evaluate.gnn.key_change_penalty: auto``); its candidates' accuracies go to ``key_penalty.csv``.

:mod:`.corpus_eval` runs the same evaluation on any folder of scores (``overseer evaluate engraving``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from overseer.engraving import postprocess as pp
from overseer.engraving import schema
from overseer.engraving.data.labels import voice_successors
from overseer.engraving.data.scores import one_line
from overseer.engraving.key_smoothing import PENALTY_CANDIDATES, KeyItem, PenaltyChoice, choose_penalty, key_accuracy
from overseer.engraving.postprocess import postprocess
from overseer.engraving.scoring import labels_from_predictions, reports, score_pieces, table1, table_markdown
from overseer.errors import InputError
from overseer.metrics import ClassificationReport

log = logging.getLogger(__name__)
Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
RAW_ROW = "Overseer EngravingGNN (raw argmax)"
POST_ROW = "Overseer EngravingGNN (post-processed)"
PIECE_METRICS = (
    "voice_f1", "voice_precision", "voice_recall", "chord_f1", "chord_precision", "chord_recall",
    *(f"acc_{task}" for task in schema.NODE_TASKS), "acc_duration",
)  # fmt: skip
SKIPPED_COLUMNS = ("piece", "path", "step", "reason")
CONFUSION_TASKS = ("stem", "clef")  # per-note predictions.csv for dvc plots' confusion template


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
    post-processed labels, the scores per piece, the pieces skipped (``piece``, ``path``, ``step``,
    ``reason``) and the evaluation folder's summary files by name."""

    raw: dict[str, float]
    post: dict[str, float]
    table: pd.DataFrame
    n_pieces: int
    tasks: dict[str, ClassificationReport] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    per_piece: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[dict[str, str]] = field(default_factory=list)
    key: dict[str, float] = field(default_factory=dict)  # key_metrics: raw, per_bar, sequence, penalty, changes

    def summary(self) -> dict[str, Any]:
        out = {"n_pieces": self.n_pieces, "n_skipped": len(self.skipped), "post_processed": self.post, "raw": self.raw}
        return {**out, "key": self.key} if self.key else out


def key_metrics(items: Sequence[KeyItem], penalty: float | None) -> dict[str, float]:
    """``metrics.json``'s ``key`` (numbers only): accuracy ``raw``, ``per_bar``, ``sequence``, the
    ``penalty`` (0: none), ``notes`` (known key labels) and the mean key changes per piece written per
    bar (``changes_per_bar``), sequence-smoothed (``changes_sequence``) and in the truth (``changes_true``)."""
    acc = key_accuracy(items, float(penalty or 0.0))
    n = max(len(items), 1)
    return {
        "raw": acc.raw, "per_bar": acc.per_bar, "sequence": acc.sequence, "penalty": acc.penalty,
        "notes": float(acc.notes), "changes_per_bar": acc.changes_per_bar / n,
        "changes_sequence": acc.changes_sequence / n, "changes_true": acc.true_changes / n,
    }  # fmt: skip


def key_item(piece: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray], threshold: float = 0.5) -> KeyItem:
    """What key smoothing needs of one predicted piece, its notes pooled into chords as post-processing
    pools them (steps 0-2: notated times, predicted staff, chord edges with ``p >= threshold``)."""
    notated = pp.notated_piece(dict(piece))
    chord = pp.pool_chords(notated, np.asarray(pred["p_chord"]), pp.predict_staff(dict(pred)), threshold=threshold)
    return KeyItem.of(piece, pred, chord=chord)


def choose_key_penalty(
    setting: str | float,
    pieces: Sequence[Mapping[str, np.ndarray]],
    predict: Predict,
    *,
    threshold: float = 0.5,
    candidates: Sequence[float] = PENALTY_CANDIDATES,
    progress: bool = True,
) -> PenaltyChoice:
    """The key change penalty of ``evaluate.gnn.key_change_penalty``: a number as it is (0: per-bar
    keys; nothing predicted), ``"auto"`` the candidate with the best sequence-smoothed key accuracy on
    ``pieces`` (the validation split; ties to the larger penalty: :func:`.key_smoothing.choose_penalty`).
    A validation piece that cannot be predicted is left out (logged); none at all is an InputError."""
    if setting != "auto":
        return PenaltyChoice(float(setting))
    items = []
    for k, piece in enumerate(tqdm(pieces, desc="key penalty", unit="piece", disable=not progress)):
        try:
            items.append(key_item(piece, predict(piece), threshold))
        except Exception as exc:  # noqa: BLE001 - one bad validation piece never aborts the choice
            log.warning("key penalty: leaving out validation piece %d: %s", k, one_line(f"{type(exc).__name__}: {exc}"))
    if not items:
        raise InputError(f"no validation piece to choose the key change penalty on ({len(pieces)} given)")
    return choose_penalty(items, candidates)


def penalty_table(choice: PenaltyChoice) -> str:
    """``key_penalty.csv``: per candidate penalty the validation key accuracy (sequence-smoothed), the
    mean key changes per validation piece and whether it was chosen (``PenaltyChoice.table``)."""
    columns = ["penalty", "accuracy", "changes_per_piece", "chosen"]
    return pd.DataFrame(choice.table(), columns=columns).to_csv(index=False, float_format="%.6g")


def skipped_table(skipped: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The skipped pieces as ``skipped.csv`` holds them (reasons one line)."""
    rows = [
        {c: one_line(s.get(c) or "") if c == "reason" else s.get(c) or "" for c in SKIPPED_COLUMNS} for s in skipped
    ]
    return pd.DataFrame(rows, columns=list(SKIPPED_COLUMNS))


def confusion_tables(
    tasks: Mapping[str, ClassificationReport], names: Sequence[str] = CONFUSION_TASKS
) -> dict[str, str]:
    """``tasks/<task>/predictions.csv`` (``actual``, ``predicted``: class names, one row per scored
    note, post-processed) for each of ``names`` that ``tasks`` reports, by file name."""
    return {
        f"tasks/{task}/predictions.csv": tasks[task].predictions[["actual", "predicted"]].to_csv(index=False)
        for task in names
        if task in tasks
    }


def _piece_row(name: str, path: str | None, piece: Mapping, post: Mapping, raw: Mapping) -> dict[str, Any]:
    one = {"post": score_pieces([post], [piece]), "raw": score_pieces([raw], [piece])}
    row: dict[str, Any] = {"piece": name, "path": path or "", "notes": int(np.asarray(piece["onset"]).size)}
    row.update({m: one["post"][m] for m in PIECE_METRICS})
    row.update({f"raw_{m}": one["raw"][m] for m in PIECE_METRICS})
    return row


def evaluate_pieces(
    pieces: Sequence[Mapping[str, np.ndarray]],
    names: Sequence[str],
    predict: Predict,
    *,
    threshold: float = 0.5,
    min_clef_run: int = 4,
    paths: Sequence[str] | None = None,
    desc: str = "evaluate@gnn",
    progress: bool = True,
    key_change_penalty: float | PenaltyChoice | None = None,
) -> Evaluation:
    """Predict, post-process and score ``pieces``: metrics.json, table1.md, pieces.csv, skipped.csv,
    the per-note predictions of ``CONFUSION_TASKS`` and per-task reports. A piece that fails is
    skipped (module docstring); when every piece fails the evaluation is an InputError naming the
    first reason. ``paths`` (per piece) go into pieces.csv. ``key_change_penalty`` (a number, or
    :func:`choose_key_penalty`'s choice, whose candidates then go to key_penalty.csv) smooths the key
    over each piece; None or 0: per bar, as the paper."""
    if len(names) != len(pieces):
        raise ValueError(f"{len(names)} names for {len(pieces)} pieces")
    choice = key_change_penalty if isinstance(key_change_penalty, PenaltyChoice) else None
    penalty = choice.penalty if choice is not None else key_change_penalty
    paths = list(paths) if paths is not None else [None] * len(pieces)
    kept, kept_names, raw_labels, post_labels, rows, skipped, key_items = [], [], [], [], [], [], []
    for name, path, piece in tqdm(
        list(zip(names, paths, pieces, strict=True)), desc=desc, unit="piece", disable=not progress
    ):
        try:
            pred = predict(piece)
            raw = labels_from_predictions(pred, piece, threshold)
            res = postprocess(
                dict(piece), dict(pred), threshold=threshold, min_clef_run=min_clef_run, key_change_penalty=penalty
            )
            post = labels_from_postprocessed(piece, res)
        except Exception as exc:  # noqa: BLE001 - one bad piece never aborts the evaluation: skipped, listed
            reason = one_line(f"{type(exc).__name__}: {exc}")
            log.warning("skipping %s: %s", name, reason)
            skipped.append({"piece": str(name), "path": path or "", "step": "evaluate", "reason": reason})
            continue
        kept.append(piece)
        kept_names.append(name)
        raw_labels.append(raw)
        post_labels.append(post)
        key_items.append(KeyItem.of(piece, pred, chord=res["chord"]))
        rows.append(_piece_row(str(name), path, piece, post, raw))
    if pieces and not kept:
        raise InputError(f"no piece could be evaluated ({len(skipped)} skipped; the first: {skipped[0]['reason']})")
    raw, post = score_pieces(raw_labels, kept), score_pieces(post_labels, kept)
    table = table1({POST_ROW: post, RAW_ROW: raw})
    per_piece = pd.DataFrame(
        rows, columns=["piece", "path", "notes", *PIECE_METRICS, *(f"raw_{m}" for m in PIECE_METRICS)]
    )
    evaluation = Evaluation(
        raw, post, table, len(kept), reports(post_labels, kept, kept_names), per_piece=per_piece, skipped=skipped,
        key=key_metrics(key_items, penalty),
    )  # fmt: skip
    evaluation.artifacts = {
        "metrics.json": evaluation.summary(),
        "table1.md": table_markdown(table),
        "pieces.csv": per_piece.to_csv(index=False, float_format="%.6g"),
        "skipped.csv": skipped_table(skipped).to_csv(index=False),
        **confusion_tables(evaluation.tasks),
        **({"key_penalty.csv": penalty_table(choice)} if choice is not None and choice.accuracy else {}),
    }
    return evaluation


def write_evaluation(evaluation: Evaluation, folder: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> None:
    """The evaluation folder's files (``artifacts``, ``extra``) and ``tasks/<task>/`` reports, into ``folder``."""
    from overseer.io import write_artifacts
    from overseer.metrics import write_report

    write_artifacts(folder, {**evaluation.artifacts, **dict(extra or {})})
    for task, report in evaluation.tasks.items():
        # summary, per-class scores, confusion matrix (plots for small class sets); per-note
        # predictions only for CONFUSION_TASKS (in ``artifacts``): all of them would be megabytes per run
        write_report(report, Path(folder) / "tasks" / task, plots=len(report.class_names) <= 4, items=False)
