"""One evaluation report for every single-label classifier in Overseer.

It reproduces the trackbed notebook's report: the confusion matrix; per class the one-vs-rest
counts (TP, FP, FN, TN), accuracy, precision, recall (sensitivity), specificity, F1, type I error
rate (FP / (FP + TN)) and type II error rate (FN / (TP + FN)); their macro averages; support-
weighted precision, recall and F1; the overall accuracy; and the false-inference listing (false
positives and negatives per class, every misclassified item with true class, predicted class and
confidence). The confusion matrix and per-class precision, recall, F1 and support are scikit-
learn's (``confusion_matrix``, ``precision_recall_fscore_support`` over all k labels, so a class
that never occurs keeps its row); the rest derives from that confusion matrix. Undefined ratios (a
zero denominator) are 0, as in the notebook and as scikit-learn with ``zero_division=0``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from overseer.io import atomic_file, write_artifacts, write_json

PER_CLASS_COLUMNS = [
    "support",
    "tp",
    "fp",
    "fn",
    "tn",
    "accuracy",
    "precision",
    "recall",
    "specificity",
    "f1",
    "type_i_error",
    "type_ii_error",
]
MACRO_KEYS = ["precision", "recall", "specificity", "f1", "type_i_error", "type_ii_error"]
WEIGHTED_KEYS = ["precision", "recall", "f1"]


@dataclass(frozen=True)
class ClassificationReport:
    """Everything the report holds; ``write_report`` turns it into files."""

    class_names: list[str]
    confusion: np.ndarray  # (k, k) counts, rows true, columns predicted
    per_class: pd.DataFrame  # index: class name, columns: PER_CLASS_COLUMNS
    accuracy: float
    macro: dict[str, float]
    weighted: dict[str, float]
    false_inferences: dict
    predictions: pd.DataFrame  # one row per item: item, actual, predicted, confidence

    def summary(self) -> dict:
        """The small JSON that DVC tracks as metrics and MLflow logs."""
        return {
            "accuracy": self.accuracy,
            "n_items": int(self.confusion.sum()),
            "n_misclassified": len(self.false_inferences["misclassified"]),
            "macro": self.macro,
            "weighted": self.weighted,
            "per_class": {
                name: {col: _py(self.per_class.loc[name, col]) for col in PER_CLASS_COLUMNS}
                for name in self.class_names
            },
        }

    def flat_metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat ``name -> value`` pairs with the same names for every family (MLflow compare view)."""
        out = {f"{prefix}accuracy": self.accuracy}
        out.update({f"{prefix}macro_{k}": v for k, v in self.macro.items()})
        out.update({f"{prefix}weighted_{k}": v for k, v in self.weighted.items()})
        for name in self.class_names:
            for col in ("precision", "recall", "f1"):
                out[f"{prefix}{col}_{name}"] = float(self.per_class.loc[name, col])
        return out


