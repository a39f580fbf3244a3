"""Figures of the evaluation report and of training curves (matplotlib, no display needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from overseer.metrics import ClassificationReport


def plot_confusion_matrix(report: ClassificationReport) -> plt.Figure:
    """Heatmap of counts, true classes in rows, predicted in columns."""
    names, cm = report.class_names, report.confusion
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.1 * len(names) + 1.5))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set(title="Confusion matrix (counts)", xlabel="Predicted", ylabel="True")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > threshold else "black")
    return fig


def _bar(names: list[str], values: np.ndarray, title: str, ylabel: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 4))
    ax.bar(names, values)
    ax.set(title=title, xlabel="Class", ylabel=ylabel)
    ax.tick_params(axis="x", rotation=30)
    return fig


def plot_report(report: ClassificationReport) -> dict[str, plt.Figure]:
    """The notebook's four figures by file name: confusion heatmap, F1 per class, class distribution, FP vs FN."""
    names = report.class_names
    figures = {"confusion_matrix.png": plot_confusion_matrix(report)}
    figures["f1_per_class.png"] = _bar(names, report.per_class["f1"].to_numpy(), "F1 score by class", "F1")
    figures["class_distribution.png"] = _bar(
        names, report.per_class["support"].to_numpy(), "Class distribution (true labels)", "Count"
    )
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, report.per_class["fp"], width=0.4, label="False positives")
    ax.bar(x + 0.2, report.per_class["fn"], width=0.4, label="False negatives")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(title="FP vs FN per class", xlabel="Class", ylabel="Count")
    ax.legend()
    figures["fp_fn_per_class.png"] = fig
    return figures


def plot_training_curves(history: pd.DataFrame) -> plt.Figure:
    """Loss and every other metric per epoch, training next to validation (``val_`` columns)."""
    metrics = [c for c in history.columns if c not in ("epoch", "learning_rate") and not c.startswith("val_")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    epochs = history["epoch"] if "epoch" in history else np.arange(len(history))
    for ax, name in zip(axes[0], metrics, strict=True):
        ax.plot(epochs, history[name], label=f"train {name}")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label=f"val {name}")
        ax.set(title=f"{name} over epochs", xlabel="Epoch", ylabel=name)
        ax.legend()
    return fig


def plot_reliability(reliability: pd.DataFrame, title: str = "Reliability of the most likely class") -> plt.Figure:
    """Reliability diagram (``metrics.ProbabilityScores.reliability``): accuracy against mean confidence
    per bin, the diagonal of perfect calibration, and below it how many items fall in each bin."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centres = (reliability["low"] + reliability["high"]) / 2
    width = float((reliability["high"] - reliability["low"]).iloc[0]) if len(reliability) else 0.1
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.bar(centres, reliability["accuracy"].fillna(0), width=width * 0.9, alpha=0.6, label="accuracy per bin")
    ax.plot(reliability["confidence"], reliability["accuracy"], "o-", color="C3", label="mean confidence → accuracy")
    ax.set(title=title, ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    counts.bar(centres, reliability["count"], width=width * 0.9, color="C0")
    counts.set(xlabel="confidence (probability of the most likely class)", ylabel="items")
    return fig