def _py(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _sklearn_counts(
    true: np.ndarray, pred: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's confusion matrix and per-class precision, recall, F1 and support over the labels
    ``0..k-1`` (a class absent from both truth and prediction keeps its row; 0/0 is 0). No items: all zeros."""
    labels = np.arange(k)
    if true.size == 0:  # scikit-learn refuses empty input; the report of nothing is all zeros
        zeros = np.zeros(k, dtype=np.float64)
        return np.zeros((k, k), dtype=np.int64), zeros, zeros.copy(), zeros.copy(), np.zeros(k, dtype=np.int64)
    confusion = confusion_matrix(true, pred, labels=labels).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=labels, average=None, zero_division=0
    )
    return confusion, precision, recall, f1, np.asarray(support, dtype=np.int64)


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    confidence: Sequence[float] | np.ndarray | None = None,
    item_ids: Sequence[str] | None = None,
) -> ClassificationReport:
    """Compute the full report from integer labels ``0..k-1``.

    ``confidence`` is the predicted class's probability per item (1.0 when not given);
    ``item_ids`` names the items (file names) in the false-inference listing.
    """
    names = list(class_names)
    k = len(names)
    true = np.asarray(y_true, dtype=np.int64).ravel()
    pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} items but y_pred has {pred.size}")
    for label, arr in (("y_true", true), ("y_pred", pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise ValueError(f"{label} holds labels outside 0..{k - 1} ({k} classes: {names})")
    conf = np.ones(true.size) if confidence is None else np.asarray(confidence, dtype=np.float64).ravel()
    ids = [str(i) for i in range(true.size)] if item_ids is None else [str(i) for i in item_ids]
    if conf.size != true.size or len(ids) != true.size:
        raise ValueError("confidence and item_ids must have one entry per item")

    confusion, precision, recall, f1, support = _sklearn_counts(true, pred, k)
    tp = np.diag(confusion).astype(np.int64)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    tn = confusion.sum() - tp - fp - fn
    per_class = pd.DataFrame(
        {
            "support": support,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
            "precision": precision,
            "recall": recall,
            "specificity": _ratio(tn, tn + fp),
            "f1": f1,
            "type_i_error": _ratio(fp, fp + tn),
            "type_ii_error": _ratio(fn, tp + fn),
        },
        index=pd.Index(names, name="class"),
    )
    total = max(int(support.sum()), 1)
    macro = {key: float(per_class[key].mean()) if k else 0.0 for key in MACRO_KEYS}
    weighted = {key: float((per_class[key] * support).sum() / total) for key in WEIGHTED_KEYS}
    accuracy = float(tp.sum() / total) if true.size else 0.0

    predictions = pd.DataFrame(
        {
            "item": ids,
            "actual": [names[i] for i in true],
            "predicted": [names[i] for i in pred],
            "confidence": conf,
        }
    )
    return ClassificationReport(
        class_names=names,
        confusion=confusion,
        per_class=per_class,
        accuracy=accuracy,
        macro=macro,
        weighted=weighted,
        false_inferences=_false_inferences(true, pred, conf, ids, names),
        predictions=predictions,
    )


def _false_inferences(true: np.ndarray, pred: np.ndarray, conf: np.ndarray, ids: list[str], names: list[str]) -> dict:
    """The notebook's false-inference JSON: per-class FP/FN lists and every misclassified item."""
    wrong = np.flatnonzero(true != pred)
    entry = [{"item": ids[i], "confidence": float(conf[i])} for i in range(true.size)]
    return {
        "false_positive": {name: [entry[i] for i in wrong if pred[i] == c] for c, name in enumerate(names)},
        "false_negative": {name: [entry[i] for i in wrong if true[i] == c] for c, name in enumerate(names)},
        "misclassified": [
            {
                "item": ids[i],
                "true_class": names[true[i]],
                "predicted_class": names[pred[i]],
                "confidence": float(conf[i]),
            }
            for i in wrong
        ],
    }


def per_class_table(report: ClassificationReport) -> pd.DataFrame:
    """Per-class rows followed by ``macro avg`` and ``weighted avg`` rows (the CSV layout)."""
    table = report.per_class.copy()
    macro = {key: report.macro.get(key, np.nan) for key in PER_CLASS_COLUMNS}
    macro["support"] = int(report.per_class["support"].sum())
    weighted = {key: report.weighted.get(key, np.nan) for key in PER_CLASS_COLUMNS}
    weighted["support"] = macro["support"]
    extra = pd.DataFrame([macro, weighted], index=pd.Index(["macro avg", "weighted avg"], name="class"))
    return pd.concat([table, extra[PER_CLASS_COLUMNS]])


def write_report(
    report: ClassificationReport, out_dir: str | os.PathLike, plots: bool = True, items: bool = True
) -> dict[str, Path]:
    """Write the report as files under ``out_dir`` and return their paths by name.

    ``metrics.json`` (summary), ``per_class.csv``, ``confusion_matrix.csv`` (counts), with ``items``
    ``predictions.csv`` (actual/predicted per item, for ``dvc plots`` confusion templates) and
    ``false_inferences.json``, and with ``plots`` the four PNG figures of ``overseer.plots``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": write_json(out / "metrics.json", report.summary())}
    if items:
        paths["false_inferences"] = write_json(out / "false_inferences.json", report.false_inferences)
    confusion = pd.DataFrame(
        report.confusion,
        index=pd.Index(report.class_names, name="true\\predicted"),
        columns=report.class_names,
    )
    for name, frame, index in (
        ("per_class", per_class_table(report), True),
        ("confusion_matrix", confusion, True),
        *([("predictions", report.predictions, False)] if items else []),
    ):
        with atomic_file(out / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=index, float_format="%.6g")
        paths[name] = out / f"{name}.csv"
    if plots:
        from overseer.plots import plot_report

        paths.update(write_artifacts(out, plot_report(report)))
    return paths


@dataclass(frozen=True)
class ProbabilityScores:
    """How good a classifier's probabilities are, beyond its most likely class: log-loss, Brier score,
    and top-label calibration (reliability table and expected calibration error)."""

    log_loss: float  # mean −ln p(true class), probabilities clipped at 1e-15 (scikit-learn's log_loss)
    brier: float  # mean Σ_c (p_c − [c = true])², the multi-class Brier score
    expected_calibration_error: float  # Σ_b n_b/N |accuracy_b − confidence_b| over the bins below
    reliability: pd.DataFrame  # per confidence bin: low, high, count, mean confidence, accuracy

    def summary(self) -> dict[str, float]:
        return {"log_loss": self.log_loss, "brier": self.brier, "ece": self.expected_calibration_error}


def probability_scores(y_true: Sequence[int] | np.ndarray, proba: np.ndarray, bins: int = 10) -> ProbabilityScores:
    """:class:`ProbabilityScores` of ``proba`` (n × k, column c = class c of ``0..k-1``) against labels
    ``y_true``. Calibration is that of the top label (Guo et al. 2017, "On calibration of modern
    neural networks", eq. 3/5): items binned by their highest probability into ``bins`` equal-width
    bins of [0, 1], each bin's accuracy against its mean confidence."""
    from sklearn.metrics import log_loss

    true = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != true.size:
        raise ValueError(f"proba must be n × k with n = {true.size} items, got shape {p.shape}")
    if true.size == 0:
        empty = pd.DataFrame(columns=["low", "high", "count", "confidence", "accuracy"])
        return ProbabilityScores(float("nan"), float("nan"), float("nan"), empty)
    k = p.shape[1]
    p = p / p.sum(axis=1, keepdims=True)  # float32 probabilities sum to 1 only to ~1e-7
    onehot = np.eye(k)[true]
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == true
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, int(bins) - 1)
    rows = []
    for b in range(int(bins)):
        members = which == b
        n = int(members.sum())
        rows.append({
            "low": edges[b], "high": edges[b + 1], "count": n,
            "confidence": float(confidence[members].mean()) if n else float("nan"),
            "accuracy": float(correct[members].mean()) if n else float("nan"),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    filled = table[table["count"] > 0]
    ece = float((filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / true.size)
    return ProbabilityScores(
        log_loss=float(log_loss(true, p, labels=np.arange(k))),
        brier=float(((p - onehot) ** 2).sum(axis=1).mean()),
        expected_calibration_error=ece,
        reliability=table,
    )
